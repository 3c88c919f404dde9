"""Runner behaviour with FakeRemote: plan vs apply, convergence, restarts, reboots, isolation."""

import dataclasses
import os
import re
import time
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.changes import Change, Reboot, Restart, Result, Run, Upload
from provision.config import HostConfig
from provision.output import Reporter
from provision.remote import Connection, Remote
from provision.runner import run_hosts
from provision.step import Step

FACTS = (Path(__file__).parent.parent / "data" / "facts" / "debian-12-docker.txt").read_text()


@dataclasses.dataclass(frozen=True)
class NoSettings:
    pass


def host(name="box", allow_reboot=True):
    return HostConfig(
        name,
        Connection(host=name, addr="192.0.2.1", user="root"),
        {"fake": NoSettings()},
        {},
        allow_reboot=allow_reboot,
    )


class Marker:
    """A step that wants a change until its marker command has run."""

    def __init__(self, changes, converge=True):
        self.changes = changes
        self.converge = converge
        self.applied = False

    def check(self, ctx):
        return [] if self.applied and self.converge else list(self.changes)


def make_step(marker, name="fake"):
    return Step(name, "test step", NoSettings, marker.check, ())


def fake_factory(remotes, marker=None):
    def factory(connection, **kwargs):
        r = FakeRemote(host=connection.host, **kwargs)
        r.on(r"@@os-release", FACTS)
        r.on(
            r"systemctl (restart|daemon-reload)|touch /marker|touch -- /var/lib/provision/pend", ""
        )
        if marker is not None:
            original = r._exec

            def _exec(command, timeout_s, stdin):
                if "touch /marker" in command:
                    marker.applied = True
                return original(command, timeout_s, stdin)

            r._exec = _exec
        remotes.append(r)
        return r

    return factory


def run(configs, steps, plan=False, factory=None, tmp_path=None):
    return run_hosts(
        configs, steps, plan=plan, reporter=Reporter(), log_dir=tmp_path, remote_factory=factory
    )


CHANGE = Change(
    "touch the marker", (Run("touch /marker"), Restart("a"), Restart("b"), Restart("a"))
)


def test_runner_plan_records_changes_and_runs_nothing(tmp_path):
    marker, remotes = Marker([CHANGE]), []
    (result,) = run(
        [host()],
        (make_step(marker),),
        plan=True,
        factory=fake_factory(remotes, marker),
        tmp_path=tmp_path,
    )
    assert result.steps[0].status == "planned" and result.pending
    assert not any("touch /marker" in c for c in remotes[0].ran)
    assert len(remotes[0].ran) == 1  # only the facts round trip


def test_runner_apply_restarts_each_unit_once_then_rechecks(tmp_path):
    marker, remotes = Marker([CHANGE]), []
    (result,) = run(
        [host()], (make_step(marker),), factory=fake_factory(remotes, marker), tmp_path=tmp_path
    )
    assert result.error is None, result.error
    assert result.steps[0].status == "changed"
    ran = remotes[0].ran
    restarts = [c for c in ran if "systemctl restart" in c]
    assert len(restarts) == 2 and "-- a" in restarts[0] and "-- b" in restarts[1]
    assert sum("@@os-release" in c for c in ran) == 2  # facts gathered again after the change


def test_runner_fails_step_that_does_not_converge(tmp_path):
    marker, remotes = Marker([CHANGE], converge=False), []
    second = Marker([])
    (result,) = run(
        [host()],
        (make_step(marker), make_step(second, "after")),
        factory=fake_factory(remotes, marker),
        tmp_path=tmp_path,
    )
    assert result.failed
    assert "did not converge" in result.error.message
    assert "touch the marker" in result.error.message
    assert [s.step for s in result.steps] == ["fake"]  # the host stops at the failure


