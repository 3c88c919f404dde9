"""jupyter.check as a table (own venv with a pinned JupyterLab, notebook directory, token made
on the box, the PyTorch kernel when that step is on, unit file and service), every read it
makes declared (a strict Context answered from a FakeRemote's table); the token command run by
the real shell here; hub and bind_all refused with exit 2 naming the setting; `jupyter-url`
printing the URL on stdout only; the service declared for `provision tunnel`."""

import dataclasses
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from fakes import FakeRemote
from provision.changes import Result, Run
from provision.cli import cli
from provision.cli.forward import tunnel_forwards
from provision.facts import parse_facts
from provision.step import Context, UndeclaredRead
from provision.steps import STEPS, conda, jupyter, pytorch

DATA = Path(__file__).parent.parent / "data" / "facts"
PASSWD = "tester:x:1000:1000::/home/tester:/bin/bash\ntester\n"

# The unit as it must be for the defaults (user tester, home /home/tester), written out here
# rather than rendered by the code under test: a changed template fails this test.
UNIT_TEXT = """\
# Managed by provision (jupyter/provision-jupyter.service.j2): local edits are overwritten.
[Unit]
Description=JupyterLab for tester in /home/tester/notebooks (provision)
After=network.target

[Service]
User=tester
Group=tester
# JupyterLab serves the directory it starts in.
WorkingDirectory=/home/tester/notebooks
# The token is read from this file (mode 0600, owned by tester): never on a command line,
# never in this unit or its environment.
Environment=JUPYTER_TOKEN_FILE=/var/lib/provision/jupyter/token
# Connection files and the browser-open page (which holds the token) in a private directory.
RuntimeDirectory=provision-jupyter
RuntimeDirectoryMode=0700
Environment=JUPYTER_RUNTIME_DIR=/run/provision-jupyter
# Local only: reach it through `provision tunnel` (an SSH port forward). port_retries=0: the
# set port or a failure, never another port.
ExecStart=/opt/provision/jupyter/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=8888 \
--ServerApp.port_retries=0 --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"""
# A kernelspec as jupyter_client documents it (argv with {connection_file}, display_name,
# language), for the pytorch step's default env.
KERNEL_TEXT = """\
{
 "argv": ["/opt/provision/envs/dl/bin/python", "-m", "ipykernel_launcher", "-f", \
"{connection_file}"],
 "display_name": "PyTorch (dl)",
 "language": "python",
 "metadata": {"debugger": true, "provision": "Managed by provision (jupyter/kernel.json.j2): \
local edits are overwritten."}
}
"""
MANIFEST_DL = '{\n "kernels": [\n  "provision-dl"\n ],\n "version": "4.6.6"\n}\n'
MANIFEST_NONE = '{\n "kernels": [],\n "version": "4.6.6"\n}\n'
KERNEL_FILE = "/usr/local/share/jupyter/kernels/provision-dl/kernel.json"

TEMPLATE_EXAMPLES = {
    "jupyter/provision-jupyter.service.j2": {
        "user": "alice",
        "group": "alice",
        "notebook_dir": "/home/alice/notebooks",
        "port": 8888,
        "token_file": "/var/lib/provision/jupyter/token",
        "jupyter": "/opt/provision/jupyter/bin/jupyter",
    },
    "jupyter/kernel.json.j2": {
        "python": "/opt/provision/envs/dl/bin/python",
        "display_name": "PyTorch (dl)",
    },
}


def context(remote, f, settings) -> Context:
    """A strict Context whose reads are the step's declared ones, answered by `remote`."""
    ctx = Context("box", f, settings, gathered={}, strict=True)
    reads = jupyter.STEP.reads(ctx)
    return dataclasses.replace(ctx, gathered=remote.read_all(reads, f.user))


def settings_for(jp=None, torch=True, conda_on=False):
    return {
        "jupyter": jp or jupyter.Settings(enabled=True),
        "pytorch": pytorch.Settings(enabled=torch),
        "conda": conda.Settings(enabled=conda_on),
    }


def check(remote, jp=None, torch=True, conda_on=False, facts_file="debian-12-nspawn.txt"):
    f = dataclasses.replace(parse_facts((DATA / facts_file).read_text()), user="tester")
    return jupyter.check(context(remote, f, settings_for(jp, torch, conda_on)))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fresh():
    r = FakeRemote().on(r"getent passwd tester", f"{PASSWD}@@notebook_dir\n@@kernels\n")
    r.on(r"import jupyterlab", (1, "")).on(r"%U %G %s.*jupyter/token", (1, ""))
    r.on(r'version\("ipykernel"\)', (1, "")).on(r"sha256sum -- ", (1, ""))
    r.on(r"systemctl show", "UnitFileState=\nActiveState=inactive\n")
    return r.on(r"systemctl show .*provision-jupyterhub", "UnitFileState=\nActiveState=inactive\n")


