"""base.check as a table: facts and the answers to its declared reads in, changes and commands
out. Every check runs on a strict Context: a read base does not declare fails the test."""

import dataclasses
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision import kernel as kernel_mod
from provision.facts import parse_facts
from provision.steps import base
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
FILES = {
    "/etc/apt/apt.conf.d/51provision-unattended-upgrades": (
        "base/51provision-unattended-upgrades.j2",
        {"blocklist": base.NVIDIA_PATTERNS},
    ),
    "/etc/apt/apt.conf.d/52provision-periodic": ("base/52provision-periodic.j2", {"enabled": True}),
    "/etc/systemd/timesyncd.conf.d/provision.conf": ("base/timesyncd.conf.j2", {"ntp_servers": ()}),
}


def facts(name="debian-12-docker.txt", **changes):
    f = parse_facts((DATA / name).read_text())
    return dataclasses.replace(f, **changes)


def all_installed(f, *extra):
    pkgs = dict(f.packages)
    for name in (*base.ESSENTIALS, "unattended-upgrades", "systemd-timesyncd", *extra):
        pkgs[name] = type(next(iter(pkgs.values())))("1.0", "ii ")
    return pkgs


def remote_with_files(files=FILES, missing=()):
    """A FakeRemote whose probed files match the templates, except the `missing` ones."""
    r = FakeRemote()
    r.on(r"stat -c", (1, ""))
    r.on(r"grep -lF", "")  # none of the lab cache's files (tests/unit/test_apt_proxy.py)
    for dest, (template, variables) in files.items():
        if dest in missing:
            continue
        digest = sha256(render(template, **variables))
        r.on(rf"stat -c .*{dest}", f"644 root root\n{digest}  {dest}\n")
    r.on(r"head -c", "old content\n")
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    return r


def check(f, remote, **settings):
    s = base.Settings(**settings)
    return base.check(declared.context(base.STEP, f, {"base": s}, remote))


def test_base_converged_host_has_no_changes():
    f = facts(container="none", dpkg_audit="", kernel="6.1.0-56-amd64")
    headers = ("linux-headers-6.1.0-56-amd64", "linux-headers-amd64")
    f = dataclasses.replace(f, packages=all_installed(f, *headers), apt_stamp=f.now)
    assert check(f, remote_with_files()) == []


def test_base_installs_missing_packages_in_one_call_with_update_when_stale():
    f = facts(apt_stamp=None, dpkg_audit="")
    pkgs = {n: p for n, p in f.packages.items() if n not in (*base.ESSENTIALS, "systemd-timesyncd")}
    changes = check(dataclasses.replace(f, packages=pkgs), remote_with_files())
    install = [c for c in changes if c.summary.startswith("install")]
    assert len(install) == 1
    first = install[0]
    assert "build-essential" in first.summary and "unattended-upgrades" in first.summary
    assert "systemd-timesyncd" in first.summary
    commands = [a.command for a in first.actions]
    assert "apt-get -y -q -o DPkg::Lock::Timeout=600" in commands[0]
    assert " update --error-on=any" in commands[0]
    assert "install --no-install-recommends build-essential dkms" in commands[1]
    assert "linux-headers" not in commands[1]  # a container runs the host's kernel


def test_base_skips_update_when_lists_are_fresh():
    f = facts(dpkg_audit="")
    f = dataclasses.replace(f, apt_stamp=f.now - 60, packages={})
    install = next(c for c in check(f, remote_with_files()) if c.summary.startswith("install"))
    assert len(install.actions) == 1


def test_base_wants_headers_for_the_running_kernel_on_real_hardware():
    f = facts("ubuntu-22.04-gpu.txt")
    install = next(c for c in check(f, remote_with_files()) if c.summary.startswith("install"))
    assert "linux-headers-6.8.0-49-generic" in install.summary
    assert "linux-headers-generic-hwe-22.04" in install.summary


@pytest.mark.parametrize(
    ("kernel", "os_id", "version", "expected"),
    [
        ("6.1.0-56-amd64", "debian", "12", ["linux-headers-6.1.0-56-amd64", "linux-headers-amd64"]),
        (
            "6.1.0-56-cloud-amd64",
            "debian",
            "12",
            ["linux-headers-6.1.0-56-cloud-amd64", "linux-headers-cloud-amd64"],
        ),
        (
            "5.15.0-125-generic",
            "ubuntu",
            "22.04",
            ["linux-headers-5.15.0-125-generic", "linux-headers-generic"],
        ),
        (
            "6.8.0-49-generic",
            "ubuntu",
            "24.04",
            ["linux-headers-6.8.0-49-generic", "linux-headers-generic"],
        ),
        ("6.18.44-custom", "debian", "12", ["linux-headers-6.18.44-custom"]),
    ],
)
def test_base_headers_packages(kernel, os_id, version, expected):
    assert kernel_mod.headers_packages(kernel, os_id, version) == expected


