"""tensorboard.check as a table: own venv, logdir, unit file, ufw only with bind_all; every read
it makes is declared (a strict Context answered from the FakeRemote's table), and the account
read's host-side script is run by the real shell here."""

import dataclasses
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.changes import Result
from provision.facts import parse_facts
from provision.step import Context, UndeclaredRead
from provision.steps import ssh, tensorboard

DATA = Path(__file__).parent.parent / "data" / "facts"
PASSWD = "tester:x:1000:1000::/home/tester:/bin/bash\ntester\n"

# The unit file as it must be for the defaults (user tester, home /home/tester), written out
# here rather than rendered by the code under test: a changed template fails this test.
UNIT_TEXT = """\
# Managed by provision (tensorboard/provision-tensorboard.service.j2): local edits are overwritten.
[Unit]
Description=TensorBoard for /home/tester/runs (provision)
After=network.target

[Service]
User=tester
Group=tester
WorkingDirectory=/home/tester/runs
{comment}
ExecStart=/opt/provision/tensorboard/bin/tensorboard --logdir "/home/tester/runs" --port 6006 {host}
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"""
LOCAL = UNIT_TEXT.format(
    comment="# Local only: reach it through `provision tunnel` (an SSH port forward).",
    host="--host 127.0.0.1",
)
BIND_ALL = UNIT_TEXT.format(
    comment="# tensorboard.bind_all = true: reachable from the network, on purpose.",
    host="--bind_all",
)


def context(remote, f, settings) -> Context:
    """A strict Context whose reads are the step's declared ones, answered by `remote`."""
    ctx = Context("box", f, settings, gathered={}, strict=True)
    reads = tensorboard.STEP.reads(ctx)
    return dataclasses.replace(ctx, gathered=remote.read_all(reads, f.user))


def check(remote, tb=None, ssh_settings=None, facts_file="debian-12-nspawn.txt"):
    f = parse_facts((DATA / facts_file).read_text())
    f = dataclasses.replace(f, user="tester")
    settings = {"tensorboard": tb or tensorboard.Settings(), "ssh": ssh_settings or ssh.Settings()}
    return tensorboard.check(context(remote, f, settings))


def base_remote(owner: str = ""):
    """The account read: passwd line, group, then the log directory's owner (none: missing)."""
    stat = f"{owner}\n" if owner else ""
    return FakeRemote().on(r"getent passwd tester && id -gn tester", f"{PASSWD}@@logdir\n{stat}")


def test_tensorboard_fresh_host_gets_venv_logdir_unit_and_service():
    r = base_remote().on(r"import tensorboard", (1, ""))
    r.on(r"sha256sum -- /etc/systemd", (1, "")).on(
        r"systemctl show", "UnitFileState=\nActiveState=inactive\n"
    )
    summaries = [c.summary for c in check(r)]
    assert summaries == [
        "install TensorBoard into /opt/provision/tensorboard",
        "create /home/tester/runs for tester",
        "write /etc/systemd/system/provision-tensorboard.service",
        "enable provision-tensorboard.service at boot",
        "start provision-tensorboard.service",
    ]
    assert check(r)[2].actions[0].content.decode() == LOCAL


def converged(bind_all=False):
    r = base_remote("tester tester").on(r"import tensorboard", "2.18.0\n")
    digest = hashlib.sha256((BIND_ALL if bind_all else LOCAL).encode()).hexdigest()
    r.on(r"sha256sum -- /etc/systemd", f"644 root root\n{digest}  x\n")
    return r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")


def test_tensorboard_converged_has_no_changes():
    assert check(converged()) == []


def test_tensorboard_logdir_owned_by_someone_else_is_fixed():
    r = converged().on(r"getent passwd tester", f"{PASSWD}@@logdir\nroot root\n")
    (change,) = check(r)
    assert change.summary == "create /home/tester/runs for tester"


