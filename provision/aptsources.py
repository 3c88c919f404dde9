"""A failed `apt-get update`: which source file and line broke it, and the fix.

apt names the failing URL, never the file it came from. `LOCATE` runs on the host right after
a failed update (it reads `$out`, the update's output): it prints the source lines that name
a failing URL's host (`apt source: FILE:LINE: line`, credentials in URLs removed) and the
host's clock (`host clock: EPOCH`). `hint` turns that output into the hint: the file and line,
why (unreachable, key missing, the host's clock in the past) and the whole fix.
"""

from __future__ import annotations

import re
import time

SOURCE_FILES = (
    "/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources"
)
# POSIX sh; only apt's failure lines (Err:, W:, E:) are searched for URLs; a URL's host:port is
# matched as a fixed string (grep -F), so nothing from apt's output is ever run.
LOCATE = (
    "printf '%s\\n' \"$out\" | grep -E '^(Err:|W:|E:)' | grep -oE '[a-z0-9+]+://[^ /]+' | "
    "sed 's#^[a-z0-9+]*://##' | "
    "sed 's#^[^@]*@##' | sort -u | while read -r h; do "
    f'grep -HnF -- "$h" {SOURCE_FILES} 2>/dev/null | '
    "grep -vE '^[^:]+:[0-9]+:[[:space:]]*#' | sed -e 's#//[^/@ ]*@#//#g' -e 's/^/apt source: /'; "
    "done; printf 'host clock: %s\\n' \"$(date +%s)\""
)

LOCATED_RE = re.compile(r"^apt source: (?P<file>[^:]+):(?P<line>\d+):(?P<text>.*)$", re.M)
CLOCK_RE = re.compile(r"^host clock: (\d+)$", re.M)
NOT_VALID_RE = re.compile(
    r"Release file for (\S+) is not valid yet \(invalid for another ([^)]*)\)"
)
NO_PUBKEY_RE = re.compile(r"NO_PUBKEY ([0-9A-Fa-f]+)")
UNREACHABLE_RE = re.compile(
    r"Could not connect|Could not resolve|Connection failed|Temporary failure resolving|"
    r"Failed to fetch|does not have a Release file|404\s+Not Found|Connection refused|"
    r"timed out"
)


def located(text: str) -> list[tuple[str, int, str]]:
    """(file, line, source line) printed by LOCATE."""
    return [
        (m.group("file"), int(m.group("line")), m.group("text").strip())
        for m in LOCATED_RE.finditer(text)
    ]


def skew_text(text: str, local_now: float | None) -> str:
    """The host's clock against this machine's, from LOCATE's `host clock:` line."""
    m = CLOCK_RE.search(text)
    if not m:
        return ""
    from provision.durations import human_duration  # the same wording as facts' warning

    skew = int(m.group(1)) - int(time.time() if local_now is None else local_now)
    if abs(skew) < 60:
        return "the host's clock agrees with this machine's"
    way = "behind" if skew < 0 else "ahead of"
    return f"the host's clock is {human_duration(skew)} {way} this machine's"


def hint(text: str, local_now: float | None = None) -> str:
    """The hint for a failed apt-get update's output ('' when it is not about a source)."""
    where = located(text)
    files = sorted({f for f, _n, _t in where})
    at = "; ".join(f"{f}:{n} ({t})" for f, n, t in where)
    not_valid = NOT_VALID_RE.search(text)
    if not_valid:
        skew = skew_text(text, local_now)
        return (
            f"apt refuses {not_valid.group(1)}: its Release file is not valid yet (for another "
            f"{not_valid.group(2)}), so the host's clock is in the past"
            + (f" ({skew})" if skew else "")
            + ": run `sudo timedatectl set-ntp true` on the host (needs a reachable NTP "
            "server), or set the date (`sudo date -s @EPOCH` with the right time), then run "
            "again"
        )
    pubkey = NO_PUBKEY_RE.search(text)
    if pubkey:
        name = files[0] if files else "the source's file in /etc/apt/sources.list.d/"
        return (
            f"the signing key {pubkey.group(1)} of a source is missing"
            + (f": {at}" if at else "")
            + ". Fix: get the repository's key (check its fingerprint with the vendor), put it "
            "in /etc/apt/keyrings/NAME.gpg and name it in the source: "
            "`deb [signed-by=/etc/apt/keyrings/NAME.gpg] URL ...` (a .sources file: "
            f"`Signed-By: /etc/apt/keyrings/NAME.gpg`); or disable the source: "
            f"`sudo mv {name} {name}.disabled` (apt reads only *.list and *.sources)"
        )
    if where and UNREACHABLE_RE.search(text):
        name = files[0]
        return (
            f"an apt source cannot be fetched: {at}. Fix its URL (or the network/proxy to it), "
            f"or disable it: `sudo mv {name} {name}.disabled` (apt reads only *.list and "
            "*.sources; in /etc/apt/sources.list comment the line out), then run again"
        )
    return ""
