"""Which key apt checks a source with (its Signed-By), read from the host, and whether apt can
read its sources at all.

Every source entry of one URI and suite is one Release file to apt, checked with one key: two
entries naming different `Signed-By` values for the same URI and suite make apt refuse every
source ("Conflicting values set for option Signed-By regarding source URI SUITE: A != B",
apt 3.0 on Debian 13, whose debian.sources names debian-archive-keyring.pgp where Debian 12's
names .gpg). So a file that adds components to the host's own URIs and suites must name the
host's value, never an assumed one.

`apt-get indextargets` reports no Signed-By field (neither apt 2.6 nor apt 3.0.4: checked on
the test hosts); its `SOURCESENTRY` names the entry (`FILE:N`: the line of a one-line
`.list` file, the stanza of a deb822 `.sources` file, both counted from 1), so cudarepo's
STATE_PROBE prints the targets and the source files (FILES_PROBE), and `signed_by_for` reads
the entry's own value there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision.facts import split_sections

SOURCE_GLOBS = (
    "/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources"
)
KEYRINGS = "/usr/share/keyrings"

# Read-only, for cudarepo's STATE_PROBE (after its `@@targets` section, whose lines end in
# `$(SOURCESENTRY)`): every source file (none is secret: apt keeps credentials in
# auth.conf.d) and the keyrings that exist.
FILES_PROBE = (
    f'for f in {SOURCE_GLOBS}; do [ -f "$f" ] || continue; '
    'printf \'@@file %s\\n\' "$f"; cat -- "$f"; echo; done; '
    f"echo @@keyrings; ls -1 {KEYRINGS} 2>/dev/null"
)


@dataclass(frozen=True)
class Sources:
    """The host's index targets (uri, suite, file, entry number), source files and keyrings."""

    targets: tuple[tuple[str, str, str, int], ...]
    files: dict[str, str]
    keyrings: frozenset[str]

    def signed_by_for(self, uri: str, suite: str) -> str:
        """The Signed-By an entry of the host gives this URI and suite ('' when none does)."""
        for t_uri, t_suite, path, number in self.targets:
            if t_uri == uri and t_suite == suite and path in self.files:
                value = entry_signed_by(path, self.files[path], number)
                if value:
                    return value
        return ""

    def keyring(self, os_id: str) -> str:
        """The distribution's archive keyring that exists here (.pgp before .gpg: Debian 13
        ships both, Debian 12 and Ubuntu only .gpg); .gpg when the listing says nothing."""
        for suffix in ("pgp", "gpg"):
            name = f"{os_id}-archive-keyring.{suffix}"
            if name in self.keyrings:
                return f"{KEYRINGS}/{name}"
        return f"{KEYRINGS}/{os_id}-archive-keyring.gpg"


def parse_sources(text: str) -> Sources:
    """STATE_PROBE's output: `@@targets` lines `URI<TAB>SUITE<TAB>...<TAB>SOURCESENTRY`, then
    FILES_PROBE's sections."""
    sections = split_sections(text)
    targets = []
    for line in sections.get("targets", "").splitlines():
        fields = line.split("\t")
        if len(fields) >= 3:
            path, _, number = fields[-1].rpartition(":")
            if path and number.isdigit():
                targets.append((fields[0], fields[1], path, int(number)))
    files = {k[5:]: v for k, v in sections.items() if k.startswith("file ")}
    keyrings = frozenset(sections.get("keyrings", "").split())
    return Sources(tuple(targets), files, keyrings)


def deb822_stanzas(text: str) -> list[list[str]]:
    """The stanzas of a deb822 file as apt counts them: blank lines separate, comment lines
    do not count, a stanza of comments only is none."""
    stanzas: list[list[str]] = []
    current: list[str] = []
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current:
                stanzas.append(current)
            current = []
        elif not line.startswith("#"):
            current.append(line)
    return stanzas


def stanza_field(stanza: list[str], name: str) -> str:
    """A field's value; a multi-line value (an embedded key) keeps its continuation lines."""
    value: list[str] | None = None
    for line in stanza:
        if value is not None and line[:1] in (" ", "\t"):
            value.append(line)
            continue
        if value is not None:
            break
        key, sep, rest = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            value = [rest.strip()]
    return "\n".join(value).rstrip() if value else ""


ONE_LINE_RE = re.compile(r"^\s*deb(?:-src)?\s+\[(?P<options>[^\]]*)\]")


def entry_signed_by(path: str, text: str, number: int) -> str:
    """The Signed-By of entry `number` of a source file ('' when it names none)."""
    if path.endswith(".sources"):
        stanzas = deb822_stanzas(text)
        return stanza_field(stanzas[number - 1], "Signed-By") if 0 < number <= len(stanzas) else ""
    lines = text.splitlines()
    if not 0 < number <= len(lines):
        return ""
    m = ONE_LINE_RE.match(lines[number - 1])
    for option in m["options"].split() if m else []:
        key, _, value = option.partition("=")
        if key.lower() == "signed-by":
            return value
    return ""


def deb822_value(value: str) -> str:
    """A value as a deb822 field takes it (continuation lines indented, empty ones '.')."""
    first, *rest = value.splitlines() or [""]
    return "\n".join([first] + [f" {line.strip() or '.'}" for line in rest])


# --- apt's health: can it read its sources? (the facts' `apt-sources` section) ----------


def health(text: str) -> tuple[bool, str, bool]:
    """(apt reads its sources, apt's error, the GPU steps' components file is what breaks
    them), from the facts' `apt-sources` section (provision/facts/host.py)."""
    lines = text.strip().splitlines()
    if lines[:1] != ["broken"]:
        return True, "", False  # "ok", or not gathered: nothing known against apt
    own = "@own-breaks" in lines
    # apt prints each error once per pass over the sources: each line once
    error = "\n".join(dict.fromkeys(x for x in lines[1:] if x != "@own-breaks")).strip()
    return False, error or "apt-get indextargets failed", own
