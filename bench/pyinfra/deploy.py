"""The desired state `provision all` reaches with the integration tier's settings (GPU steps
off), as a pyinfra deploy: base's essentials, the files provision wrote (copied byte-identical
from the host by bench/run.py), the services, the sleep targets masked, the default target,
the TensorBoard venv and service. Reads bench/run.py's variables from $BENCH_VARS (JSON).
"""

import json
import os
from pathlib import Path

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