def test_runner_uploads_and_daemon_reload_for_units(tmp_path):
    unit = Change(
        "write unit", (Upload("/etc/systemd/system/x.service", b"[Unit]\n"), Restart("x"))
    )
    marker, remotes = Marker([unit]), []
    factory = fake_factory(remotes, marker)

    def with_upload_marker(connection, **kwargs):
        r = factory(connection, **kwargs)
        original = r.put_atomic

        def put(upload, timeout_s=120):
            marker.applied = True
            original(upload)

        r.put_atomic = put
        return r

    (result,) = run([host()], (make_step(marker),), factory=with_upload_marker, tmp_path=tmp_path)
    assert result.error is None
    ran = remotes[0].ran
    assert remotes[0].uploads[0].dest == "/etc/systemd/system/x.service"
    reload_at = next(i for i, c in enumerate(ran) if "daemon-reload" in c)
    restart_at = next(i for i, c in enumerate(ran) if "systemctl restart" in c)
    assert reload_at < restart_at


def test_runner_reboots_when_allowed(tmp_path):
    marker, remotes = (
        Marker([Change("install kernel", (Run("touch /marker"), Reboot("new kernel")))]),
        [],
    )
    (result,) = run(
        [host()], (make_step(marker),), factory=fake_factory(remotes, marker), tmp_path=tmp_path
    )
    assert result.error is None
    assert remotes[0].reboots == 1


def test_runner_stops_when_reboot_is_not_allowed(tmp_path):
    marker, remotes = (
        Marker([Change("install kernel", (Run("touch /marker"), Reboot("new kernel")))]),
        [],
    )
    later = Marker([])
    (result,) = run(
        [host(allow_reboot=False)],
        (make_step(marker), make_step(later, "later")),
        factory=fake_factory(remotes, marker),
        tmp_path=tmp_path,
    )
    assert result.failed and "reboot is required" in result.error.message
    assert "--allow-reboot" in result.error.hint
    assert remotes[0].reboots == 0
    assert [s.step for s in result.steps] == ["fake"]


def test_runner_one_host_failing_does_not_stop_the_other(tmp_path):
    remotes = []
    good_factory = fake_factory(remotes)

    def factory(connection, **kwargs):
        r = good_factory(connection, **kwargs)
        if connection.host == "bad":
            r.on(r"@@os-release", (0, FACTS.replace('VERSION_ID="12"', 'VERSION_ID="10"')))
        return r

    ok = Marker([])
    results = run([host("bad"), host("good")], (make_step(ok),), factory=factory, tmp_path=tmp_path)
    assert [r.host for r in results] == ["bad", "good"]
    assert results[0].failed and "not supported" in results[0].error.message
    assert not results[1].failed and results[1].steps[0].status == "ok"


def test_runner_writes_a_transcript_with_secrets_masked(tmp_path):
    hc = host()
    hc = dataclasses.replace(
        hc, connection=dataclasses.replace(hc.connection, sudo_password="s3cr3t-pw")
    )
    marker, remotes = Marker([Change("echo", (Run("echo s3cr3t-pw; touch /marker"),))]), []
    (result,) = run(
        [hc], (make_step(marker),), factory=fake_factory(remotes, marker), tmp_path=tmp_path
    )
    text = result.log_path.read_text()
    assert "touch /marker" in text
    assert "s3cr3t-pw" not in text


@pytest.mark.parametrize("sudo", ["password", "missing"])
def test_runner_refuses_a_host_whose_sudo_it_cannot_use(tmp_path, sudo):
    remotes = []
    base_factory = fake_factory(remotes)

    def factory(connection, **kwargs):
        r = base_factory(connection, **kwargs)
        text = FACTS.replace("@@user\nroot\n0", "@@user\nubuntu\n1000").replace(
            "@@sudo\nroot", f"@@sudo\n{sudo}"
        )
        r.on(r"@@os-release", text)
        return r

    (result,) = run([host()], (make_step(Marker([])),), factory=factory, tmp_path=tmp_path)
    assert result.failed and "sudo" in result.error.message


ROLLBACKS = "@@rollbacks\naaaa1111 no active\nbbbb2222 yes inactive\ncccc3333 no inactive\n"