def test_base_fresh_ubuntu_waits_for_cloud_init_and_repairs_dpkg_first():
    changes = check(facts("ubuntu-24.04-fresh.txt"), remote_with_files())
    assert changes[0].summary == "wait for cloud-init to finish"
    assert "cloud-init status --wait" in changes[0].actions[0].command
    assert changes[1].summary == "repair an interrupted dpkg run"
    assert "dpkg --configure -a" in changes[1].actions[0].command


def test_base_writes_missing_config_files_with_diff():
    f = facts(dpkg_audit="")
    missing = "/etc/apt/apt.conf.d/51provision-unattended-upgrades"
    changes = check(f, remote_with_files(missing=(missing,)))
    write = next(c for c in changes if missing in c.summary)
    assert write.summary == f"write {missing}"
    assert '+    "nvidia-";' in write.diff
    upload = write.actions[0]
    assert upload.dest == missing and upload.mode == "0644"


def test_base_mirror_moves_distro_sources_and_updates_before_install():
    f = facts(dpkg_audit="")
    f = dataclasses.replace(f, apt_stamp=f.now, packages={})
    r = remote_with_files()
    r.on(
        r"\[ -e /etc/apt/sources.list.d/debian.sources \]",
        "/etc/apt/sources.list.d/debian.sources\n",
    )
    changes = check(f, r, apt_mirror="http://mirror.lab/debian")
    summaries = [c.summary for c in changes]
    assert "write /etc/apt/sources.list.d/provision.sources" in summaries
    assert any(s.startswith("move /etc/apt/sources.list.d/debian.sources") for s in summaries)
    src = next(c for c in changes if "provision.sources" in c.summary).actions[0].content.decode()
    assert "URIs: http://mirror.lab/debian" in src and "Suites: bookworm bookworm-updates" in src
    install = next(c for c in changes if c.summary.startswith("install"))
    assert "update" in install.actions[0].command  # sources changed: lists must be refreshed


def test_base_leaves_another_time_daemon_alone():
    f = facts(dpkg_audit="")
    pkgs = dict(f.packages)
    pkgs["chrony"] = type(next(iter(pkgs.values())))("4.3", "ii ")
    changes = check(dataclasses.replace(f, packages=pkgs), remote_with_files())
    assert not any("timesyncd" in c.summary for c in changes)


def test_base_ca_certificate_is_uploaded_and_bundle_refreshed(tmp_path):
    pem = tmp_path / "lab-proxy.crt"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    changes = check(facts(dpkg_audit=""), remote_with_files(), ca_certificates=(str(pem),))
    trust = next(c for c in changes if c.summary == "trust lab-proxy.crt")
    assert trust.actions[0].dest == "/usr/local/share/ca-certificates/provision-lab-proxy.crt"
    assert any(c.summary == "update the CA bundle" for c in changes)


TIMESYNCD = "/etc/systemd/timesyncd.conf.d/provision.conf"
UNATTENDED = "/etc/apt/apt.conf.d/51provision-unattended-upgrades"
PERIODIC = "/etc/apt/apt.conf.d/52provision-periodic"


def right(dest, mode="644"):
    """The stat/sha256 lines of `dest` holding its template's rendering."""
    template, variables = FILES[dest]
    return f"{mode} root root\n{sha256(render(template, **variables))}  {dest}\n"


def test_base_reads_are_declared_and_gathered_in_one_command():
    """The no-op cost: base's files and its service are read in the one batch, and check
    reads nothing else (issue 17; issue 8 had them in one probe of their own)."""
    f = facts(container="none", dpkg_audit="", kernel="6.1.0-56-amd64")
    headers = ("linux-headers-6.1.0-56-amd64", "linux-headers-amd64")
    f = dataclasses.replace(f, packages=all_installed(f, *headers), apt_stamp=f.now)
    r = remote_with_files()
    assert check(f, r) == []
    assert r.commands == 1  # the batch; each declared read is looked up in its answers
    (batch,) = r.batches
    assert {d for d in FILES if any(f"-- {d} " in x.command for x in batch)} == set(FILES)
    assert any(x.command.startswith("systemctl show") for x in batch)


