"""The one connect → gather facts → close loop the read-only commands share (facts, compat,
verify, doctor): a command says what to do with each open host, this module does the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import click

from provision.errors import ProvisionError
from provision.output import error_text

T = TypeVar("T")


def over_hosts(
    configs: Iterable,
    use: Callable[..., T],
    *,
    log_dir: Path | None = None,
    unreachable: list[str] | None = None,
    parallel: int = 1,
) -> dict[str, T]:
    """Connect to each host in turn, gather its facts, call use(hc, remote, facts) while the
    connection is open, close it; {host name: what use returned}.

    With log_dir, each host's commands go to a transcript there. With `unreachable` (a list),
    a host whose connection, facts or `use` raise a ProvisionError is named on stderr, added
    to the list and skipped; without it the error propagates (exit 2 for a ConfigError).
    With parallel > 1, up to that many hosts at a time (`use` must not prompt): the results,
    the messages and the list stay in inventory order, and an error that propagates is the
    first host's in that order, raised once every host is done."""
    # Late imports: `provision --help` must not load the SSH stack (tests/unit/test_startup.py).
    from provision import remote as remote_mod
    from provision.output import Transcript
    from provision.runner import gather_facts

    def one(hc) -> tuple[T | None, ProvisionError | None]:
        secrets = [hc.connection.sudo_password] if hc.connection.sudo_password else []
        transcript = Transcript(log_dir, hc.name, secrets) if log_dir is not None else None
        try:
            kwargs = {} if transcript is None else {"log": transcript.write}
            # looked up at call time so that tests can replace provision.remote.connect
            remote = remote_mod.connect(hc.connection, **kwargs)
            try:
                return use(hc, remote, gather_facts(remote)), None
            finally:
                remote.close()
        except ProvisionError as exc:
            if unreachable is None:
                raise
            return None, exc
        finally:
            if transcript is not None:
                transcript.close()

    configs = list(configs)
    if parallel > 1 and len(configs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(parallel, len(configs))) as pool:
            futures = [pool.submit(one, hc) for hc in configs]
        outcomes = (f.result() for f in futures)
    else:
        outcomes = (one(hc) for hc in configs)  # one host after the other, as they come
    out: dict[str, T] = {}
    for hc, (value, exc) in zip(configs, outcomes, strict=True):
        if exc is None:
            out[hc.name] = value
        else:
            click.echo(f"{hc.name}: " + error_text(exc), err=True)
            unreachable.append(hc.name)
    return out
