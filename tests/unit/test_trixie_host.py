"""Debian 13 (trixie) facts that the core steps meet, from recordings of the real system:
apt 3.0's Signed-By conflict (tests/data/facts/debian-13-apt-signed-by.txt, recorded on the
trixie test container), trixie's kernel package names (debian-13-kernel-packages.txt, read from
deb.debian.org), systemd 257's `systemctl is-enabled` exit codes (systemctl(1) of systemd 257,
systemd-257-systemctl-is-enabled.txt) and the supported releases."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision import aptsigned, cudarepo, verify
from provision.changes import Result
from provision.errors import ProvisionError
from provision.facts import parse_facts
from provision.facts.support import check_supported
from provision.kernel import headers_packages
from provision.step import Context
from provision.steps import autostart, base, cuda, driver, expose, pytorch, tensorboard

DATA = Path(__file__).parent.parent / "data" / "facts"
RECORD = (DATA / "debian-13-apt-signed-by.txt").read_text()

# The template's example for tests/unit/test_templates.py (this module sorts after
# test_cuda.py, whose example predates the per-entry Signed-By).
TEMPLATE_EXAMPLES = {
    "cuda/components.sources.j2": {
        "entries": [
            {
                "uri": "http://deb.debian.org/debian/",
                "suites": ["trixie", "trixie-updates"],
                "signed_by": "/usr/share/keyrings/debian-archive-keyring.pgp",
            }
        ],
        "components": ["contrib"],
    },
}


def section(name: str) -> str:
    """One `@@name` section of the recording (its own `@@@` markers back to `@@`)."""
    text = RECORD.split(f"\n@@{name}\n", 1)[1]
    text = re.split(r"\n@@(?!@)", text, maxsplit=1)[0]
    return re.sub(r"^@@@", "@@", text, flags=re.M) + "\n"


def trixie_facts(**fields):
    f = parse_facts((DATA / "debian-13-nspawn.txt").read_text())
    return dataclasses.replace(f, **fields)


def settings():
    return {
        "base": base.Settings(),
        "driver": driver.Settings(),
        "cuda": cuda.Settings(version="12.8"),
        "pytorch": pytorch.Settings(),
    }


def uploads(changes):
    return {a.dest: a.content.decode() for c in changes for a in c.actions if hasattr(a, "dest")}


# --- apt's Signed-By: the host's own, never assumed ------------------------------------------


def test_the_recorded_trixie_host_names_the_pgp_keyring():
    # What the rest of this section relies on, straight from the recording.
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp" in section("state-probe")
    facts = trixie_facts()
    assert (facts.os_id, facts.os_version, facts.codename) == ("debian", "13", "trixie")


def components_file(state_probe: str, facts=None) -> str:
    r = FakeRemote().on(r"apt-get indextargets", state_probe).on(r"stat -c", (1, ""))
    ctx = Context("box", facts or trixie_facts(), settings(), prober=r.probe)
    changes = cudarepo.components_changes(ctx, ("contrib", "non-free"))
    return uploads(changes)[cudarepo.COMPONENTS_SOURCES]


def stanzas(text: str) -> list[dict[str, str]]:
    found = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != "#"
        )
        if fields:
            found.append(fields)
    return found


def test_components_file_names_the_signed_by_of_the_hosts_own_entries():
    written = stanzas(components_file(section("state-probe")))
    assert written == [
        {
            "Types": "deb",
            "URIs": "http://deb.debian.org/debian/",
            "Suites": "trixie trixie-updates",
            "Components": "contrib non-free",
            "Signed-By": "/usr/share/keyrings/debian-archive-keyring.pgp",
        },
        {
            "Types": "deb",
            "URIs": "http://deb.debian.org/debian-security/",
            "Suites": "trixie-security",
            "Components": "contrib non-free",
            "Signed-By": "/usr/share/keyrings/debian-archive-keyring.pgp",
        },
    ]


def test_each_entry_gets_its_own_suites_value_when_they_differ():
    probe = section("state-probe").replace(
        "URIs: http://deb.debian.org/debian-security\nSuites: trixie-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp",
        "URIs: http://deb.debian.org/debian-security\nSuites: trixie-security\nComponents: main\n"
        "Signed-By: /etc/apt/keyrings/security.pgp",
    )
    written = {s["URIs"]: s["Signed-By"] for s in stanzas(components_file(probe))}
    assert written == {
        "http://deb.debian.org/debian/": "/usr/share/keyrings/debian-archive-keyring.pgp",
        "http://deb.debian.org/debian-security/": "/etc/apt/keyrings/security.pgp",
    }


def test_a_one_line_entry_without_signed_by_gets_the_keyring_that_exists():
    # Debian 12's installer writes sources.list lines without options; apt accepts a
    # Signed-By on one entry of a source and none on the other (checked on the trixie host).
    probe = (
        "@@targets\nhttp://deb.debian.org/debian/\tbookworm\tmain\t/etc/apt/sources.list:1\n"
        "@@fetched\n@@keyring\n@@apt-key\n"
        "@@file /etc/apt/sources.list\ndeb http://deb.debian.org/debian bookworm main\n"
        "@@keyrings\ndebian-archive-keyring.gpg\n@@end\n"
    )
    bookworm = dataclasses.replace(trixie_facts(), os_version="12", codename="bookworm")
    (written,) = stanzas(components_file(probe, bookworm))
    assert written["Signed-By"] == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert written["Suites"] == "bookworm"


def test_a_one_line_entrys_signed_by_option_is_read():
    # sources.list(5): `deb [ option1=value1 option2=value2 ] uri suite [component1] ...`
    text = (
        "# comment\n"
        "deb [ arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.pgp ] "
        "http://deb.debian.org/debian trixie main\n"
    )
    assert aptsigned.entry_signed_by("/etc/apt/sources.list", text, 2) == (
        "/usr/share/keyrings/debian-archive-keyring.pgp"
    )
    assert aptsigned.entry_signed_by("/etc/apt/sources.list", text, 1) == ""


def test_stanzas_are_counted_as_apt_counts_them():
    # SOURCESENTRY of the recording: debian.sources:1 and :2 for its two stanzas.
    files = aptsigned.parse_sources(section("state-probe")).files
    text = "# a header comment\n\n" + files["/etc/apt/sources.list.d/debian.sources"]
    path = "/etc/apt/sources.list.d/debian.sources"
    assert aptsigned.entry_signed_by(path, text, 2).endswith("debian-archive-keyring.pgp")
    assert aptsigned.entry_signed_by(path, text, 3) == ""


def test_an_embedded_key_is_copied_whole():
    stanza = (
        "Types: deb\nURIs: http://x/\nSuites: s\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
    )
    value = aptsigned.entry_signed_by("/etc/apt/sources.list.d/x.sources", stanza, 1)
    assert aptsigned.deb822_value(value) == (
        "\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----"
    )


# --- apt refusing its sources: base sees it, verify fails ------------------------------------


def broken_facts():
    return trixie_facts(apt_sources=section("apt-sources-broken").strip())


def base_check(facts):
    r = FakeRemote().on(r".", (1, ""))
    ctx = Context("box", facts, {"base": base.Settings()}, prober=r.probe)
    return base.apt_health_changes(ctx)


def test_recorded_conflict_is_read_as_our_file_breaking_apt():
    ok, error, own = aptsigned.health(section("apt-sources-broken"))
    assert not ok and own
    assert "Conflicting values set for option Signed-By" in error


def test_base_moves_our_conflicting_components_file_aside():
    (change,) = base_check(broken_facts())
    assert cudarepo.COMPONENTS_SOURCES in change.summary
    assert "Conflicting values set for option Signed-By" in change.summary


def test_another_broken_source_is_an_error_with_apts_words():
    text = section("apt-sources-broken").replace("@own-breaks\n", "")
    with pytest.raises(ProvisionError, match="Conflicting values set for option Signed-By"):
        base_check(trixie_facts(apt_sources=text.strip()))


def test_apt_reading_its_sources_needs_nothing():
    assert base_check(trixie_facts()) == []  # the recording says "ok"
    assert trixie_facts().apt_sources == "ok"


def test_verify_fails_cleanly_while_apt_refuses_its_sources():
    errors = "\n".join(x for x in section("apt-sources-broken").splitlines() if x[:2] == "E:")
    r = FakeRemote().on(r"apt-get indextargets", Result(100, "", errors))
    with pytest.raises(AssertionError, match="apt cannot read its sources: E: Conflicting"):
        base.verify_apt_sources(verify.testinfra_host(r), base.Settings())


# --- systemd 257: `systemctl is-enabled` exits 4 for a missing unit --------------------------

# systemctl(1) of systemd 257, the is-enabled table: printed state -> exit code (0 or > 0).
IS_ENABLED = (DATA / "systemd-257-systemctl-is-enabled.txt").read_text()


def documented_states() -> dict[str, str]:
    """State -> documented exit code ("0", "> 0", "4"), from the man page's roff table: a row
    is `T{ "state" T}:T{ description T}:T{ code T}`, or `T{ "state" T}::` spanning the row
    above (same description and code)."""
    table = IS_ENABLED.split("@@is-enabled", 1)[1].split("@@exit-status", 1)[0]
    rows = re.findall(r'^T\{\n"(.+?)"\nT\}(::|:T\{\n.*?\nT\}:T\{\n(.*?)\nT\})$', table, re.M | re.S)
    found, code = {}, ""
    for name, span, own_code in rows:
        code = code if span == "::" else own_code.strip()
        found[name.replace("\\-", "-")] = code
    return found


def test_the_documented_table_is_read():
    states = documented_states()
    assert states["not-found"] == "4"
    assert states["enabled"] == "0" and states["masked"] == "> 0"


def systemd_remote() -> FakeRemote:
    """What testinfra asks before a service's state: the OS (the trixie container's
    os-release) and that systemd runs."""
    os_release = (DATA / "debian-13-nspawn.txt").read_text().split("@@os-release\n", 1)[1]
    r = FakeRemote().on(r"uname -s", "Linux\n").on(r"uname -m", "x86_64\n")
    r.on(r"cat /etc/os-release", os_release.split("\n@@", 1)[0] + "\n")
    r.on(r"test -d /run/systemd/system/", (0, ""))
    return r.on(r"command -v|which ", (0, "/usr/bin/systemctl\n"))


@pytest.mark.parametrize("state", sorted(documented_states()))
def test_tensorboard_check_fails_cleanly_for_every_documented_state(state):
    code = {"0": 0, "> 0": 1, "4": 4}[documented_states()[state]]
    r = systemd_remote().on(r"systemctl is-enabled", (code, f"{state}\n"))
    r.on(r"systemctl is-active", (0, "active\n"))
    host = verify.testinfra_host(r)
    if code == 0:
        tensorboard.verify_running(host, tensorboard.Settings(enabled=True))
        return
    with pytest.raises(AssertionError) as info:
        tensorboard.verify_running(host, tensorboard.Settings(enabled=True))
    message = str(info.value)
    assert message.startswith(tensorboard.UNIT) and f"is-enabled: {state})" in message
    assert "Unexpected exit code" not in message  # testinfra's run_test, not a verdict


def test_a_missing_unit_is_a_failed_check_in_every_step_that_asks():
    r = systemd_remote().on(r"systemctl is-enabled", (4, "not-found\n"))
    r.on(r"systemctl is-active", (4, "inactive\n")).on(
        r"systemctl get-default", "multi-user.target"
    )
    host = verify.testinfra_host(r)
    for check, s in (
        (autostart.verify_boot_target, autostart.Settings(services=("nosuch.service",))),
        (expose.verify_tunnel_up, expose.Settings(method="reverse-tunnel", relay="r.example")),
    ):
        with pytest.raises(AssertionError) as info:
            check(host, s)
        assert "(systemctl is-enabled: not-found)" in str(info.value), check
        assert "Unexpected exit code" not in str(info.value)


# --- releases and kernels --------------------------------------------------------------------


def test_debian_13_is_supported_and_the_refusal_names_every_release():
    check_supported("box", trixie_facts())  # no error
    other = trixie_facts(os_version="14", os_name="Debian GNU/Linux 14 (forky)")
    with pytest.raises(ProvisionError) as info:
        check_supported("box", other)
    assert "Debian GNU/Linux 14 (forky) is not supported" in info.value.message
    assert info.value.hint == "provision supports Debian 12 and 13; Ubuntu 22.04, 24.04 and 26.04"


def recorded_meta_packages() -> list[tuple[str, str]]:
    """linux-headers-<flavour> -> the versioned headers package it depends on (the archive's)."""
    show = (DATA / "debian-13-kernel-packages.txt").read_text().split("@@show", 1)[1]
    show = show.split("@@pkgnames", 1)[0]
    found, package = [], ""
    for line in show.splitlines():
        key, _, value = line.partition(": ")
        package = value if key == "Package" else package
        if key == "Depends" and package.startswith("linux-headers-"):
            found.append((package, value.split(" ")[0]))
    return found


def test_trixie_kernels_get_the_meta_package_that_follows_updates():
    metas = recorded_meta_packages()
    assert ("linux-headers-amd64", "linux-headers-6.12.118+deb13-amd64") in metas
    for meta, versioned in metas:
        kernel = versioned.removeprefix("linux-headers-")  # uname -r of that kernel
        assert headers_packages(kernel, "debian", "13") == [versioned, meta]


def test_every_recorded_trixie_kernel_build_has_its_flavours_meta_package():
    names = (DATA / "debian-13-kernel-packages.txt").read_text().split("@@pkgnames", 1)[1]
    metas = {meta for meta, _ in recorded_meta_packages()}
    checked = 0
    for name in names.split():
        m = re.fullmatch(r"linux-headers-(\d[^-]*\+deb13[^-]*)-((?:cloud-)?amd64)", name)
        if m:  # the -common and -rt packages are not kernels this box boots by default
            kernel = f"{m[1]}-{m[2]}"
            assert headers_packages(kernel, "debian", "13") == [name, f"linux-headers-{m[2]}"]
            assert f"linux-headers-{m[2]}" in metas
            checked += 1
    assert checked >= 10  # 6.12.107 ... 6.12.118, with +deb13.1


def test_the_facts_test_the_components_file_the_gpu_steps_write():
    from provision.facts.host import GATHER_SCRIPT

    assert f"o={cudarepo.COMPONENTS_SOURCES}\n" in GATHER_SCRIPT