def test_facts_list_the_rollbacks_an_interrupted_run_left():
    from provision.facts import parse_facts

    facts = parse_facts(FACTS.replace("@@now", ROLLBACKS + "@@now"))
    assert facts.rollbacks == (
        ("aaaa1111", False, "active"),
        ("bbbb2222", True, "inactive"),
        ("cccc3333", False, "inactive"),
    )
    assert parse_facts(FACTS).rollbacks == ()


def test_runner_waits_for_an_armed_rollback_before_checking(tmp_path, monkeypatch):
    """A cut-off run's sshd change is still armed: checking now would find nothing to do and
    the timer would undo the change afterwards. The runner waits, clears, checks afresh."""
    monkeypatch.setattr("provision.guard.time.sleep", lambda s: None)
    marker, remotes = Marker([CHANGE]), []
    timer_checks = []

    def factory(connection, **kwargs):
        r = fake_factory(remotes, marker)(connection, **kwargs)
        gathered = []

        def facts_once(command):
            gathered.append(command)
            return FACTS.replace("@@now", ROLLBACKS + "@@now") if len(gathered) == 1 else FACTS

        original = r._exec

        def _exec(command, timeout_s, stdin):
            if "@@os-release" in command:
                r.ran.append(command)
                return Result(0, facts_once(command))
            if "systemctl is-active -q" in command:
                r.ran.append(command)
                timer_checks.append(command)
                return Result(0 if len(timer_checks) < 3 else 3, "")
            return original(command, timeout_s, stdin)

        r._exec = _exec
        r.on(r"rm -rf -- /var/lib/provision/rollback/aaaa1111", "")
        return r

    (result,) = run([host()], (make_step(marker),), factory=factory, tmp_path=tmp_path)
    assert result.error is None, result.error
    assert len(timer_checks) == 3 and "provision-rollback-aaaa1111.timer" in timer_checks[0]
    assert "bbbb2222" not in timer_checks[0]  # fired already: nothing to wait for
    ran = remotes[0].ran
    cleared = next(c for c in ran if "rm -rf" in c)
    assert all(f"rollback/{t}" in cleared for t in ("aaaa1111", "bbbb2222", "cccc3333"))
    # facts again after the rollback, then the step's check and apply on what is there now
    assert ran.index(cleared) < ran.index(next(c for c in ran if "touch /marker" in c))
    assert result.steps[0].status == "changed"
    log = result.log_path.read_text()
    assert "rolled back by the host: aaaa1111" in log and "kept as is: cccc3333" in log


def test_plan_only_mentions_an_armed_rollback(tmp_path, capsys):
    marker, remotes = Marker([CHANGE]), []

    def factory(connection, **kwargs):
        r = fake_factory(remotes, marker)(connection, **kwargs)
        r.on(r"@@os-release", FACTS.replace("@@now", ROLLBACKS + "@@now"))
        return r

    (result,) = run([host()], (make_step(marker),), plan=True, factory=factory, tmp_path=tmp_path)
    assert result.error is None and len(remotes[0].ran) == 1  # facts only, nothing touched
    assert "rolls it back within its rollback_after_s" in capsys.readouterr().out


def test_restarts_are_noted_on_the_host_first_and_cleared_after(tmp_path):
    """A run cut off between writing a unit's file and restarting it leaves a marker."""
    marker, remotes = Marker([CHANGE]), []
    (result,) = run(
        [host()], (make_step(marker),), factory=fake_factory(remotes, marker), tmp_path=tmp_path
    )
    assert result.error is None, result.error
    ran = remotes[0].ran
    noted = next(i for i, c in enumerate(ran) if "touch -- /var/lib/provision/pending" in c)
    assert "pending-restarts/a" in ran[noted] and "pending-restarts/b" in ran[noted]
    assert noted < next(i for i, c in enumerate(ran) if "touch /marker" in c)
    restart_a = next(c for c in ran if "systemctl restart -- a" in c)
    assert "rm -f -- /var/lib/provision/pending-restarts/a" in restart_a


