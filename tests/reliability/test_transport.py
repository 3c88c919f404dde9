"""The transport under faults from outside: a wrong sudo password under pam_faillock, sudo that
refuses the probes, two runs at once, a signal while waiting, a host in German.

One disposable systemd-nspawn Debian 12 container for the module; the faults are written into
its root filesystem from this machine (PAM and sudoers files, /etc/default/locale) and its
processes are watched from here (tests/reliability/faults.py), never through provision. Only
one case runs `provision all` (twice, at once); the others are plans.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from common import SUDO_PASSWORD, ssh
from faults import Inside

from hostrun import _repo_path, booted, connection_to, provision_runner

pytestmark = pytest.mark.container

# pam_faillock as its manual page sets it up: 3 failures lock the account for 10 minutes.
FAILLOCK_AUTH = """auth	required	pam_faillock.so preauth deny=3 unlock_time=600
auth	[success=2 default=ignore]	pam_unix.so nullok
auth	[default=die]	pam_faillock.so authfail deny=3 unlock_time=600
auth	requisite			pam_deny.so
auth	required			pam_permit.so
"""


@pytest.fixture(scope="module")
def host(require_tier):
    yield from booted("container", require_tier)


@pytest.fixture(scope="module")
def inside(host):
    return Inside(host.extras["rootfs"])


@pytest.fixture
def provision(host, tmp_path):
    return provision_runner(host, tmp_path / "logs")


def rootfs(host) -> Path:
    return Path(host.extras["rootfs"])


@pytest.fixture
def pwtester(host, tmp_path):
    """An inventory that logs in as pwtester (sudo asks for a password)."""
    inventory = tmp_path / "pwtester.ini"
    inventory.write_text(
        host.inventory.read_text().replace("ansible_user=tester", "ansible_user=pwtester")
    )
    return inventory


@pytest.fixture
def faillock(host):
    """pam_faillock deny=3 on the host, its tally empty; the host's own PAM file afterwards."""
    auth = rootfs(host) / "etc/pam.d/common-auth"
    original = auth.read_text()
    auth.write_text(FAILLOCK_AUTH)
    ssh(host, "faillock --user pwtester --reset", user="root")
    yield
    auth.write_text(original)
    ssh(host, "faillock --user pwtester --reset", user="root")


def failures(host) -> int:
    """pam_faillock's recorded failures of pwtester (read as root, not through provision)."""
    out = ssh(host, "faillock --user pwtester", user="root").stdout
    return sum(1 for line in out.splitlines() if " sudo " in f" {line} ")


def live(host, path: str) -> Path:
    """A path in the running host's own mounts (/run and /tmp may be its tmpfs)."""
    return Path(f"/proc/{Inside(rootfs(host)).init_pid()}/root{path}")


def staged(host) -> list[str]:
    return sorted(p.name for p in live(host, "/tmp").glob(".provision-*"))


@pytest.mark.reliability("lockout")
def test_wrong_sudo_password_is_tried_once_and_never_locks_the_account(
    host, provision, pwtester, faillock
):
    wrong = provision(
        "all", "--plan", "--host", host.name, "-i", str(pwtester),
        env={"PROVISION_SUDO_PASSWORD": "not-the-password"}, check_rc=None,
    )  # fmt: skip
    out = wrong.stdout + wrong.stderr
    assert wrong.returncode == 1, out
    assert out.count("the sudo password for pwtester was refused") == 2, out  # line + error
    assert "--ask-sudo-pass" in out and "PROVISION_SUDO_PASSWORD" in out, out
    assert "planned" not in out, out  # nothing was decided from refused probes
    # One attempt: sudo's retry was cut before it read again (a read of EOF counts too).
    assert failures(host) == 1, ssh(host, "faillock --user pwtester", user="root").stdout
    assert staged(host) == []
    right = provision(
        "all", "--plan", "--host", host.name, "-i", str(pwtester),
        env={"PROVISION_SUDO_PASSWORD": SUDO_PASSWORD}, check_rc=None,
    )  # fmt: skip
    assert right.returncode == 0, right.stdout + right.stderr
    assert failures(host) == 1  # the right password did not fail: the account is not locked
    assert staged(host) == []


@pytest.mark.reliability("faults")
def test_probes_that_sudo_refuses_are_an_error_not_drift(host, provision, pwtester):
    """sudo -n works for `true` only (a sudoers rule from outside): facts say "nopasswd", then
    every real command is refused. Before: the probes read as "file absent", a drift plan
    (exit 3) for a host that is right."""
    rule = rootfs(host) / "etc/sudoers.d/zz-transport-true"
    rule.write_text("pwtester ALL=(ALL) NOPASSWD: /usr/bin/true\n")
    rule.chmod(0o440)
    try:
        run = provision(
            "all", "--plan", "--detailed-exitcode", "--host", host.name, "-i", str(pwtester),
            check_rc=None,
        )  # fmt: skip
    finally:
        rule.unlink()
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    # The first command that needs sudo says why it stopped (the run lock, before any probe).
    assert "sudo refused to run it (sudo: a password is required)" in out, out
    assert "planned" not in out, out


