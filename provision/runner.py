"""Run steps on hosts: plan (check only) or apply (carry out, then check again).

Per host: connect and gather the facts (one round trip), take the run lock, gather every
selected step's declared reads (one more), then for each step `check`, a pure decision from
facts, settings and reads. The executor (executor.Plan or executor.Apply) carries the
changes out or not; after a change the facts and the remaining steps' reads are gathered
again and `check` must now find nothing ("did not converge" otherwise). A no-op run is
three remote commands. One thread per host; a failing host stops only its own steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from provision import group, guard, hostlock, prefetch
from provision.changes import Change
from provision.errors import ProvisionError, StepError
from provision.executor import Apply, Plan, resume_changes
from provision.facts import GATHER_SCRIPT, Facts, check_supported, parse_facts
from provision.facts import warnings as facts_warnings
from provision.facts.reads import Read
from provision.hostconfig import HostConfig
from provision.output import Reporter, Transcript
from provision.remote import Remote, connect
from provision.step import Context, Step


@dataclass
class StepResult:
    """What happened to one step on one host."""

    step: str
    status: str  # ok | changed | planned | failed
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0
    error: ProvisionError | None = None


@dataclass
class HostResult:
    """What happened on one host."""

    host: str
    steps: list[StepResult] = field(default_factory=list)
    error: ProvisionError | None = None
    commands: int = 0
    seconds: float = 0.0
    log_path: Path | None = None
    moved_to: tuple[str, int] | None = None  # (address, port) after a confirmed move

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def pending(self) -> bool:
        return any(s.changes for s in self.steps if s.status == "planned")


def gather_facts(remote: Remote) -> Facts:
    """One round trip: run the gather script and parse it."""
    return parse_facts(remote.run(GATHER_SCRIPT, sudo=False).stdout)


def strict_reads() -> bool:
    """Whether a read a step did not declare is an error (every test sets it) rather than a
    probe of its own (a round trip more, which the transcript shows)."""
    return os.environ.get("PROVISION_STRICT_READS", "") == "1"


def context(
    hc: HostConfig, remote: Remote, facts: Facts, gathered, *, diffs: bool = True
) -> Context:
    """The Context a step's reads() and check() see on this host."""
    return Context(
        hc.name,
        facts,
        hc.settings,
        lambda c, sudo: remote.probe(c, sudo=sudo),
        address=hc.connection.addr,
        gathered=gathered,
        strict=strict_reads(),
        diffs=diffs,
    )


def gather_reads(
    hc: HostConfig, remote: Remote, steps: tuple[Step, ...], facts: Facts, *, diffs: bool
) -> dict[Read, object]:
    """The declared reads of `steps`, answered in one round trip."""
    ctx = context(hc, remote, facts, {}, diffs=diffs)
    wanted: list[Read] = []
    for step in steps:
        if step.reads is not None:
            wanted += step.reads(ctx)
    return remote.read_all(wanted, facts.user)


def preflight(hc: HostConfig, remote: Remote, facts: Facts) -> None:
    """Refuse early what would fail later: unsupported OS, sudo we cannot use."""
    check_supported(hc.name, facts)
    remote.is_root = facts.uid == 0
    if facts.sudo == "missing":
        raise ProvisionError(
            f"{hc.name}: sudo is not installed and {facts.user} is not root",
            "log in as root once and `apt-get install sudo`, or set ansible_user=root",
        )
    if facts.sudo == "password" and not hc.connection.sudo_password:
        raise ProvisionError(
            f"{hc.name}: {facts.user} needs a password for sudo",
            "pass --ask-sudo-pass or set PROVISION_SUDO_PASSWORD, or give the user NOPASSWD sudo",
        )


def take_host(hc: HostConfig, remote: Remote, facts: Facts, reporter: Reporter, log):
    """Check the sudo password once (before any command that uses it), then take the host's
    run lock for the whole run: (lock or None without one, whether we waited for another)."""
    sudo_ready(remote, facts)
    return take_lock(hc, remote, reporter, log)