def test_base_declared_reads_tell_missing_and_wrong_mode_apart():
    f = facts(container="none", dpkg_audit="", kernel="6.1.0-56-amd64")
    f = dataclasses.replace(f, packages=all_installed(f, "linux-headers-6.1.0-56-amd64"))
    r = FakeRemote().on(r"stat -c", (1, "")).on(r"head -c", "x\n").on(r"grep -lF", "")
    r.on(rf"stat -c .*{UNATTENDED}", right(UNATTENDED, mode="600"))
    r.on(rf"stat -c .*{PERIODIC}", right(PERIODIC))
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    summaries = [c.summary for c in check(f, r, kernel_headers=False)]
    assert summaries == [f"write {TIMESYNCD}", f"update {UNATTENDED}"]


def every_setting(tmp_path):
    """Settings that take base down every branch that reads the host."""
    pem = tmp_path / "lab-proxy.crt"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIBlab\nAAAA\n-----END CERTIFICATE-----\n")
    return base.Settings(apt_mirror="http://mirror.lab/debian", ca_certificates=(str(pem),)), pem


@pytest.mark.parametrize("facts_file", declared.FACT_FILES)
def test_base_check_reads_only_what_it_declares_on_an_empty_host(facts_file, tmp_path):
    """Every declared read answers `absent` (exit 1, nothing): check plans every file and
    reads nothing it did not declare."""
    s, _ = every_setting(tmp_path)
    f = declared.recorded(facts_file)
    changes = base.check(declared.answered(base.STEP, f, {"base": s}, declared.absent))
    summaries = [c.summary for c in changes]
    assert "write /etc/apt/sources.list.d/provision.sources" in summaries
    assert f"write {UNATTENDED}" in summaries and f"write {PERIODIC}" in summaries
    assert "trust lab-proxy.crt" in summaries and "update the CA bundle" in summaries
    assert not any(s.startswith("move ") for s in summaries)  # no distro source file there


@pytest.mark.parametrize("facts_file", declared.FACT_FILES)
def test_base_check_reads_only_what_it_declares_on_a_converged_host(facts_file, tmp_path):
    """Converged answers (files right, bundle complete, timesyncd as it should be) take check
    down the other branches: nothing but the facts' own work (cloud-init, dpkg, packages)."""
    _, pem = every_setting(tmp_path)
    s = base.Settings(ca_certificates=(str(pem),))
    f = declared.recorded(facts_file)
    dest = "/usr/local/share/ca-certificates/provision-lab-proxy.crt"
    r = remote_with_files()
    r.on(rf"stat -c .*{dest}", f"644 root root\n{sha256(pem.read_bytes())}  {dest}\n")
    r.on(r"grep -qF -e MIIBlab /etc/ssl/certs/ca-certificates.crt", (0, ""))
    active = "inactive" if f.in_container else "active"  # timesyncd skips a container
    r.on(r"systemctl show", f"UnitFileState=enabled\nActiveState={active}\n")
    changes = base.check(declared.context(base.STEP, f, {"base": s}, r))
    summaries = [c.summary for c in changes]
    facts_work = ("wait for cloud-init", "repair an interrupted dpkg", "install ")
    assert [x for x in summaries if not x.startswith(facts_work)] == []


# --- a failed apt-get update: the source's file:line and the fix (issue 13 §8) ---------------

# apt 2.6's own words (Debian 12), as `apt-get update --error-on=any` prints them.
APT_UNREACHABLE = """Hit:1 http://deb.debian.org/debian bookworm InRelease
Ign:2 http://127.0.0.1:9/vendor stable InRelease
Err:2 http://127.0.0.1:9/vendor stable InRelease
  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)
Reading package lists...
W: Failed to fetch http://127.0.0.1:9/vendor/dists/stable/InRelease  Could not connect to \
127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)
E: Some index files failed to download. They have been ignored, or old ones used instead.
"""
APT_NO_PUBKEY = """Get:2 http://127.0.0.1:8080 stable InRelease [2,042 B]
Err:2 http://127.0.0.1:8080 stable InRelease
  The following signatures couldn't be verified because the public key is not available: \
NO_PUBKEY 3B4FE6ACC0B21F32
W: GPG error: http://127.0.0.1:8080 stable InRelease: The following signatures couldn't be \
verified because the public key is not available: NO_PUBKEY 3B4FE6ACC0B21F32
E: The repository 'http://127.0.0.1:8080 stable InRelease' is not signed.
"""
APT_NOT_VALID_YET = """Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
E: Release file for http://deb.debian.org/debian/dists/bookworm/InRelease is not valid yet \
(invalid for another 2d 3h 4min 5s). Updates for this repository will not be applied.
"""