def converged(torch=True, unit=UNIT_TEXT, kernels="provision-dl\npython3\n"):
    r = FakeRemote().on(
        r"getent passwd tester", f"{PASSWD}@@notebook_dir\ntester tester\n@@kernels\n{kernels}"
    )
    r.on(r"import jupyterlab", "4.6.6\n").on(r"%U %G %s.*jupyter/token", "600 tester tester 64\n")
    r.on(r'version\("ipykernel"\)', "7.4.0\n")
    r.on(r"sha256sum -- /etc/systemd", f"644 root root\n{digest(unit)}  x\n")
    r.on(r"sha256sum -- /usr/local/share", f"644 root root\n{digest(KERNEL_TEXT)}  x\n")
    manifest = MANIFEST_DL if torch else MANIFEST_NONE
    r.on(
        r"sha256sum -- /var/lib/provision/jupyter/kernels", f"644 root root\n{digest(manifest)}  x"
    )
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    # hub mode's service: not installed (lab mode stops and disables it where it is)
    return r.on(r"systemctl show .*provision-jupyterhub", "UnitFileState=\nActiveState=inactive\n")


def test_jupyter_is_off_by_default_and_then_reads_nothing():
    assert jupyter.Settings().enabled is False
    ctx = Context("box", parse_facts((DATA / "debian-12-nspawn.txt").read_text()), {}, gathered={})
    ctx.settings_by_key.update(settings_for(jupyter.Settings()))
    assert jupyter.STEP.reads(ctx) == [] and jupyter.check(ctx) == []


def test_jupyter_fresh_host_gets_venv_dir_token_kernel_unit_and_service():
    changes = check(fresh())
    assert [c.summary for c in changes] == [
        "install JupyterLab 4.6.6 into /opt/provision/jupyter",
        "create /home/tester/notebooks for tester",
        "generate a JupyterLab token on the box into /var/lib/provision/jupyter/token",
        "install ipykernel into /opt/provision/envs/dl (the PyTorch (dl) kernel)",
        f"write {KERNEL_FILE}",
        "write /var/lib/provision/jupyter/kernels.json",
        "write /etc/systemd/system/provision-jupyter.service",
        "enable provision-jupyter.service at boot",
        "start provision-jupyter.service",
    ]
    by = {c.summary.split(" ")[1]: c for c in changes}
    assert by[KERNEL_FILE].actions[0].content.decode() == KERNEL_TEXT
    unit = by["/etc/systemd/system/provision-jupyter.service"].actions[0].content.decode()
    assert unit == UNIT_TEXT
    assert by["/var/lib/provision/jupyter/kernels.json"].actions[0].content.decode() == MANIFEST_DL
    install = changes[0].actions[0].command
    assert "jupyterlab==4.6.6" in install and "python3 -m venv --clear /opt/provision/jupyter" in (
        install
    )


def test_jupyter_converged_has_no_changes():
    assert check(converged()) == []
    assert check(converged(torch=False, kernels="python3\n"), torch=False) == []


def test_jupyter_without_pytorch_registers_no_kernel_and_removes_a_stale_one():
    r = converged(torch=False)  # provision-dl still registered from when pytorch was on
    changes = check(r, torch=False)
    assert [c.summary for c in changes] == ["remove the kernel provision-dl (no longer wanted)"]
    cmd = changes[0].actions[0].command
    assert cmd == "rm -rf -- /usr/local/share/jupyter/kernels/provision-dl"
    off = jupyter.Settings(enabled=True, pytorch_kernel=False)
    assert [c.summary for c in check(converged(torch=False), off)] == [
        "remove the kernel provision-dl (no longer wanted)"
    ]


def test_jupyter_a_new_pinned_version_is_a_plan_line():
    changes = check(converged(), jupyter.Settings(enabled=True, version="4.6.5"))
    summaries = [c.summary for c in changes]
    assert (
        summaries[0] == "install JupyterLab 4.6.5 into /opt/provision/jupyter (the venv has 4.6.6)"
    )
    assert "jupyterlab==4.6.5" in changes[0].actions[0].command
    assert "restart" in repr(changes[0].actions[1]).lower()  # the unit restarts on it