def test_a_restart_left_pending_is_done_on_the_next_run(tmp_path):
    marker, remotes = Marker([]), []
    pending = "@@pending-restarts\nprovision-tensorboard\nsystemd-resolved.service~try\n"

    def factory(connection, **kwargs):
        r = fake_factory(remotes, marker)(connection, **kwargs)
        r.on(r"@@os-release", FACTS.replace("@@now", pending + "@@now"))
        r.on(r"systemctl cat", "")
        return r

    (result,) = run([host()], (make_step(marker),), factory=factory, tmp_path=tmp_path)
    assert result.error is None, result.error
    assert result.steps[0].step == "resume" and result.steps[0].status == "changed"
    ran = remotes[0].ran
    tb = next(c for c in ran if "systemctl restart -- provision-tensorboard" in c)
    assert "systemctl cat -- provision-tensorboard" in tb and "daemon-reload" in tb
    assert "rm -f -- /var/lib/provision/pending-restarts/provision-tensorboard" in tb
    try_restart = next(c for c in ran if "try-restart" in c)
    assert "systemd-resolved.service" in try_restart and "resolved.service~try" in try_restart


def test_plan_shows_a_pending_restart_as_a_change(tmp_path):
    marker, remotes = Marker([]), []

    def factory(connection, **kwargs):
        r = fake_factory(remotes, marker)(connection, **kwargs)
        r.on(r"@@os-release", FACTS.replace("@@now", "@@pending-restarts\nfoo\n@@now"))
        return r

    (result,) = run([host()], (make_step(marker),), plan=True, factory=factory, tmp_path=tmp_path)
    assert result.pending and len(remotes[0].ran) == 1


def test_changes_run_under_the_host_lock_probes_do_not(tmp_path):
    """An orphaned command of a cut-off run holds the lock; the next run's changes wait."""
    marker, remotes = Marker([CHANGE]), []
    run([host()], (make_step(marker),), factory=fake_factory(remotes, marker), tmp_path=tmp_path)
    ran = remotes[0].ran
    change = next(c for c in ran if "touch /marker" in c)
    assert "flock -w 1800 -E 75 /run/lock/provision.lock sh -c" in change
    facts = next(c for c in ran if "@@os-release" in c)
    assert "flock" not in facts


# --- the transport: sudo checked once, refused probes are errors, the run lock ------------


class TableRemote(Remote):
    """A login user's Remote (not root) answering from a list of (regex, Result)."""

    def __init__(self, answers, password=None):
        from provision.shell import Secret

        secret = Secret(password) if password else None
        super().__init__(Connection("box", "192.0.2.1", user="alice", sudo_password=secret))
        self.answers = answers
        self.sent: list[tuple[str, str | None]] = []

    def _exec(self, command, timeout_s, stdin):
        import re

        self.sent.append((command, stdin))
        for pattern, result in self.answers:
            if re.search(pattern, command, re.S):
                return result
        raise AssertionError(f"unexpected: {command}")


REFUSED = Result(1, "", "sudo: a password is required\n")
WRONG = Result(1, "", "Sorry, try again.\nsudo: 1 incorrect password attempt\n")


def test_commands_are_sent_in_the_c_locale_with_sudo_around_the_whole_command():
    r = TableRemote([], password="pw")
    assert r.wrap("cat /etc/x", sudo=False) == ("env LC_ALL=C sh -c 'cat /etc/x'", None)
    assert r.wrap("a && b", sudo=True) == (
        "env LC_ALL=C sudo -S -p '' -H -- env LC_ALL=C sh -c 'a && b'",
        "pw\n",
    )
    r.use_password = False  # sudo needs none (NOPASSWD): the password never reaches stdin
    assert r.wrap("id", sudo=True) == ("env LC_ALL=C sudo -n -H -- env LC_ALL=C sh -c id", None)