def locate(tmp_path, apt_output, files):
    """Run aptsources.LOCATE under sh with /etc/apt moved to tmp_path (the same script)."""
    import subprocess

    from provision import aptsources

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    script = "out=$1; " + aptsources.LOCATE.replace("/etc/apt/", f"{tmp_path}/")
    done = subprocess.run(["sh", "-c", script, "sh", apt_output], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return apt_output + done.stdout


SOURCES = {
    "sources.list": "deb http://deb.debian.org/debian bookworm main\n",
    "sources.list.d/vendor.list": (
        "# http://127.0.0.1:9/vendor was the old one\n"
        "deb [arch=amd64] http://me:s3cret@127.0.0.1:9/vendor stable main\n"
    ),
    "sources.list.d/other.sources": (
        "Types: deb\nURIs: http://127.0.0.1:8080\nSuites: stable\nComponents: main\n"
    ),
}


def test_unreachable_source_is_named_by_file_and_line_with_the_fix(tmp_path):
    from provision import aptsources

    text = locate(tmp_path, APT_UNREACHABLE, SOURCES)
    vendor = f"{tmp_path}/sources.list.d/vendor.list"
    hint = aptsources.hint(text)
    assert f"{vendor}:2 (deb [arch=amd64] http://127.0.0.1:9/vendor stable main)" in hint, hint
    assert "sources.list:1" not in hint  # deb.debian.org answered ("Hit:")
    assert f"`sudo mv {vendor} {vendor}.disabled`" in hint
    assert "s3cret" not in text  # a password in a source URL never reaches output


def test_missing_key_names_the_sources_file_and_signed_by(tmp_path):
    from provision import aptsources

    hint = aptsources.hint(locate(tmp_path, APT_NO_PUBKEY, SOURCES))
    other = f"{tmp_path}/sources.list.d/other.sources"
    assert (
        "signing key 3B4FE6ACC0B21F32" in hint
        and f"{other}:2 (URIs: http://127.0.0.1:8080)" in hint
    )
    assert "[signed-by=/etc/apt/keyrings/NAME.gpg]" in hint and "Signed-By:" in hint
    assert f"`sudo mv {other} {other}.disabled`" in hint


def test_release_not_valid_yet_names_the_clock_skew(tmp_path):
    from provision import aptsources

    text = locate(tmp_path, APT_NOT_VALID_YET, SOURCES)
    host_clock = int(text.rsplit("host clock: ", 1)[1])
    hint = aptsources.hint(text, local_now=host_clock + 2 * 86400 + 3 * 3600 + 245)
    assert "not valid yet (for another 2d 3h 4min 5s)" in hint, hint
    assert "the host's clock is 2d 3h 4min behind this machine's" in hint
    assert "timedatectl set-ntp true" in hint and "date -s" in hint


def test_other_failures_get_no_source_hint():
    from provision import aptsources

    assert aptsources.hint("E: Unable to locate package nosuchthing\n") == ""


def test_base_sees_a_bundle_rebuilt_without_the_extra_certificate(tmp_path):
    """Issue 13: the certificate file is right but `update-ca-certificates --fresh` ran while it
    was away: verify reads the bundle, so check must too."""
    pem = tmp_path / "lab-proxy.crt"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIBlab\n-----END CERTIFICATE-----\n")
    dest = "/usr/local/share/ca-certificates/provision-lab-proxy.crt"
    remote = remote_with_files(FILES)
    remote.on(rf"stat -c .*{dest}", f"644 root root\n{sha256(pem.read_bytes())}  {dest}\n")
    remote.on(r"grep -qF -e MIIBlab /etc/ssl/certs/ca-certificates.crt", (1, ""))
    changes = check(facts(dpkg_audit=""), remote, ca_certificates=(str(pem),))
    assert [c.summary for c in changes if "CA" in c.summary or "trust" in c.summary] == [
        "update the CA bundle"
    ]
    remote.on(r"grep -qF -e MIIBlab /etc/ssl/certs/ca-certificates.crt", (0, ""))
    changes = check(facts(dpkg_audit=""), remote, ca_certificates=(str(pem),))
    assert not [c for c in changes if "CA" in c.summary or "trust" in c.summary]
