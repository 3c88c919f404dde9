"""sshd's effective configuration, read as sshd itself reads it: one script and pure parsers.

READ (as root) returns `sshd -t`'s verdict, the effective values (`sshd -T`), sshd's debug
trace of which file and line set each managed keyword, in read order (`sshd -T -ddd`), the
files it read (a file readable by root only: just its Match lines and managed keywords) and
the state of provision's own drop-in (CONF). `parse_sshd` splits that text into an SshdState;
`effective` parses plain `sshd -T` output for doctor and status. Unit-tested on recorded
output of a real sshd (tests/data/sshd).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from provision.facts.reads import Read

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
# One read (as root): `sshd -t`, the effective config, sshd's own trace of the files and
# lines it read in order (first pass only: "reprocess" is the Match evaluation), each of those
# files with its mode, and our drop-in's mode and hash (converged: no read of its own). sshd's
# log lines on stderr end in CR LF.
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
READ = Read(SSHD_PROBE, sudo=True)
# sshd keeps the first value it reads for these; lines of LISTS add up instead, in any order.
ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
LISTS = ("allowusers", "allowgroups")
TRACE_INCLUDE = re.compile(r"^debug2: (.+) line (\d+): new include (.+)$")
TRACE_FILE = re.compile(r"^debug2: parse_server_config_depth: config (.+) len \d+$")
TRACE_SET = re.compile(r"^debug3: (.+):(\d+) setting (\S+) ?(.*)$")


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


def effective(text: str) -> dict[str, str]:
    """Plain `sshd -T` output: lower-case keyword -> value; a keyword printed more than once
    (port, listenaddress, allowusers) has its values joined by a space, in sshd's order."""
    values: dict[str, list[str]] = {}
    for key, value in parse_effective(text).items():
        values.setdefault(key.lower(), []).extend(value)
    return {k: " ".join(v) for k, v in values.items()}