def sudo_ready(remote: Remote, facts: Facts) -> None:
    """Check the sudo password once, before any command that uses it."""
    if facts.sudo == "nopasswd":
        remote.use_password = False  # sudo would not read it: it would reach the command
    remote.check_sudo()


def lock_and_read(hc, remote, steps, facts, reporter, log, *, diffs: bool):
    """Take the run lock and, meanwhile, answer the declared reads: they only read, so they
    need not wait for the lock, and the two round trips overlap (a few RTTs less on a far
    box). (lock, waited, reads): reads is None when we waited, since another run changed
    the host meanwhile, or when the host has rollbacks or resume work to do first."""
    sudo_ready(remote, facts)
    if not remote.supports_streams or facts.rollbacks or resume_changes(facts):
        return (*take_lock(hc, remote, reporter, log), None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        locking = pool.submit(take_lock, hc, remote, reporter, log)
        try:
            gathered = gather_reads(hc, remote, steps, facts, diffs=diffs)
        except BaseException:
            try:  # the lock's error comes first (e.g. sudo refused: it says why, and the fix)
                lock, _ = locking.result()
            except ProvisionError as lock_error:
                raise lock_error from None
            except BaseException:
                pass
            else:
                if lock is not None:
                    lock.release()
            raise
        lock, waited = locking.result()
    return lock, waited, None if waited else gathered


def take_lock(hc: HostConfig, remote: Remote, reporter: Reporter, log):
    """The host's run lock for the whole run: (lock or None without one, whether we waited)."""
    if not remote.supports_streams:
        return None, False

    def note(text: str) -> None:
        log(f"# {text}")
        reporter.step_line(hc.name, "-", "waiting", text)

    return hostlock.acquire(hc.name, remote.open_stream, note)


def settle_rollbacks(
    hc: HostConfig, remote: Remote, facts: Facts, plan: bool, reporter: Reporter, log
) -> Facts:
    """An interrupted run left unconfirmed changes: let the host undo them first (see
    guard.settle), then gather the facts again. A plan only says so."""
    armed = [t for t, fired, state in facts.rollbacks if not fired and state == "active"]
    if plan:
        if armed:
            reporter.step_line(
                hc.name, "-", "note", "an interrupted run left an unconfirmed change: the host "
                "rolls it back within its rollback_after_s; the plan below may change then",
            )  # fmt: skip
        return facts
    reporter.started(hc.name, "settling an interrupted run's unconfirmed changes")
    try:
        wait_s = max(hc.reboot_timeout_s, 600)
        notes = guard.settle(remote, facts.rollbacks, wait_s, lambda m: log(f"# {m}"))
    finally:
        reporter.finished(hc.name)
    for note in notes:
        log(f"# {note}")
    if armed:
        reporter.step_line(hc.name, "-", "note", "an interrupted run's unconfirmed change was "
                           "rolled back by the host; checking again from there")  # fmt: skip
    return gather_facts(remote)


def run_host(
    hc: HostConfig,
    steps: tuple[Step, ...],
    *,
    plan: bool,
    reporter: Reporter,
    log_dir: Path,
    remote_factory: Callable[..., Remote] = connect,
) -> HostResult:
    """Provision (or plan) one host; errors are recorded in the result, never raised."""
    started = time.monotonic()
    result = HostResult(hc.name)
    secrets = [hc.connection.sudo_password] if hc.connection.sudo_password else []
    transcript = Transcript(log_dir, hc.name, secrets)
    result.log_path = transcript.path
    transcript.write(f"# provision {'plan' if plan else 'apply'} on {hc.connection.target}")

    def log(text: str) -> None:
        transcript.write(text)
        if text.startswith("$ "):
            reporter.command(hc.name, text)

    remote = None
    host_lock = None
    fetcher = None
    try:
        remote = remote_factory(
            hc.connection, log=log, on_line=lambda line: reporter.output_line(hc.name, line)
        )
        facts = gather_facts(remote)
        preflight(hc, remote, facts)
        diffs = plan or reporter.verbose
        host_lock, waited, gathered = lock_and_read(
            hc, remote, steps, facts, reporter, log, diffs=diffs
        )
        if waited:  # another run changed the host while we waited
            facts = gather_facts(remote)
        for warning in facts_warnings(hc.name, facts):  # e.g. the host's clock is days behind
            reporter.step_line(hc.name, "-", "warning", warning)
        if facts.rollbacks:
            facts = settle_rollbacks(hc, remote, facts, plan, reporter, log)
        executor = Plan() if plan else Apply(remote, reporter, hc, remote_factory)
        resume = resume_changes(facts)
        if resume:
            current = StepResult("resume", "planned" if plan else "changed", resume)
            result.steps.append(current)
            executor.carry_out(resume, facts.boot_id)
            reporter.step_line(
                hc.name, "resume", current.status, "; ".join(c.summary for c in resume)
            )
        if gathered is None:
            gathered = gather_reads(hc, remote, steps, facts, diffs=diffs)
        ctx = context(hc, remote, facts, gathered, diffs=diffs)
        for step in steps:
            if step.preflight is not None:
                step.preflight(ctx)
        if not plan:  # downloads that do not depend on each other overlap the installs
            fetcher = prefetch.start(
                remote,
                steps,
                ctx,
                log,
                lambda t: reporter.step_line(hc.name, "prefetch", "done", t),
            )
            executor.prefetch = fetcher
            if fetcher is not None:
                reporter.step_line(hc.name, "prefetch", "started", fetcher.describe())
        changed_before = False
        for index, step in enumerate(steps):
            step_start = time.monotonic()
            current = StepResult(step.name, "ok")
            result.steps.append(current)
            try:
                facts, gathered = run_step(
                    hc, steps[index:], remote, facts, gathered, executor, current, diffs=diffs
                )
                if host_lock is not None and not host_lock.alive():
                    # A reboot or a new address closed the connection the lock ran on.
                    host_lock.release()
                    host_lock = None
                    host_lock, waited = take_host(hc, remote, facts, reporter, log)
                    if waited:
                        facts = gather_facts(remote)
                        gathered = gather_reads(hc, remote, steps[index + 1 :], facts, diffs=diffs)
            except ProvisionError as exc:
                current.status, current.error = "failed", exc
                current.seconds = time.monotonic() - step_start
                reporter.step_line(hc.name, step.name, "failed", exc.message.splitlines()[0])
                raise
            current.seconds = time.monotonic() - step_start
            detail = "; ".join(c.summary for c in current.changes)
            if plan and current.changes and changed_before:
                detail += "  (planned against the current state: may differ after the steps above)"
            changed_before |= bool(current.changes)
            reporter.step_line(hc.name, step.name, current.status, detail)
            if plan or reporter.verbose:
                reporter.changes(current.changes)
    except ProvisionError as exc:
        result.error = exc
        transcript.write(f"# error: {exc.message}\n# hint: {exc.hint}")
        if not result.steps or result.steps[-1].status != "failed":
            reporter.step_line(hc.name, "-", "failed", exc.message.splitlines()[0])
    finally:
        if fetcher is not None:
            fetcher.close()
            if result.error is None:  # a failed run keeps what it fetched for the next
                try:
                    remote.run(prefetch.CLEANUP, check=False)
                except ProvisionError as exc:
                    transcript.write(f"# prefetch: could not remove {prefetch.PREFETCH}: {exc}")
        if host_lock is not None:
            host_lock.release()
        if remote is not None:
            result.commands = remote.commands
            now = (remote.connection.addr, remote.connection.port)
            if now != (hc.connection.addr, hc.connection.port):
                result.moved_to = now
            remote.close()
        result.seconds = time.monotonic() - started
        transcript.write(f"# {result.commands} commands, {result.seconds:.1f}s")
        transcript.close()
    return result


def run_step(
    hc: HostConfig,
    steps: tuple[Step, ...],
    remote: Remote,
    facts: Facts,
    gathered: dict,
    executor: Plan | Apply,
    current: StepResult,
    *,
    diffs: bool = True,
) -> tuple[Facts, dict]:
    """Check the first of `steps`; with the apply executor, carry out its changes and require
    convergence: the facts and the reads of `steps` (this one and those after it) are read
    again, one round trip each, and check must find nothing. (facts, gathered) for the next."""
    step = steps[0]
    changes = step.check(context(hc, remote, facts, gathered, diffs=diffs))
    current.changes = changes
    if not executor.applies:
        current.status = "planned" if changes else "ok"
        return facts, gathered
    if not changes:
        return facts, gathered
    executor.carry_out(changes, facts.boot_id)
    facts = gather_facts(remote)
    gathered = gather_reads(hc, remote, steps, facts, diffs=diffs)
    leftover = step.check(context(hc, remote, facts, gathered, diffs=diffs))
    if leftover:
        raise StepError(
            f"{hc.name} {step.name}: did not converge; still to do after applying: "
            + "; ".join(c.summary for c in leftover),
            "this is a bug in provision or something on the host undoes the change; "
            "the transcript has every command",
        )
    current.status = "changed"
    return facts, gathered


def run_hosts(
    configs: list[HostConfig],
    steps: tuple[Step, ...],
    *,
    plan: bool,
    reporter: Reporter,
    parallel: int = 8,
    log_dir: Path = Path(".provision/logs"),
    remote_factory: Callable[..., Remote] = connect,
) -> list[HostResult]:
    """Run on every host, up to `parallel` at a time; results in inventory order."""

    def one(hc: HostConfig) -> HostResult:
        return run_host(
            hc, steps, plan=plan, reporter=reporter, log_dir=log_dir, remote_factory=remote_factory
        )

    def each(batch: list[HostConfig]) -> list[HostResult]:
        if len(batch) == 1:
            return [one(batch[0])]
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            return list(pool.map(one, batch))

    # The users step needs the group phase too: an account's UID:GID is the cluster's.
    names = {step.name for step in steps}
    if names & {"cluster", "users"} and any(map(group.members_of, configs)):
        done = run_clusters(configs, each, plan=plan, reporter=reporter, log_dir=log_dir,
                            remote_factory=remote_factory,
                            cluster_step="cluster" in names)  # fmt: skip
        return [done[hc.name] for hc in configs]
    return each(configs)


def run_clusters(
    configs, each, *, plan, reporter, log_dir, remote_factory, cluster_step=True
) -> dict:
    """The hosts of a run with the cluster step: each cluster's members read and decided first
    (group.py: a refusal fails every selected member before anything changes), then the
    controllers with the hosts in no cluster, then the other members, given the controller's
    munge key (read once per cluster, never logged). Without the cluster step (`users` alone)
    only the accounts are decided and refused, and no key is read. {host: HostResult}."""
    done: dict[str, HostResult] = {}

    def fail(hosts: list[HostConfig], exc: ProvisionError) -> None:
        for hc in hosts:
            done[hc.name] = HostResult(hc.name, error=exc)
            reporter.step_line(hc.name, "cluster", "failed", exc.message.splitlines()[0])

    clusters: dict[str, list[HostConfig]] = {}
    first: list[HostConfig] = []
    for hc in configs:
        if group.members_of(hc):
            clusters.setdefault(hc.settings["cluster"].controller, []).append(hc)
        else:
            first.append(hc)
    later: dict[str, list[HostConfig]] = {}
    for controller, selected in clusters.items():
        try:
            decided = read_cluster(selected[0], reporter, log_dir, remote_factory, cluster_step)
        except ProvisionError as exc:
            fail(selected, exc)
            continue
        with_plan = [
            dataclasses.replace(hc, settings={**hc.settings, group.PLAN: decided})
            for hc in selected
        ]
        first += [hc for hc in with_plan if hc.name == controller]
        later[controller] = [hc for hc in with_plan if hc.name != controller]
    done.update((r.host, r) for r in each(first))
    second: list[HostConfig] = []
    for controller, nodes in later.items():
        if not nodes:
            continue
        head = done.get(controller)
        if head is not None and head.failed:
            exc = ProvisionError(
                f"not run: the cluster's controller {controller} failed",
                f"fix {controller} first (its error is above), then run again",
            )
            fail(nodes, exc)
            continue
        if plan or not cluster_step:
            second += nodes
            continue
        try:
            key = read_munge_key(nodes[0].settings[group.MEMBERS], controller, log_dir,
                                 remote_factory)  # fmt: skip
        except ProvisionError as exc:
            fail(nodes, exc)
            continue
        for hc in nodes:
            keyed = group.with_key(hc.settings[group.PLAN], key, hashlib.sha256(key).hexdigest())
            second.append(dataclasses.replace(hc, settings={**hc.settings, group.PLAN: keyed}))
    done.update((r.host, r) for r in each(second))
    return done


def _member_remote(hc: HostConfig, log_dir: Path, remote_factory, what: str):
    """A connection to a cluster member for the group phase, with its own transcript."""
    transcript = Transcript(log_dir, hc.name, [])
    transcript.write(f"# provision {what} on {hc.connection.target}")
    remote = remote_factory(hc.connection, log=transcript.write)
    facts = gather_facts(remote)
    preflight(hc, remote, facts)
    return remote, transcript


def read_member(hc: HostConfig, log_dir: Path, remote_factory) -> group.Member:
    """group.READ on one member (one round trip after the facts)."""
    remote, transcript = _member_remote(hc, log_dir, remote_factory, "cluster read")
    try:
        out = remote.run(group.READ, sudo=True, check=False)
        return group.parse_member(hc.name, out.stdout)
    finally:
        remote.close()
        transcript.close()


def read_cluster(
    hc: HostConfig, reporter: Reporter, log_dir: Path, remote_factory, cluster_step=True
):
    """Every member of hc's cluster read (in parallel) and decided: a ClusterPlan, or the
    ProvisionError that names every reason the boxes cannot form it (without the cluster
    step: only the accounts' reasons)."""
    members = group.members_of(hc)
    controller = hc.settings["cluster"].controller
    reporter.step_line(hc.name, "cluster", "note", f"reading the {len(members)} boxes of "
                       f"{controller}'s cluster before any change")  # fmt: skip
    errors: list[str] = []
    found: list[group.Member] = []
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(members)))) as pool:
        futures = [(m, pool.submit(read_member, m, log_dir, remote_factory)) for m in members]
        for m, future in futures:
            try:
                found.append(future.result())
            except ProvisionError as exc:
                errors.append(f"{m.name}: {exc.message.splitlines()[0]}")
    if errors:
        raise group.refusal(controller, errors)
    settings = next(m for m in members if m.name == controller).settings["cluster"]
    wanted = group.wanted_accounts(members)
    if cluster_step:
        problems = group.problems(found, controller, group.now(), settings.max_clock_skew_s,
                                  wanted)  # fmt: skip
    else:
        problems = group.account_problems(found, wanted)
    if problems:
        raise group.refusal(controller, problems)
    return group.decide(found, {m.name: m.settings["cluster"] for m in members}, controller, wanted)


def read_munge_key(members, controller: str, log_dir: Path, remote_factory) -> bytes:
    """The controller's munge key (group.read_key: withheld from its transcript)."""
    head = next(m for m in members if m.name == controller)
    remote, transcript = _member_remote(head, log_dir, remote_factory, "munge key read")
    try:
        return group.read_key(remote)
    finally:
        remote.close()
        transcript.close()
