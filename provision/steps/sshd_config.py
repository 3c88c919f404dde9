"""sshd's configuration as sshd itself reads it: for the ssh step's check.

One probe (SSHD_PROBE, as root) returns `sshd -t`'s verdict, the effective values (`sshd -T`),
sshd's debug trace of which file and line set each managed keyword, in read order
(`sshd -T -ddd`), and the files it read (a file readable by root only: just its Match lines
and managed keywords). Pure functions on that text find the lines of other files that beat
00-provision.conf and the uploads that comment them out. Unit-tested on recorded output of a
real sshd (tests/data/sshd).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from provision.changes import Upload
from provision.errors import StepError
from provision.step import Context
from provision.templates import unified_diff

CONF = "/etc/ssh/sshd_config.d/00-provision.conf"

# What the probe may show of a private file: Match lines and the managed keywords.
KEYWORDS = (
    "match",
    "permitrootlogin",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
    "pubkeyauthentication",
    "x11forwarding",
    "maxauthtries",
    "allowusers",
    "allowgroups",
)
# One probe (as root): `sshd -t`, the effective config, sshd's own trace of the files and
# lines it read in order (first pass only: "reprocess" is the Match evaluation), each of those
# files with its mode, and our drop-in's mode and hash (converged: no probe of its own). sshd's log
# lines on stderr end in CR LF.
SSHD_PROBE = (
    'echo @@test; o=$(sshd -t 2>&1); echo "@@rc $?"; printf "%s\\n" "$o" | tr -d "\\r"; '
    "echo @@effective; sshd -T 2>/dev/null; echo @@trace; "
    "t=$(sshd -T -ddd 2>&1 >/dev/null | tr -d '\\r' | sed '/: config reprocess /,$d'); "
    # The settings in the trace: only the managed keywords (a private file's others stay there).
    "printf '%s\\n' \"$t\" | grep -iE"
    f" '^debug2: |^debug3: .*:[0-9]+ setting ({'|'.join(KEYWORDS)}) '; "
    "printf '%s\\n' \"$t\" | sed -n"
    " 's/^debug2: parse_server_config_depth: config \\(.*\\) len [0-9]*$/\\1/p'"
    ' | while IFS= read -r f; do echo "@@file $f"; stat -c "@@stat %a %U %G" -- "$f";'
    # A file only its owner may read is never printed whole: only its Match lines and those
    # of the keywords provision manages, numbered.
    ' if [ -n "$(find "$f" -maxdepth 0 -perm /044)" ]; then cat -- "$f"; else echo @@private;'
    f" grep -niE '^[[:space:]]*({'|'.join(KEYWORDS)})([[:space:]=]|$)' -- \"$f\"; fi; echo; done; "
    f"echo @@conf; {{ stat -c '%a %U %G' -- {CONF} && sha256sum -- {CONF}; }} 2>/dev/null"
    " && echo @@ok"
)
# sshd keeps the first value it reads for these; lines of LISTS add up instead, in any order.
ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
LISTS = ("allowusers", "allowgroups")
TRACE_INCLUDE = re.compile(r"^debug2: (.+) line (\d+): new include (.+)$")
TRACE_FILE = re.compile(r"^debug2: parse_server_config_depth: config (.+) len \d+$")
TRACE_SET = re.compile(r"^debug3: (.+):(\d+) setting (\S+) ?(.*)$")
TEST_WHERE = re.compile(r"^(/\S+?):? line (\d+):")


def normal(keyword: str, value: str) -> str:
    """A value as `sshd -T` prints it (first word, lower case, the old root-login name)."""
    words = value.split()
    value = words[0].strip('"').lower() if words else ""
    if keyword == "permitrootlogin" and value == "prohibit-password":
        return "without-password"
    return value


def split_line(raw: str) -> tuple[str, str]:
    """(keyword in lower case with aliases resolved, value) of a config line; ('', '') for
    blanks and comments. sshd splits at white space or one `=`."""
    text = raw.strip()
    if not text or text.startswith("#"):
        return "", ""
    m = re.match(r"([^\s=]+)\s*(?:=\s*)?(.*)$", text)
    if not m:
        return "", ""
    keyword = m.group(1).lower()
    return ALIASES.get(keyword, keyword), m.group(2).strip()


@dataclass(frozen=True)
class Line:
    """One config line that sets a keyword: where, what, and whether inside a Match block."""

    file: str
    number: int
    keyword: str
    value: str
    in_match: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.number}"


@dataclass
class SshdState:
    """What SSHD_PROBE read: sshd -t's verdict, the effective config, the read order."""

    test_rc: int = 0
    test_output: str = ""
    effective: dict[str, list[str]] = field(default_factory=dict)
    trace: list[tuple] = field(default_factory=list)  # ("include", pattern, src) | ("file", f)
    # | ("set", Line)
    # path: ("mode owner group", lines, private); a private file's lines are only the numbered
    # ones the probe showed, the others ''.
    files: dict[str, tuple[str, list[str], bool]] = field(default_factory=dict)
    conf_state: tuple[bool, list[str], str] = (False, [], "")

    @property
    def valid(self) -> bool:
        return self.test_rc == 0


