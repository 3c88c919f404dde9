"""A key pair generated on the host (the tunnel's SSH key, WireGuard's key): the one read that
says which halves exist and what the public key is, and the guard that keeps a private key.

The private key never leaves the host: the read stats it and, when the public half is missing
or empty, derives the public key from it on the host (`ssh-keygen -y`, `wg pubkey`); only the
public key and the stat lines come back. Generation always runs behind keep_private_key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from provision import shell
from provision.facts.reads import Read

if TYPE_CHECKING:
    from provision.step import Context

PUBLIC_MARK = "provision-public-key-follows"


@dataclass(frozen=True)
class PairState:
    """What the host says about a key pair."""

    found: dict[str, list[str]] = field(default_factory=dict)  # path -> [mode, owner, size]
    public: str = ""  # the public key: read from its file, or derived ('' when neither can)

    def public_missing(self, public_path: str) -> bool:
        """Whether the public half is missing or empty (it is then derived, then written)."""
        state = self.found.get(public_path)
        return state is None or state[2] == "0"


def pair_read(private: str, public: str, derive: str) -> Read:
    """The read of a key pair (as root): `stat` of both halves, then the public key, from its
    file when that is not empty, else derived from the private key by `derive` on the host."""
    stat = shell.cmd("stat", "-c", "%a %U %s %n", "--", private, public)
    script = (
        f"{stat}; echo {PUBLIC_MARK}; "
        f"if [ -s {shell.cmd(public)} ]; then {shell.cmd('cat', '--', public)}; "
        f"elif [ -e {shell.cmd(private)} ]; then {derive}; fi"
    )
    return Read(script, sudo=True)


def parse_pair(stdout: str) -> PairState:
    """PairState from pair_read's output."""
    head, _, public = stdout.partition(PUBLIC_MARK + "\n")
    found = {}
    for line in head.splitlines():
        fields = line.split(" ", 3)
        if len(fields) == 4:
            found[fields[3]] = fields[:3]
    return PairState(found, public.strip())


def state(ctx: Context, read: Read) -> PairState:
    """The answer to a declared pair_read."""
    return parse_pair(ctx.read(read.command, sudo=read.sudo).stdout)


def keep_private_key(path: str) -> str:
    """A guard for key generation: refuses (exit 1, with why) when the private key exists, so
    that no run, however stale its plan, ever replaces it."""
    why = shell.cmd("echo", f"{path} exists: provision never replaces a private key")
    return f"{{ {shell.cmd('test', '!', '-e', path)} || {{ {why} >&2; false; }}; }}"