def _spawn(host, log_dir: Path, *args: str) -> subprocess.Popen:
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "provision", *args, "-i", str(host.inventory)]
    return subprocess.Popen(
        [*cmd, "--log-dir", str(log_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=log_dir.parent,
        env={**os.environ, "PYTHONPATH": _repo_path()},
    )


class Output:
    """A process's output, read as it comes (so a test can wait for a line)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    def text(self) -> str:
        return "".join(line for _t, line in self.lines)

    def wait_for(self, needle: str, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if needle in line:
                    return at
            if self.proc.poll() is not None and not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} within {timeout_s}s:\n{self.text()}")


def _holder_visible(host) -> str:
    path = live(host, "/run/lock/provision.run.holder")
    return path.read_text() if path.exists() else ""


@pytest.mark.reliability("faults")
def test_two_runs_at_once_take_turns_and_both_converge(host, provision, tmp_path):
    first = _spawn(host, tmp_path / "a" / "logs", "all", "--host", host.name)
    out_a = Output(first)
    deadline = time.monotonic() + 60
    while f"provision pid {first.pid} " not in _holder_visible(host):
        assert time.monotonic() < deadline and first.poll() is None, out_a.text()
        time.sleep(0.1)
    second = _spawn(host, tmp_path / "b" / "logs", "all", "--host", host.name)
    out_b = Output(second)
    waiting = out_b.wait_for("another run holds the box", 60)
    assert first.wait(timeout=1800) == 0, out_a.text()
    assert second.wait(timeout=1800) == 0, out_b.text()
    out_a.thread.join(5)
    out_b.thread.join(5)
    text_b = out_b.text()
    assert f"provision pid {first.pid} of " in text_b, text_b  # who holds the box
    assert "since " in text_b, text_b
    assert "did not converge" not in out_a.text() + text_b
    assert "rolled back by the host" not in text_b
    ends = [at for at, line in out_a.lines if "commands" in line]
    assert ends and waiting < ends[-1]  # it waited while the first run was still going
    provision("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=0)


def _hold(host):
    """Another run's lock on the host, taken through provision's own lock client."""
    from provision import hostlock
    from provision.remote import connect

    remote = connect(connection_to(host))
    lock, _waited = hostlock.acquire(host.name, remote.open_stream, lambda _m: None)
    return remote, lock


@pytest.mark.reliability("faults")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_waiting_for_the_host_answers_at_once(host, inside, tmp_path, sig, code):
    remote, lock = _hold(host)
    try:
        run = _spawn(host, tmp_path / "logs", "all", "--plan", "--host", host.name)
        out = Output(run)
        out.wait_for("another run holds the box", 60)
        sent = time.monotonic()
        run.send_signal(sig)
        assert run.wait(timeout=10) == code, out.text()
        out.thread.join(5)
        said = out.wait_for("stopping", 1)
        assert said - sent < 1.5, out.text()  # the first signal is answered at once
        assert "Ctrl-C again" in out.text()
        # Its waiter on the host is gone (it writes every 2 s into a closed channel).
        mine = f"provision pid {run.pid} of "
        deadline = time.monotonic() + 6
        while any(mine in cmd for _pid, cmd in inside.processes()):
            assert time.monotonic() < deadline, [c for _p, c in inside.processes() if mine in c]
            time.sleep(0.2)
    finally:
        lock.release()
        remote.close()


@pytest.mark.reliability("faults")
def test_a_german_host_runs_every_command_in_the_c_locale(host, inside, provision):
    """/etc/default/locale in German (pam_env gives it to every SSH session): each command
    provision starts on the host, sudo or not, has LC_ALL=C, so sudo's, apt's and dpkg's
    messages stay the English ones its hints match."""
    default = rootfs(host) / "etc/default/locale"
    default.write_text('LANG="de_DE.UTF-8"\nLANGUAGE="de_DE:de"\n')
    seen: dict[int, dict[str, str]] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for pid, cmd in inside.processes():
                if pid in seen or not cmd.startswith("sh -c "):
                    continue
                try:
                    raw = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue
                env = dict(v.split("=", 1) for v in raw.decode().split("\0") if "=" in v)
                if env.get("LANG", "").startswith("de_DE"):
                    seen[pid] = env
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        provision("all", "--plan", "--host", host.name, check_rc=None)
    finally:
        stop.set()
        watcher.join(5)
        default.unlink()
    assert len(seen) >= 2, "no command of provision was seen on the host"
    wrong = {pid: env.get("LC_ALL") for pid, env in seen.items() if env.get("LC_ALL") != "C"}
    assert not wrong, f"commands without LC_ALL=C on a German host: {wrong}"


@pytest.mark.reliability("faults")
def test_a_command_an_earlier_run_left_running_is_named_as_that(host, provision):
    """A change command still runs under the host lock (as one from a cut-off run does): the
    next run names it and waits for it, instead of planning against a half-done state."""
    from provision.remote import connect

    remote = connect(connection_to(host))
    left = threading.Thread(
        target=lambda: remote.run("sleep 6; echo earlier-done", lock=True), daemon=True
    )
    left.start()
    try:
        time.sleep(1.5)
        started = time.monotonic()
        run = provision("all", "--plan", "--host", host.name)
        out = run.stdout + run.stderr
        assert "a command of an earlier run is still running on the host: `sleep 6" in out, out
        assert time.monotonic() - started > 3  # it waited for the command to end
    finally:
        left.join(30)
        remote.close()