def parse_effective(text: str) -> dict[str, list[str]]:
    """`sshd -T` output: keyword -> every value printed for it, in order."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            values.setdefault(key, []).append(value)
    return values


def parse_trace(text: str) -> list[tuple]:
    """sshd -T -ddd's debug lines: the includes, the files and the settings, in read order."""
    events: list[tuple] = []
    for line in text.splitlines():
        if m := TRACE_INCLUDE.match(line):
            events.append(("include", m.group(3), m.group(1)))
        elif m := TRACE_FILE.match(line):
            events.append(("file", m.group(1)))
        elif m := TRACE_SET.match(line):
            keyword = m.group(3).lower()
            keyword = ALIASES.get(keyword, keyword)
            events.append(("set", Line(m.group(1), int(m.group(2)), keyword, m.group(4))))
    return events


def parse_sshd(text: str) -> SshdState:
    """SSHD_PROBE's output, split at its @@ markers."""
    state = SshdState()
    section, current, lines = "", "", []
    sections: dict[str, list[str]] = {"test": [], "effective": [], "trace": [], "conf": []}

    def close_file() -> None:
        if not current:
            return
        mode, body = lines[0] if lines[:1] and lines[0].startswith("@@stat ") else "", lines
        body = body[1:] if mode else body
        if body and body[-1] == "":
            body = body[:-1]  # the probe's `echo` after the file
        private = body[:1] == ["@@private"]
        if private:
            numbered = {}
            for line in body[1:]:
                number, _, text = line.partition(":")
                if number.isdigit():
                    numbered[int(number)] = text
            body = [numbered.get(n, "") for n in range(1, max(numbered, default=0) + 1)]
        state.files[current] = (mode.removeprefix("@@stat "), body, private)

    for line in text.split("\n"):
        if line.startswith("@@rc "):
            state.test_rc = int(line[5:] or 1)
            continue
        if line.startswith("@@file "):
            close_file()
            section, current, lines = "file", line[7:], []
            continue
        if line in ("@@test", "@@effective", "@@trace", "@@conf"):
            close_file()
            section, current, lines = line[2:], "", []
            continue
        if section == "file":
            lines.append(line)
        elif section:
            sections[section].append(line)
    close_file()
    state.test_output = "\n".join(sections["test"]).strip()
    state.effective = parse_effective("\n".join(sections["effective"]))
    state.trace = parse_trace("\n".join(sections["trace"]))
    conf = [line for line in sections["conf"] if line]
    if conf and conf[-1] == "@@ok" and len(conf) >= 3:
        state.conf_state = (True, conf[0].split(), (conf[1].split() or [""])[0])
    return state


def read_sshd(ctx: Context) -> SshdState:
    """Run SSHD_PROBE on the host and parse it."""
    return parse_sshd(ctx.probe(SSHD_PROBE, sudo=True).stdout)


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