def test_a_probe_that_sudo_refuses_is_an_error_not_an_absent_file():
    from provision.errors import ProbeError

    r = TableRemote([(r"cat -- /etc/missing", Result(1, "", "cat: /etc/missing: No such file")),
                     (r"cat", REFUSED)])  # fmt: skip
    assert r.probe("cat -- /etc/missing", sudo=True).exit_code == 1  # absent: an answer
    with pytest.raises(ProbeError) as info:
        r.probe("cat -- /etc/shadow", sudo=True)
    assert info.value.message.startswith("box: `cat -- /etc/shadow` exited 1")
    assert "sudo refused to run it (sudo: a password is required)" in info.value.hint


def test_a_probe_the_login_user_may_not_read_is_an_error():
    from provision.errors import ProbeError

    denied = Result(1, "", "cat: /root/x: Permission denied\n")
    r = TableRemote([(r"cat", denied)])
    with pytest.raises(ProbeError, match="exited 1") as info:
        r.probe("cat /root/x")
    assert "permission denied to the login user" in info.value.hint


def test_a_refused_password_is_never_sent_again():
    from provision.errors import ConnectError

    r = TableRemote([(r"apt-get", WRONG), (r"sh -c true$", Result(0, ""))], password="wrong")
    assert not r.run("apt-get update", check=False).ok
    with pytest.raises(ConnectError, match="does not try it again"):
        r.run("apt-get update")
    with pytest.raises(ConnectError, match="does not try it again"):
        r.probe("cat /etc/x", sudo=True)
    assert len(r.sent) == 1 and r.sudo_attempts == 1
    assert r.run("true", sudo=False).ok  # without sudo the host is still reachable


def test_the_password_check_refusal_is_one_clear_error_and_latches():
    from provision.errors import ConnectError

    r = TableRemote([(r"mkfifo", Result(1, "", "Killed\nSorry, try again.\n"))],
                    password="wrong")  # fmt: skip
    with pytest.raises(ConnectError) as info:
        r.check_sudo()
    assert info.value.message == (
        "box: the sudo password for alice was refused; provision does not try it again "
        "(each try counts towards a lockout under pam_faillock)"
    )
    assert "--ask-sudo-pass" in info.value.hint and "PROVISION_SUDO_PASSWORD" in info.value.hint
    ((command, stdin),) = r.sent
    assert stdin == "wrong\n" and "wrong" not in command  # on stdin, never in argv
    with pytest.raises(ConnectError):
        r.run("id")
    assert len(r.sent) == 1


def test_a_refused_upload_removes_its_staged_copy_as_the_login_user():
    from provision.changes import Upload
    from provision.errors import CommandError

    r = TableRemote([(r"^env LC_ALL=C PROVISION_RUN=\w+ sh -c 'rm -f -- /tmp/\.provision-", Result(0, "")),
                     (r"install -m", REFUSED)])  # fmt: skip
    r._put_bytes = lambda data, path: None
    with pytest.raises(CommandError):
        r.put_atomic(Upload("/etc/x.conf", b"x\n"))
    assert re.match(
        r"env LC_ALL=C PROVISION_RUN=\w+ sh -c 'rm -f -- /tmp/.provision-", r.sent[-1][0]
    )


def _check_script_with(tmp_path, fake_sudo: str, password: str):
    """Run sudoers.CHECK_SCRIPT with a fake sudo first on PATH."""
    import os
    import subprocess

    from provision import sudoers

    fake = tmp_path / "sudo"
    fake.write_text(fake_sudo)
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", "-c", sudoers.CHECK_SCRIPT], input=password + "\n", capture_output=True,
        text=True, env=env, timeout=30,
    )  # fmt: skip


# Like sudo -S: reads a line, on a wrong one says "Sorry, try again." and reads once more
# (a read that would count as a second failure under pam_faillock).
FAKE_SUDO = """#!/bin/sh
IFS= read -r pw
echo "$pw" >> {log}
if [ "$pw" = right ]; then exit 0; fi
echo 'Sorry, try again.' >&2
IFS= read -r pw
echo "second read: $pw" >> {log}
echo 'sudo: 2 incorrect password attempts' >&2
exit 1
"""


