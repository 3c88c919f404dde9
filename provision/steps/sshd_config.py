"""sshd's configuration, decided on: for the ssh step's check.

The read and its parser are provision.facts.sshd (one read, as root: `sshd -t`, `sshd -T`,
sshd's trace of which file and line set each managed keyword, the files it read). Pure
functions here find the lines of other files that beat 00-provision.conf, the uploads that
comment them out, and a config that is invalid already. Unit-tested on recorded output of a
real sshd (tests/data/sshd).
"""

from __future__ import annotations

import fnmatch
import re

from provision.changes import Upload
from provision.errors import StepError
from provision.facts.sshd import (  # noqa: F401 (re-exported: the ssh step and its tests)
    CONF,
    KEYWORDS,
    READ,
    SSHD_PROBE,
    Line,
    SshdState,
    normal,
    parse_effective,
    parse_sshd,
    parse_trace,
    split_line,
)
from provision.step import Context
from provision.templates import unified_diff

TEST_WHERE = re.compile(r"^(/\S+?):? line (\d+):")


def read_sshd(ctx: Context) -> SshdState:
    """The declared read of sshd (facts.sshd.READ), parsed."""
    return parse_sshd(ctx.read(READ.command, sudo=READ.sudo).stdout)


def refuse_invalid(host: str, state: SshdState) -> None:
    """A config that fails `sshd -t` before any change: refused with the file and line."""
    if state.valid:
        return
    if state.test_rc == 127:
        raise StepError(
            f"{host}: there is no OpenSSH sshd on the host (`sshd -t`: command not found)",
            "the ssh step manages OpenSSH's sshd: install openssh-server (or skip this step)",
        )
    out = state.test_output or f"sshd -t exited {state.test_rc}"
    first = out.splitlines()[0]
    m = next((TEST_WHERE.match(line) for line in out.splitlines() if TEST_WHERE.match(line)), None)
    where = f"line {m.group(2)} of {m.group(1)}" if m else "the file it names"
    raise StepError(
        f"{host}: sshd's configuration on the host is invalid already (`sshd -t`: {first}); "
        "the ssh step changes nothing in sshd while it is",
        f"fix or remove {where} (on the host, `sudo sshd -t` must print nothing), then rerun. "
        "sshd keeps running its old configuration for now, but would not start again after a "
        "restart or reboot",
    )


def our_position(trace: list[tuple]) -> int | None:
    """Where in the read order sshd reads (or would read) our drop-in; None: never."""
    for i, event in enumerate(trace):
        if event == ("file", CONF):
            return i
    for i, event in enumerate(trace):
        if event[0] != "include":
            continue
        pattern = event[1] if event[1].startswith("/") else f"/etc/ssh/{event[1]}"
        if not fnmatch.fnmatchcase(CONF, pattern):
            continue
        # Not there yet: it would come before the first file of that Include sorting after
        # it, or where the including file goes on.
        for j in range(i + 1, len(trace)):
            e = trace[j]
            if e[0] == "file" and fnmatch.fnmatchcase(e[1], pattern) and e[1] > CONF:
                return j
            if (e[0] == "set" and e[1].file == event[2]) or (
                e[0] == "include" and e[2] == event[2]
            ):
                return j
        return len(trace)
    return None


def match_lines(state: SshdState) -> list[Line]:
    """Lines inside `Match` blocks of every file sshd reads (sshd's trace leaves them out):
    a block runs to the next Match or the end of its file."""
    found = []
    for path, (_mode, lines, _private) in state.files.items():
        inside = False
        for number, raw in enumerate(lines, 1):
            keyword, value = split_line(raw)
            if keyword == "match":
                inside = True
            elif keyword and inside:
                found.append(Line(path, number, keyword, value, in_match=True))
    return found


def overrides(state: SshdState, want: dict[str, str], lists: dict[str, set[str]]) -> list[Line]:
    """Lines of other files that beat 00-provision.conf for a managed keyword: read before it
    (sshd keeps the first value), inside a Match block (applies over the global value), or
    adding names to AllowUsers/AllowGroups when those are set. `want`: single-valued
    keywords as sshd -T prints them; `lists`: AllowUsers/AllowGroups (empty: not managed)."""
    position = our_position(state.trace)
    matched = match_lines(state)
    in_match = {(m.file, m.number) for m in matched}
    found = []
    candidates = [
        (i, e[1]) for i, e in enumerate(state.trace) if e[0] == "set" and e[1].file != CONF
    ] + [(None, m) for m in matched if m.file != CONF]
    for index, line in candidates:
        if line.in_match is False and (line.file, line.number) in in_match:
            continue  # a Match line that sshd's first pass applied (Match all): counted below
        k = line.keyword
        if k in want and normal(k, line.value) != want[k]:
            if line.in_match or (position is not None and index is not None and index < position):
                found.append(line)
        elif lists.get(k) and set(line.value.split()) - lists[k]:
            found.append(line)
    return sorted(set(found), key=lambda x: (x.file, x.number))


def disable_lines(lines: list[str], numbers: set[int]) -> bytes:
    """The file with those lines commented out (kept, so a person can see what was there)."""
    out = [
        f"# provision: disabled, it overrides {CONF}: {raw.strip()}" if n in numbers else raw
        for n, raw in enumerate(lines, 1)
    ]
    return ("\n".join(out) + "\n").encode()


def override_uploads(host: str, state: SshdState, found: list[Line]) -> tuple[list[Upload], str]:
    """Uploads that comment out the overriding lines, file by file, and their diffs."""
    uploads, diffs = [], []
    for path in dict.fromkeys(line.file for line in found):
        mode, lines, private = state.files.get(path, ("", [], False))
        if private:
            where = ", ".join(f"{x.where} ({x.keyword} {x.value})" for x in found if x.file == path)
            raise StepError(
                f"{host}: {where} overrides {CONF}, and {path} is readable by root only "
                "(provision neither reads nor rewrites private files)",
                f"comment out that line in {path} (or remove the file), check with "
                "`sudo sshd -t`, then rerun",
            )
        if not lines:
            continue
        meta = mode.split()
        numbers = {line.number for line in found if line.file == path}
        content = disable_lines(lines, numbers)
        perm, owner, group = (meta + ["644", "root", "root"][len(meta) :])[:3]
        uploads.append(
            Upload(path, content, f"0{perm}", owner, group, validate="sshd -t -f {path}")
        )
        diffs.append(unified_diff("\n".join(lines) + "\n", content.decode(), path))
    return uploads, "".join(diffs)


def unexplained(
    state: SshdState, want: dict[str, str], lists: dict[str, set[str]], port: int
) -> list[str]:
    """Managed keywords whose effective value differs from the wanted ones (`sshd -T`)."""
    wrong = [
        f"{k} is {state.effective.get(k, ['(unset)'])[0]}, not {v}"
        for k, v in want.items()
        if normal(k, " ".join(state.effective.get(k, [""])[:1])) != v
    ]
    for k, names in lists.items():
        now = {n for value in state.effective.get(k, []) for n in value.split()}
        if names and now != names:
            wrong.append(
                f"{k} is {' '.join(sorted(now)) or '(unset)'}, not {' '.join(sorted(names))}"
            )
    if str(port) not in state.effective.get("port", []):
        wrong.append(f"port {port} is not among {' '.join(state.effective.get('port', []))}")
    return wrong
