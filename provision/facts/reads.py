"""Declared reads, batched: every read a step's check needs, sent to the host in one command.

A step declares its reads (`Step.reads(ctx)` → `Read`s: a read-only command and whether it
needs root); the runner gathers the reads of every selected step in one round trip before any
check, and again after a step changed the host. `check` then looks its reads up
(`Context.read`) and decides from them alone: it never waits on the host, and a plan of ten
steps costs one round trip, not forty.

The batch runs as root (one sudo). A read declared without sudo runs as the login user inside
it (`setpriv`: the user's uid, primary gid and groups; HOME, USER and LOGNAME set as runuser
sets them, the rest of the environment kept), so it sees exactly what a plain probe
of that user would see, and Python does not leave root-owned bytecode in a user's
environment (PYTHONDONTWRITEBYTECODE). setpriv (util-linux, essential on Debian and Ubuntu)
opens no PAM session: runuser did, one per read, which cost the box CPU on every run and wrote
two journal lines per read. Each read runs
in its own subshell with stdin closed; its stdout, exit status and stderr come back separately,
between markers that carry a fresh nonce, so no output can fake a boundary. The reads only
read, so they run at once (each into its own files under a private temporary folder) and are
printed in order when all have ended: the batch takes about as long as its slowest read, not
the sum of them (a box with every step on has 30-odd reads: systemctl, stat, sha256sum, a
Python or two).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from provision import shell
from provision.changes import Result


@dataclass(frozen=True)
class Read:
    """One read-only command a check needs; `sudo`: it needs root to read what it reads."""

    command: str
    sudo: bool = False


def batch_script(reads: Iterable[Read], login_user: str, nonce: str) -> str:
    """The one script that runs every read (see the module docstring for the format). Each
    read starts at a `# @@NONCE I` line (a comment: the transcript shows which is which)."""
    lines = [
        "d=$(mktemp -d) || exit 70",
        "trap 'rm -rf \"$d\"' EXIT",
        "export PYTHONDONTWRITEBYTECODE=1",
    ]
    as_user = login_user and login_user != "root"
    user = shell.cmd(login_user)
    if as_user:
        lines += [
            f"p=$(getent passwd -- {user}) || exit 70",
            'g=$(printf %s "$p" | cut -d: -f4) h=$(printf %s "$p" | cut -d: -f6)',
        ]
    as_login = (
        f'setpriv --reuid={user} --regid="$g" --init-groups -- '
        f'env HOME="$h" USER={user} LOGNAME={user} sh -c '
    )
    count = 0
    for i, read in enumerate(reads):
        command = read.command
        if not read.sudo and as_user:
            command = as_login + shell.cmd(command)
        lines += [
            f"# @@{nonce} {i}",
            f'{{ ( {command}\n) </dev/null >"$d/{i}" 2>"$d/{i}e"; echo $? >"$d/{i}r"; }} &',
        ]
        count = i + 1
    lines += [
        "wait",
        "i=0",
        f"while [ $i -lt {count} ]; do",
        f"  printf '@@{nonce} %d\\n' $i; cat \"$d/$i\"",
        f'  printf \'\\n@@{nonce}-rc %s\\n\' "$(cat "$d/${{i}}r")"',
        "  cat \"$d/${i}e\"; printf '\\n'",
        "  i=$((i + 1))",
        "done",
        f"printf '@@{nonce} end\\n'",
    ]
    return "\n".join(lines) + "\n"


class BatchIncomplete(Exception):
    """The batch stopped before its end marker (the host or sudo cut it off)."""


def parse_batch(stdout: str, count: int, nonce: str) -> list[Result]:
    """The results of batch_script's `count` reads, in order, from its output."""
    marker = re.compile(rf"^@@{nonce} (\d+|end)$|^@@{nonce}-rc (\d+)$", re.M)
    results: list[Result] = []
    index, code, start, rc_line_start = None, 0, 0, 0
    out = ""
    ended = False
    for m in marker.finditer(stdout):
        if m.group(2) is not None:  # the exit-status line: stdout ends just before it
            out = stdout[start : m.start()]
            out = out[:-1] if out.endswith("\n") else out  # the newline printf added
            code, rc_line_start = int(m.group(2)), m.end() + 1
            continue
        if index is not None:  # a new section starts: the previous one's stderr ends here
            err = stdout[rc_line_start : m.start()]
            results.append(Result(code, out, err[:-1] if err.endswith("\n") else err))
        if m.group(1) == "end":
            ended = True
            break
        index, start = int(m.group(1)), m.end() + 1
    if not ended or len(results) != count:
        raise BatchIncomplete(f"{len(results)} of {count} reads answered")
    return results


def new_nonce() -> str:
    """A marker no output can predict."""
    return secrets.token_hex(8)


def gather(run, reads: list[Read], login_user: str) -> dict[Read, Result]:
    """Run every read in one command (`run(script)` → Result, as root) and answer each."""
    reads = list(dict.fromkeys(reads))
    if not reads:
        return {}
    nonce = new_nonce()
    result = run(batch_script(reads, login_user, nonce))
    try:
        return dict(zip(reads, parse_batch(result.stdout, len(reads), nonce), strict=True))
    except BatchIncomplete as exc:
        from provision.errors import ProvisionError

        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ProvisionError(
            f"the host's reads stopped before their end ({exc}; exit {result.exit_code}): "
            + " / ".join(tail),
            "the transcript has the whole batch and its output; rerun, and report it if it "
            "happens again",
        ) from None