def test_the_password_check_makes_one_attempt_only(tmp_path):
    log = tmp_path / "reads"
    started = time.monotonic()
    run = _check_script_with(tmp_path, FAKE_SUDO.format(log=log), "wrong")
    assert run.returncode == 1 and "Sorry, try again." in run.stderr
    assert log.read_text() == "wrong\n"  # killed before it could read a second time
    assert time.monotonic() - started < 5
    assert list(tmp_path.glob(".provision-sudo*")) == []
    log.unlink()
    run = _check_script_with(tmp_path, FAKE_SUDO.format(log=log), "right")
    assert run.returncode == 0 and log.read_text() == "right\n"


class FakeStream:
    def __init__(self, lines, stderr=""):
        self.lines = list(lines)
        self.sent = []
        self.closed = False
        self.stderr = stderr

    def readline(self, timeout_s):
        if self.closed:
            raise AssertionError("read after close")
        if not self.lines:
            return ""
        line = self.lines.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    def send(self, text):
        self.sent.append(text)

    def close(self):
        self.closed = True
        return self.stderr


def test_run_lock_names_the_holder_while_waiting_then_holds():
    from provision import hostlock

    holder = "provision pid 4242 of bob@laptop, since 2026-12-01 08:00:00 UTC (host pid 77)"
    stream = FakeStream([f"busy {holder}", None, f"busy {holder}", "locked"])
    notes, commands = [], []

    def open_stream(command):
        commands.append(command)
        return stream

    lock, waited = hostlock.acquire("box", open_stream, notes.append)
    assert waited and notes == [
        f"another run holds the box: {holder}; waiting for it to finish"
    ]  # said once, not at every poll
    assert commands[0].startswith("sh -c ") and f"provision pid {os.getpid()} of " in commands[0]
    lock.release()
    assert stream.closed


def test_run_lock_names_an_earlier_runs_command_that_still_runs():
    from provision import hostlock

    what = "`env DEBIAN_FRONTEND=noninteractive apt-get -y install tree` (host pid 9, since 08:01:02 UTC)"
    notes = []
    lock, _ = hostlock.acquire("box", lambda c: FakeStream([f"running {what}", "locked"]),
                               notes.append)  # fmt: skip
    lock.release()
    assert notes == [
        f"a command of an earlier run is still running on the host: {what}; waiting for it to end"
    ]


def test_run_lock_refused_by_sudo_says_so():
    from provision import hostlock
    from provision.errors import ConnectError

    stream = FakeStream([], stderr="sudo: a password is required\n")
    with pytest.raises(ConnectError, match=r"sudo refused to run it \(sudo: a password is"):
        hostlock.acquire("box", lambda c: stream, print)
    assert stream.closed


