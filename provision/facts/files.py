"""The state of a managed file, in one read: mode, owner, group, sha256, and whether it holds
key material; its content only when a diff is wanted and the file is no secret.

The host decides what may leave it: `grep -q` gives an exit status, never the text, and a
file readable by its owner only, or one that holds key material, is never sent, so a private
key or a password is never fetched, shown or transcribed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import shell
from provision.facts.reads import Read

MAX_DIFF_BYTES = 64 * 1024
# Key material and credentials: WireGuard's PrivateKey/PresharedKey, PEM and OpenSSH private
# key blocks, `password = ...`-style lines. One POSIX ERE that Python's re reads the same way:
# grep -qiE runs it on the host, re.I on the content we would write. A false match only hides
# a diff.
KEY_MATERIAL = (
    r"privatekey|presharedkey|-----begin [a-z0-9 ]*private key-----"
    r"|(password|passwd|secret|token|api_?key)[^=:]{0,3}[=:]"
)
KEY_MATERIAL_RE = re.compile(KEY_MATERIAL, re.I)
KEY_MARK = "provision-key-material"
CONTENT_MARK = "provision-content-follows"


@dataclass(frozen=True)
class FileState:
    """What the host says about one path."""

    exists: bool
    meta: tuple[str, ...] = ()  # mode (stat %a), owner, group
    sha256: str = ""
    key_material: bool = False
    content: str | None = None  # None: not read (not wanted, a secret, or too big)


def state_script(path: str, content: bool) -> str:
    """Mode, owner, group and sha256, then KEY_MARK when the file holds key material (or grep
    could not tell: exit 2); with `content`, then the first MAX_DIFF_BYTES + 1 bytes after
    CONTENT_MARK, unless it is a key, or no one but its owner may read it."""
    p = shell.cmd(path)
    grep = shell.cmd("grep", "-qiE", "-e", KEY_MATERIAL, "--", path)
    script = shell.and_(
        shell.cmd("stat", "-c", "%a %U %G", "--", path),
        shell.cmd("sha256sum", "--", path),
        f"{{ {grep}; [ $? -eq 1 ] || echo {KEY_MARK}; }}",
    )
    if not content:
        return script
    show = (
        f"{{ {grep}; [ $? -eq 1 ] && m=$(stat -c %a -- {p}) && [ $((0$m & 044)) -ne 0 ] && "
        f"echo {CONTENT_MARK} && head -c {MAX_DIFF_BYTES + 1} -- {p}; true; }}"
    )
    return f"{script} && {show}"


def read(path: str, content: bool) -> Read:
    """The declared read of one file's state (as root)."""
    return Read(state_script(path, content), sudo=True)


def parse_state(stdout: str, ok: bool) -> FileState:
    """FileState from state_script's output (ok: its exit status was 0)."""
    head, mark, content = stdout.partition(CONTENT_MARK + "\n")
    lines = head.split("\n")
    if not (ok and len(lines) >= 2):
        return FileState(False)
    return FileState(
        True,
        tuple(lines[0].split()),
        (lines[1].split() or [""])[0],
        KEY_MARK in lines[2:],
        content if mark else None,
    )
