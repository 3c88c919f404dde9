"""Runner behaviour with FakeRemote: plan vs apply, convergence, restarts, reboots, isolation."""

import dataclasses
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.changes import Change, Reboot, Restart, Result, Run, Upload
from provision.config import HostConfig
from provision.output import Reporter
from provision.remote import Connection
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