def test_tensorboard_bind_all_opens_the_port_only_with_ufw():
    tb = tensorboard.Settings(bind_all=True)
    assert check(converged(True), tb) == []
    r = converged(True).on(r"ufw status", "Status: active\n22/tcp ALLOW Anywhere\n")
    (change,) = check(r, tb, ssh.Settings(ufw=True))
    assert change.summary == "allow TensorBoard (6006/tcp) in ufw (tensorboard.bind_all)"
    r = converged(True).on(r"ufw status", "Status: active\n6006/tcp ALLOW Anywhere\n")
    assert check(r, tb, ssh.Settings(ufw=True)) == []


def test_tensorboard_missing_user_is_refused():
    from provision.errors import ProvisionError

    r = converged().on(r"getent passwd tester", (2, "@@logdir\n"))
    with pytest.raises(ProvisionError, match="no user 'tester' for TensorBoard"):
        check(r)


@pytest.mark.parametrize(
    "facts_file", ["debian-12-nspawn.txt", "ubuntu-22.04-gpu.txt", "ubuntu-24.04-fresh.txt"]
)
@pytest.mark.parametrize(
    "tb",
    [
        tensorboard.Settings(),
        tensorboard.Settings(bind_all=True, logdir="/srv/runs", user="alice"),
        tensorboard.Settings(python="/opt/conda/bin/python", version="2.18.0"),
    ],
    ids=["defaults", "bind-all", "own-python"],
)
def test_tensorboard_declares_every_read(facts_file, tb):
    """Every read check makes is declared (strict: an undeclared one raises), whatever the
    answers: here every read fails (exit 1, no output), the most unusual host there is."""

    class Failing(FakeRemote):
        def _exec(self, command, timeout_s, stdin):
            self.ran.append(command)
            return Result(1, "")

    f = dataclasses.replace(parse_facts((DATA / facts_file).read_text()), user="tester")
    for ssh_settings in (ssh.Settings(), ssh.Settings(ufw=True)):
        ctx = context(Failing(), f, {"tensorboard": tb, "ssh": ssh_settings})
        try:
            tensorboard.check(ctx)
        except UndeclaredRead:
            raise
        except Exception as exc:  # a refusal of this host is an answer too
            assert "TensorBoard" in str(exc), exc
        # and on an answering host, every lookup was declared too
        r = converged(tb.bind_all).on(r"ufw status", "Status: active\n")
        r.on(r"getent passwd alice", f"{PASSWD.replace('tester', 'alice')}@@logdir\n")
        tensorboard.check(context(r, f, {"tensorboard": tb, "ssh": ssh_settings}))


def test_tensorboard_disabled_reads_nothing():
    ctx = Context("box", parse_facts((DATA / "debian-12-nspawn.txt").read_text()), {}, gathered={})
    ctx.settings_by_key.update(tensorboard=tensorboard.Settings(enabled=False), ssh=ssh.Settings())
    assert tensorboard.STEP.reads(ctx) == []


def test_tensorboard_declares_its_service_port():
    """tunnel, ssh-config and doctor find TensorBoard by this, not by name."""
    assert tensorboard.STEP.services == (("tensorboard", "port"),)
    assert tensorboard.Settings().port == 6006


@pytest.mark.skipif(not shutil.which("getent"), reason="no getent here")
def test_account_read_runs_in_a_real_shell(tmp_path):
    """The host-side script, run by sh here for root: its home's runs/ (missing on this
    machine, or root's) and a log directory given in the settings."""
    f = dataclasses.replace(parse_facts((DATA / "debian-12-nspawn.txt").read_text()), user="root")
    ctx = Context("box", f, {}, gathered={})

    def run(s):
        command = tensorboard.account_read(ctx, s).command
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
        answered = Context(
            "box", f, {}, gathered={tensorboard.account_read(ctx, s): Result(0, out)}
        )
        return tensorboard.account(answered, s)

    home = subprocess.run(["getent", "passwd", "root"], capture_output=True, text=True)
    home = home.stdout.split(":")[5]
    user, group, got_home, owner = run(tensorboard.Settings(user="root"))
    assert (user, group, got_home) == ("root", "root", home)
    assert owner == (["root", "root"] if Path(home, "runs").is_dir() else [])
    assert run(tensorboard.Settings(user="root", logdir=str(tmp_path)))[3] == ["root", "root"]
