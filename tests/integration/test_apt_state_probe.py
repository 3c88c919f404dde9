"""cudarepo's STATE_PROBE run by this machine's real apt (Debian 12's apt 2.6) over source files
made for the case: a private mount namespace (`unshare --mount`) lays a temporary folder over
/etc/apt/sources.list.d and an empty file over /etc/apt/sources.list, so nothing of this
machine's apt configuration changes and nothing is fetched (indextargets reads only files).

The refusal is apt's own: two entries of one URI and suite naming different Signed-By values
("Conflicting values set for option Signed-By"), the case an older provision's components file
(.gpg) beside Debian 13's debian.sources (.pgp) makes.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from provision import aptsigned, cudarepo

MIRROR = "http://deb.debian.org/debian/"
PARTS = "/etc/apt/sources.list.d"
HOSTS = f"""Types: deb
URIs: {MIRROR}
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp
"""
OLD_OURS = f"""Types: deb
URIs: {MIRROR}
Suites: trixie
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@pytest.fixture
def probe(tmp_path, require_tier):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("apt-get"):
        require_tier("integration", "needs root, unshare and apt-get (a Debian or Ubuntu machine)")
    parts = tmp_path / "parts"
    parts.mkdir()
    empty = tmp_path / "sources.list"
    empty.write_text("")

    def run(files: dict[str, str]) -> tuple[cudarepo.AptState | None, str, str]:
        for name, text in files.items():
            (parts / name).write_text(text)
        over_list = (
            f"mount --bind {empty} /etc/apt/sources.list; "
            if os.path.exists("/etc/apt/sources.list")
            else ""
        )
        script = f'mount --bind {parts} {PARTS}; {over_list}exec sh -c "$PROBE"'
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "LC_ALL": "C", "PROBE": cudarepo.STATE_PROBE},
        )  # fmt: skip
        return parse(proc.stdout), proc.stdout, proc.stderr

    return run


def parse(stdout: str) -> cudarepo.AptState | None:
    """apt_state's reading of the probe's output (None where it would refuse: apt broken)."""

    class Ctx:
        host = "probe"

        def read(self, command, sudo=False):
            return subprocess.CompletedProcess([], 0, stdout, "")

    try:
        return cudarepo.apt_state(Ctx())
    except Exception:
        return None


def test_healthy_sources_are_read_with_our_file_and_no_marker(probe):
    good = OLD_OURS.replace(".gpg", ".pgp")
    state, out, err = probe({"debian.sources": HOSTS, "provision-components.sources": good})
    assert state is not None, out + err
    assert not state.own_breaks and "@@own-breaks" not in out
    entries = {(t[2], t[3]) for t in state.targets}
    assert ("main", f"{PARTS}/debian.sources") in entries
    assert ("contrib", cudarepo.COMPONENTS_SOURCES) in entries


def test_our_refused_file_is_left_out_and_entries_keep_their_real_paths(probe):
    state, out, err = probe({"debian.sources": HOSTS, "provision-components.sources": OLD_OURS})
    assert state is not None and state.own_breaks, out + err
    assert {(t[0], t[1], t[2], t[3]) for t in state.targets} == {
        (MIRROR, "trixie", "main", f"{PARTS}/debian.sources")
    }
    # The host's own value is found through the real path, so the rewrite names .pgp.
    sources = aptsigned.parse_sources(out)
    assert sources.signed_by_for(MIRROR, "trixie").endswith("debian-archive-keyring.pgp")
    assert "/tmp" not in out.split("@@fetched")[0]


def test_a_refusal_that_is_not_ours_stays_broken(probe):
    other = OLD_OURS.replace("contrib non-free", "main").replace(".gpg", ".asc")
    files = {"debian.sources": HOSTS, "zz-other.sources": other}
    state, out, err = probe({**files, "provision-components.sources": OLD_OURS})
    assert state is None and "@@broken" in out, out
    assert "Conflicting values set for option Signed-By" in err  # apt's own words