def test_jupyter_token_with_loose_mode_or_owner_is_fixed_never_replaced():
    r = converged().on(r"%U %G %s.*jupyter/token", "644 root root 64\n")
    (change,) = check(r)
    assert change.summary == (
        "make /var/lib/provision/jupyter/token tester's alone (0600; it is 644 root root)"
    )
    command = change.actions[0].command
    assert command == (
        "chown tester:tester -- /var/lib/provision/jupyter/token && "
        "chmod 0600 -- /var/lib/provision/jupyter/token"
    )
    empty = converged().on(r"%U %G %s.*jupyter/token", "600 tester tester 0\n")
    assert [c.summary for c in check(empty)] == [
        "generate a JupyterLab token on the box into /var/lib/provision/jupyter/token"
    ]


def test_jupyter_conda_env_kernel_install_keeps_the_env_group_writable():
    r = converged().on(r'version\("ipykernel"\)', (1, ""))
    (change,) = check(r, conda_on=True)
    command = change.actions[0].command
    assert "umask 0002 && TMPDIR=/var/tmp /opt/provision/envs/dl/bin/python -m pip install" in (
        command
    )
    assert command.startswith("{ test -x /opt/provision/envs/dl/bin/python ||")


def test_jupyter_missing_user_is_refused():
    from provision.errors import ProvisionError

    r = converged().on(r"getent passwd tester", (2, "@@notebook_dir\n@@kernels\n"))
    with pytest.raises(ProvisionError, match="no user 'tester' for JupyterLab"):
        check(r)


@pytest.mark.parametrize(
    "facts_file", ["debian-12-nspawn.txt", "ubuntu-22.04-gpu.txt", "ubuntu-24.04-fresh.txt"]
)
@pytest.mark.parametrize(
    "jp,torch",
    [
        (jupyter.Settings(enabled=True), True),
        (jupyter.Settings(enabled=True, user="alice", notebook_dir="/srv/nb", port=9999), True),
        (jupyter.Settings(enabled=True, pytorch_kernel=False), True),
        (jupyter.Settings(enabled=True, ipykernel_version="7.4.0"), False),
    ],
    ids=["defaults", "other-user", "no-kernel", "no-pytorch"],
)
def test_jupyter_declares_every_read(facts_file, jp, torch):
    """Every read check makes is declared (strict: an undeclared one raises), whatever the
    answers: every read failing (exit 1, no output), and an answering host."""

    class Failing(FakeRemote):
        def _exec(self, command, timeout_s, stdin):
            self.ran.append(command)
            return Result(1, "")

    f = dataclasses.replace(parse_facts((DATA / facts_file).read_text()), user="tester")
    ctx = context(Failing(), f, settings_for(jp, torch))
    try:
        jupyter.check(ctx)
    except UndeclaredRead:
        raise
    except Exception as exc:  # a refusal of this host is an answer too
        assert "JupyterLab" in str(exc), exc
    r = converged(torch).on(
        r"getent passwd alice", f"{PASSWD.replace('tester', 'alice')}@@kernels\n"
    )
    jupyter.check(context(r, f, settings_for(jp, torch)))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_token_command_in_a_real_shell_makes_a_private_token_and_never_replaces_it(tmp_path):
    """The generation command, pointed at a folder here: 64 hex digits without a newline
    (JupyterLab reads the file as it is), mode 0600, the owner given; a second run refuses and
    keeps the token; nothing of it is printed."""
    folder = str(tmp_path / "jupyter")
    command = jupyter.token_command("root", "root").replace(jupyter.TOKEN_DIR, folder)
    first = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    token_path = Path(folder, "token")
    token = token_path.read_text()
    assert len(token) == 64 and all(c in "0123456789abcdef" for c in token)
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600 and token_path.stat().st_uid == 0
    assert token not in first.stdout + first.stderr + command
    again = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert again.returncode == 1 and "provision never replaces the token" in again.stderr
    assert token_path.read_text() == token
    assert not Path(folder, "token.new").exists()


@pytest.mark.parametrize(
    "setting,words",
    [
        ("jupyter.hub_mem_limit=8GB", "'8GB' is not a memory size"),
        ("jupyter.hub_cpu_limit=-1", "is not a CPU count"),
        ("jupyter.port=65535", "hub mode also uses the next two"),
        ("jupyter.hub_version=", "pin a JupyterHub release"),
        ("jupyter.bind_all=true", "jupyter.bind_all = true is not built yet"),
        ("jupyter.mode=notebook", "'notebook' is not a jupyter mode"),
        ("jupyter.version=", "pin a JupyterLab release"),
    ],
)
def test_bind_all_and_bad_values_are_refused_before_connecting(tmp_path, setting, words):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        Path("inventory.ini").write_text("[g]\nbox ansible_host=10.0.0.5\n")
        result = runner.invoke(cli, ["jupyter", "--host", "box", "--set", setting, "--plan"])
    assert result.exit_code == 2, result.output
    assert words in result.output and setting.split("=")[0] in result.output, result.output


