"""The desired state `provision all` reaches, as a pyinfra deploy: base's essentials, the
files provision wrote (copied byte-identical from the host by bench/run.py), the services, the
sleep targets masked, the default target, the TensorBoard venv and service; with `gpu` (every
step on) also the driver packages installed and held, the CUDA packages, conda at its prefix
(installer run once) shared with its group, the torch env. Reads bench/run.py's variables
from $BENCH_VARS (JSON).
"""

import json
import os
from pathlib import Path

from pyinfra import host
from pyinfra.facts.files import File, Link
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, pip, server, systemd
from pyinfra.operations.util import any_changed

VARS = json.loads(Path(os.environ["BENCH_VARS"]).read_text())
ROOT = VARS["files_root"]
USER = VARS["tensorboard_user"]


def put(path: str):
    """One file, byte-identical to what provision wrote, root-owned 0644."""
    return files.put(
        name=f"Put {path}",
        src=f"{ROOT}{path}",
        dest=path,
        user="root",
        group="root",
        mode="644",
        _sudo=True,
    )


apt.packages(
    name="Essentials (base)",
    packages=VARS["packages"],
    update=True,
    cache_time=86400,
    no_recommends=True,
    _sudo=True,
)
ca = [put(path) for path in VARS["ca_files"]]
server.shell(
    name="Update the CA bundle",
    commands=["update-ca-certificates"],
    _sudo=True,
    _if=any_changed(*ca),
)
put("/etc/apt/apt.conf.d/51provision-unattended-upgrades")
put("/etc/apt/apt.conf.d/52provision-periodic")
timesyncd_conf = put("/etc/systemd/timesyncd.conf.d/provision.conf")
systemd.service(
    name="Timesyncd enabled (running, except in a container)",
    service="systemd-timesyncd",
    enabled=True,
    running=True if VARS["timesyncd_running"] else None,
    _sudo=True,
)
if VARS["timesyncd_running"]:
    systemd.service(
        name="Restart timesyncd",
        service="systemd-timesyncd",
        restarted=True,
        _sudo=True,
        _if=timesyncd_conf.did_change,
    )
server.user(name="The sudo user exists (users)", user=USER, _sudo=True)
sshd = put("/etc/ssh/sshd_config.d/00-provision.conf")
systemd.service(name="Restart sshd", service="ssh", restarted=True, _sudo=True, _if=sshd.did_change)
files.link(
    name="Boot to multi-user.target (autostart)",
    path="/etc/systemd/system/default.target",
    target="/lib/systemd/system/multi-user.target",
    _sudo=True,
)
for target in ("sleep.target", "suspend.target", "hibernate.target", "hybrid-sleep.target"):
    files.link(
        name=f"Mask {target}", path=f"/etc/systemd/system/{target}", target="/dev/null", _sudo=True
    )
put("/etc/systemd/logind.conf.d/provision.conf")
pip.packages(
    name="TensorBoard in its own venv (tensorboard)",
    packages=["tensorboard", "setuptools"],
    virtualenv="/opt/provision/tensorboard",
    virtualenv_kwargs={"venv": True, "python": "python3"},
    _sudo=True,
)
files.directory(
    name="TensorBoard log directory", path=f"/home/{USER}/runs", user=USER, group=USER, _sudo=True
)
unit = put("/etc/systemd/system/provision-tensorboard.service")
systemd.service(
    name="TensorBoard enabled and running (tensorboard)",
    service="provision-tensorboard.service",
    running=True,
    enabled=True,
    _sudo=True,
)
systemd.service(
    name="Restart TensorBoard after a unit change",
    service="provision-tensorboard.service",
    daemon_reload=True,
    restarted=True,
    _sudo=True,
    _if=unit.did_change,
)

if VARS["gpu"]:  # every step on: driver, cuda, conda, pytorch
    server.group(name="The conda group (conda)", group=VARS["conda_group"], _sudo=True)
    for user in VARS["conda_users"]:
        server.user(
            name=f"{user} in the conda group",
            user=user,
            groups=[VARS["conda_group"]],
            append=True,
            _sudo=True,
        )
    apt.packages(
        name="Driver and CUDA packages (driver, cuda)",
        packages=VARS["held_packages"] + VARS["cuda_packages"],
        update=True,
        cache_time=86400,
        no_recommends=True,
        _sudo=True,
    )
    # pyinfra has no hold operation: read the holds (a fact), hold what is missing
    held = set(host.get_fact(Command, command="apt-mark showhold", _sudo=True).split())
    missing = [name for name in VARS["held_packages"] if name not in held]
    if missing:
        server.shell(
            name="Hold the driver packages",
            commands=[f"apt-mark hold {' '.join(missing)}"],
            _sudo=True,
        )
    systemd.service(
        name="nvidia-persistenced off without a GPU (driver)",
        service="nvidia-persistenced",
        enabled=False,
        running=None,
        _sudo=True,
    )
    prefix = VARS["conda_prefix"]
    if not host.get_fact(File, path=f"{prefix}/bin/conda"):  # the installer runs once
        files.download(
            name="The conda installer, checked (conda)",
            src=VARS["conda_installer_url"],
            dest=VARS["conda_installer"],
            sha256sum=VARS["conda_installer_sha256"],
            _sudo=True,
        )
        server.shell(
            name="Conda installed at its prefix (conda)",
            commands=[f"bash {VARS['conda_installer']} -b -p {prefix}"],
            _sudo=True,
        )
    if host.get_fact(Command, command=VARS["conda_unshared_probe"], _sudo=True):
        server.shell(
            name="The prefix shared with the group", commands=[VARS["conda_share"]], _sudo=True
        )
    for user in VARS["conda_users"]:
        files.line(
            name=f"The conda line of {user}'s ~/.bashrc",
            path=f"/home/{user}/.bashrc",
            line=VARS["bashrc_line"],
            escape_regex_characters=True,  # the line is matched as a regex otherwise
            _sudo=True,
        )
    env = VARS["env_path"]
    # bin/python is a link in an env: the File fact is False for links (creates: follows them)
    if not host.get_fact(Link, path=f"{env}/bin/python"):
        server.shell(
            name="The torch env (pytorch)",
            commands=[
                f"{prefix}/bin/conda create -y -p {env} python={VARS['env_python']}"
                " --override-channels -c conda-forge"
            ],
            _sudo=True,
        )
    # pip.packages cannot see torch: its `pip freeze` parser (PIP_REGEX) takes no local version
    # (2.13.0+cpu), so it would reinstall on every run. The same freeze, read as a fact:
    freeze = host.get_fact(Command, command=f"{env}/bin/pip freeze --all", _sudo=True)
    if VARS["torch"] not in freeze.splitlines():
        server.shell(
            name="torch in the env, from the find-links (pytorch)",
            commands=[f"{env}/bin/pip install {VARS['pip_args']} {VARS['torch']}"],
            _sudo=True,
        )
    files.link(name="The env's way in (pytorch)", path=VARS["env_link"], target=env, _sudo=True)

# After the packages and the conda prefix: some of these files live in them.
for item in VARS["managed_files"]:
    files.put(
        name=f"Put {item['path']}",
        src=f"{ROOT}{item['path']}",
        dest=item["path"],
        user=item["owner"],
        group=item["group"],
        mode=item["mode"][1:],
        _sudo=True,
    )