def test_interrupt_while_waiting_for_the_lock_closes_the_channel():
    from provision import hostlock

    stream = FakeStream(["busy x", KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        hostlock.acquire("box", lambda c: stream, lambda _m: None)
    assert stream.closed  # the waiter on the host dies on its next write


@pytest.mark.parametrize(
    ("command", "safe"),
    [
        ("env DEBIAN_FRONTEND=noninteractive apt-get -y -q install tree", False),
        ("env DEBIAN_FRONTEND=noninteractive dpkg --configure -a", False),
        ("( waited=0; while :; do out=$(env apt-get -y -q update --error-on=any 2>&1)", True),
        ("/opt/provision/tensorboard/bin/pip install -q tensorboard", True),
        ("flock -w 1800 -E 75 /run/lock/provision.lock sh -c 'curl -fsSLo x https://x'", True),
    ],
)
def test_what_an_interrupt_may_stop_on_the_host(command, safe):
    from provision import interrupt

    assert interrupt.stoppable(command) is safe


class FakeChannel:
    """A Paramiko channel stand-in: output arrives over `polls` polls, then an exit status."""

    def __init__(self, out: bytes, polls: int, status: int = 0):
        self.out, self.polls, self.status = out, polls, status
        self.closed = False
        self.remote_chanid = 7
        self.transport = self

    def _send_user_message(self, message):  # sshd's "signal" request
        self.signalled = True

    def recv_ready(self):
        self.polls -= 1
        return self.polls <= 0 and bool(self.out)

    def recv(self, n):
        data, self.out = self.out, b""
        return data

    def recv_stderr_ready(self):
        return False

    def exit_status_ready(self):
        return self.polls <= 0 and not self.out

    def recv_exit_status(self):
        return self.status

    def close(self):
        self.closed = True


@pytest.fixture
def signalled():
    from provision import interrupt

    interrupt.state.signum = 2  # what the SIGINT handler sets
    yield
    interrupt.state.signum = 0


def test_an_interrupt_stops_a_safe_command_at_once(signalled):
    from provision import interrupt, streams
    from provision.remote import stop_channel

    channel = FakeChannel(b"never read\n", polls=10**9)
    with pytest.raises(interrupt.Interrupted):
        streams.drive(channel, None, None, stoppable=True, stop=stop_channel)
    assert channel.closed and channel.signalled


def test_an_interrupt_waits_for_apt_and_dpkg_to_end(signalled):
    from provision import interrupt, streams

    lines = []
    channel = FakeChannel(b"Setting up tree (2.1.0-1) ...\n", polls=20)
    with pytest.raises(interrupt.Interrupted):
        streams.drive(channel, None, lines.append, stoppable=False)
    assert lines == ["Setting up tree (2.1.0-1) ..."]  # it ran to its end
    assert not channel.closed


def test_the_first_interrupt_says_what_happens_on_each_host():
    import signal

    from provision import interrupt

    apt = "env DEBIAN_FRONTEND=noninteractive apt-get -y -q install tree"
    with interrupt.state.lock:
        interrupt.state.running.update(
            {1: ("gpu1", apt, False), 2: ("gpu2", "pip install x", True)}
        )
    try:
        text = interrupt.message(signal.SIGINT)
    finally:
        with interrupt.state.lock:
            interrupt.state.running.clear()
    assert text == (
        "provision: Ctrl-C: stopping.\n"
        f"  gpu1: `{apt}` keeps running on the host (stopping apt/dpkg mid-run breaks the "
        "package database); waiting for it to end.\n"
        "  gpu2: stopping `pip install x` on the host.\n"
        "  Press Ctrl-C again to leave at once (apt/dpkg keeps running there).\n"
    )
    assert interrupt.message(signal.SIGTERM).startswith("provision: SIGTERM: stopping.\n")


def test_the_run_lock_is_held_from_facts_to_the_last_check_and_taken_again_after_a_reboot(
    tmp_path,
):
    """The lock comes before any change and goes after the last re-check; a step that cut
    the connection it ran on (a reboot, a new address) makes the runner take it again."""
    marker, remotes, streams = Marker([CHANGE]), [], []
    base = fake_factory(remotes, marker)

    class LiveStream(FakeStream):
        def __init__(self):
            super().__init__(["locked"])
            self.up = True

        def alive(self):
            return self.up and not self.closed

    def factory(connection, **kwargs):
        r = base(connection, **kwargs)
        r.supports_streams = True

        def open_stream(command, sudo=True):
            streams.append(LiveStream())
            r.ran.append("<lock>")
            return streams[-1]

        r.open_stream = open_stream
        original = r._exec

        def _exec(command, timeout_s, stdin):
            if "touch /marker" in command:
                streams[-1].up = False  # as a reboot would drop it
            return original(command, timeout_s, stdin)

        r._exec = _exec
        return r

    (result,) = run([host()], (make_step(marker),), factory=factory, tmp_path=tmp_path)
    assert result.error is None, result.error
    ran = remotes[0].ran
    assert ran.index("<lock>") < next(i for i, c in enumerate(ran) if "touch /marker" in c)
    assert len(streams) == 2 and all(s.closed for s in streams)  # taken again, both released