def test_jupyter_declares_its_service_for_tunnel_ssh_config_and_doctor():
    assert jupyter.STEP.services == (("jupyter", "port"),)
    assert jupyter.Settings().port == 8888
    assert [s.name for s in STEPS].index("jupyter") > [s.name for s in STEPS].index("pytorch")
    by_key = {s.key: s.settings() for s in STEPS}
    by_key["jupyter"] = jupyter.Settings(enabled=True, port=8899)
    assert (8899, 8899) in tunnel_forwards("box", by_key, None, None)
    by_key["jupyter"] = jupyter.Settings()  # off: not forwarded while another service is on
    assert (8888, 8888) not in tunnel_forwards("box", by_key, None, None)


def test_jupyter_port_collision_with_tensorboard_is_refused(tmp_path):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        Path("inventory.ini").write_text("[g]\nbox jupyter.enabled=true jupyter.port=6006\n")
        result = runner.invoke(cli, ["config", "--host", "box"])
    assert result.exit_code == 2, result.output
    assert "two services cannot listen on one port" in result.output


class TokenRemote:
    """Stands in for a connected Remote: answers the token read, records how it was made."""

    made: ClassVar[list] = []

    def __init__(self, connection, **kwargs):
        TokenRemote.made.append(kwargs)
        self.ran = []

    def run(self, command, sudo=True, check=True, **kwargs):
        assert sudo and command == "cat -- /var/lib/provision/jupyter/token"
        return Result(0, "f" * 64)

    def close(self):
        pass


def test_jupyter_url_prints_the_url_on_stdout_only_through_an_unlogged_remote(
    tmp_path, monkeypatch
):
    from provision import remote

    TokenRemote.made = []
    monkeypatch.setattr(remote, "connect", lambda connection, **kw: TokenRemote(connection, **kw))
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        Path("inventory.ini").write_text("[g]\nbox ansible_host=10.0.0.5 jupyter.enabled=true\n")
        result = runner.invoke(cli, ["jupyter-url", "--host", "box", "--local-port", "9999"])
        logs = [p for p in Path(".").rglob("*") if p.is_file() and p.name != "inventory.ini"]
    assert result.exit_code == 0, result.output
    assert result.stdout == f"http://127.0.0.1:9999/lab?token={'f' * 64}\n"
    assert TokenRemote.made == [{}]  # no log= given: no transcript of the answer
    assert logs == []


def test_jupyter_url_refuses_a_host_where_jupyter_is_off(tmp_path):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        Path("inventory.ini").write_text("[g]\nbox ansible_host=10.0.0.5\n")
        result = runner.invoke(cli, ["jupyter-url", "--host", "box"])
    assert result.exit_code == 2 and "jupyter.enabled is off" in result.output


def test_no_run_of_the_step_carries_a_token_literal():
    """What the step sends is commands that make or read the token on the box: no change or
    command of a fresh host's plan holds a token-like string."""
    import re

    for change in check(fresh()):
        for action in change.actions:
            text = getattr(action, "command", "") if isinstance(action, Run) else ""
            assert not re.search(r"[0-9a-f]{32}", text), text


@pytest.mark.skipif(not shutil.which("getent"), reason="no getent here")
def test_account_read_runs_in_a_real_shell(tmp_path):
    """The host-side script, run by sh here for root: passwd line, the notebook directory's
    owner (missing here, or root's), then the kernels (none here)."""
    f = dataclasses.replace(parse_facts((DATA / "debian-12-nspawn.txt").read_text()), user="root")
    ctx = Context("box", f, {}, gathered={})
    s = jupyter.Settings(enabled=True, user="root", notebook_dir=str(tmp_path))
    command = jupyter.account_read(ctx, s).command
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
    answered = Context("box", f, {}, gathered={jupyter.account_read(ctx, s): Result(0, out)})
    user, group, _home, owner, registered = jupyter.account(answered, s)
    assert (user, group, owner) == ("root", "root", ["root", "root"])
    assert (
        registered == sorted(os.listdir(jupyter.KERNELS))
        if os.path.isdir(jupyter.KERNELS)
        else (registered == [])
    )
