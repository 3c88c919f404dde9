"""conda.check as a table on recorded facts: the pinned Miniforge, checksum, batch install,
shared prefix, .condarc, shell init; ToS refused unless accepted, accepted visibly."""

import dataclasses
import subprocess
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision import shell
from provision.changes import Result
from provision.config import build_settings, parse_set
from provision.errors import ConfigError, ProvisionError
from provision.facts import parse_facts
from provision.steps import conda, users
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
MINIFORGE = (
    "https://github.com/conda-forge/miniforge/releases/download/26.3.2-3/"
    "Miniforge3-26.3.2-3-Linux-x86_64.sh"
)
CACHED = "/var/cache/provision/Miniforge3-26.3.2-3-Linux-x86_64.sh"
SHA = "848194851a98903134187fbb4ab50efe87b003e0c0f808f97644b7524a62bf2c"
CONDARC = {"channels": ["conda-forge"], "channel_alias": "", "distribution": "miniforge"}
PROFILE = {"conda_sh": "/opt/conda/etc/profile.d/conda.sh"}
BASHRC = (
    "if [ -f /opt/conda/etc/profile.d/conda.sh ]; then . /opt/conda/etc/profile.d/conda.sh; fi"
    "  # provision: conda"
)

TEMPLATE_EXAMPLES = {
    "conda/condarc.j2": {
        "channels": ["conda-forge", "bioconda"],
        "channel_alias": "https://mirror.example.edu/conda",
        "distribution": "miniforge",
    },
    "conda/provision-conda.sh.j2": PROFILE,
}


def facts(name="debian-12-nspawn.txt", **changes):
    f = parse_facts((DATA / name).read_text())
    return dataclasses.replace(f, user="tester", **changes)


def check(remote, settings=None, facts_file="debian-12-nspawn.txt", accounts=(), **fact_changes):
    f = facts(facts_file, **fact_changes)
    s = {"conda": settings or conda.Settings(), "users": users.Settings(accounts=accounts)}
    return conda.check(declared.context(conda.STEP, f, s, remote))


def bashrc(r, user, home, marked=""):
    """Answer conda's one read of a user's home and their ~/.bashrc's marked lines."""
    return r.on(rf"bashrc {user} ", f"{home}\n{marked}")


def fresh_remote():
    r = FakeRemote()
    r.on(r"/opt/conda/bin/conda --version", (127, ""))
    r.on(r"test -e /opt/conda'", (1, ""))
    r.on(r"getent group conda", (2, ""))
    bashrc(r, "tester", "/home/tester")
    bashrc(r, "alice", "/home/alice")
    r.on(r"stat -c", (1, ""))
    return r


def digest(template, variables):
    return sha256(render(template, **variables))


def converged_remote():
    r = FakeRemote()
    r.on(r"/opt/conda/bin/conda --version", "conda 26.3.2\n")
    r.on(r"getent group conda", "conda:x:999:tester\n")
    r.on(r"find /opt/conda", "")
    r.on(
        r"sha256sum -- /opt/conda/.condarc",
        f"664 root conda\n{digest('conda/condarc.j2', CONDARC)}  x\n",
    )
    r.on(
        r"sha256sum -- /etc/profile.d/provision-conda.sh",
        f"644 root root\n{digest('conda/provision-conda.sh.j2', PROFILE)}  x\n",
    )
    return bashrc(r, "tester", "/home/tester", BASHRC + "\n")


@pytest.mark.parametrize("facts_file", ["debian-12-nspawn.txt", "ubuntu-24.04-fresh.txt"])
def test_fresh_host_gets_the_pinned_miniforge_checked_and_shared(facts_file):
    changes = check(fresh_remote(), facts_file=facts_file)
    summaries = [c.summary for c in changes]
    tail = [
        f"install Miniforge to /opt/conda from {MINIFORGE} (sha256 848194851a98…)",
        "create group conda",
        "add tester to group conda",
        "share /opt/conda with group conda (group-writable, setgid directories)",
        "write /opt/conda/.condarc",
        "write /etc/profile.d/provision-conda.sh",
        "add conda to /home/tester/.bashrc (# provision: conda)",
    ]
    if facts_file == "ubuntu-24.04-fresh.txt":  # a minimal image: curl is not there yet
        assert summaries[0].startswith("install ") and "curl" in summaries[0]
        summaries = summaries[1:]
    assert summaries == tail
    install = next(c for c in changes if c.summary.startswith("install Miniforge"))
    download, verify, run = (a.command for a in install.actions)
    assert download == (
        f"mkdir -p -- /var/cache/provision && {{ test -s {CACHED} || "
        f"{{ curl -fsSL --retry 3 -o {CACHED}.part {MINIFORGE} && mv -f -- {CACHED}.part {CACHED}; }}; }}"
    )
    assert verify.startswith("sh -c ") and "sha256sum -c" in verify
    assert verify.endswith(f" verify-installer {CACHED} {SHA}")
    assert run == f"bash {CACHED} -b -p /opt/conda"
    share = next(c for c in changes if c.summary.startswith("share")).actions[0].command
    assert share == (
        "chgrp -R -h conda -- /opt/conda && chmod -R g+rwX -- /opt/conda"
        " && find /opt/conda -type d -exec chmod g+s '{}' +"
    )
    condarc = next(c for c in changes if c.summary == "write /opt/conda/.condarc").actions[0]
    assert (condarc.mode, condarc.owner, condarc.group) == ("0664", "root", "conda")
    text = condarc.content.decode()
    assert "channels:\n  - conda-forge\n" in text and "auto_activate_base: false\n" in text
    profile = next(c for c in changes if "profile.d" in c.summary).actions[0].content.decode()
    assert ". /opt/conda/etc/profile.d/conda.sh" in profile


def test_converged_host_has_no_changes():
    assert check(converged_remote()) == []


def test_users_default_to_accounts_and_the_login_user_or_conda_users():
    summaries = [c.summary for c in check(fresh_remote(), accounts=("alice",))]
    assert "add alice to group conda" in summaries and "add tester to group conda" in summaries
    only = check(fresh_remote(), conda.Settings(users=("alice",)), accounts=("bob",))
    summaries = [c.summary for c in only]
    assert "add alice to group conda" in summaries and "add tester to group conda" not in summaries
    assert "add conda to /home/alice/.bashrc (# provision: conda)" in summaries


def test_stale_bashrc_line_is_replaced_not_duplicated():
    stale = "if [ -f /old/conda.sh ]; then ...  # provision: conda\n"
    r = bashrc(converged_remote(), "tester", "/home/tester", stale)
    (change,) = check(r)
    assert change.summary == "add conda to /home/tester/.bashrc (# provision: conda)"
    command = change.actions[0].command
    assert command.startswith("sh -c ") and "grep -vF" in command
    assert command.endswith(
        f"bashrc /home/tester/.bashrc {shell.cmd(BASHRC)} tester '# provision: conda'"
    )


def test_bashrc_script_keeps_other_lines_and_is_idempotent(tmp_path):
    rc = tmp_path / ".bashrc"
    rc.write_text("alias ll='ls -l'\nold line  # provision: conda\n")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    command = shell.cmd("sh", "-c", conda.BASHRC_SCRIPT, "x", rc, BASHRC, user, conda.BASHRC_MARKER)
    for _ in range(2):
        subprocess.run(command, shell=True, check=True)
    assert rc.read_text() == f"alias ll='ls -l'\n{BASHRC}\n"


def test_unshared_files_are_shared_again():
    r = converged_remote().on(r"find /opt/conda", "/opt/conda/pkgs/x.tar.bz2\n")
    (change,) = check(r)
    assert (
        change.summary == "share /opt/conda with group conda (group-writable, setgid directories)"
    )


def test_arm64_gets_the_aarch64_installer_and_its_own_hash():
    changes = check(fresh_remote(), arch="arm64")
    install = next(c for c in changes if c.summary.startswith("install Miniforge"))
    assert "Miniforge3-26.3.2-3-Linux-aarch64.sh" in install.actions[0].command
    assert install.actions[1].command.endswith(conda.MINIFORGE_SHA256["aarch64"])


def test_mirror_installer_and_channels():
    s = conda.Settings(
        installer_url="https://mirror.example.edu/miniforge/Miniforge3-Linux-x86_64.sh",
        installer_sha256="ab" * 32,
        channels=("conda-forge", "nvidia"),
        channel_alias="https://mirror.example.edu/conda",
    )
    changes = check(fresh_remote(), s)
    install = next(c for c in changes if c.summary.startswith("install Miniforge"))
    assert "curl -fsSL --retry 3 -o /var/cache/provision/Miniforge3-Linux-x86_64.sh.part" in (
        install.actions[0].command
    )
    assert install.actions[1].command.endswith(" " + "ab" * 32)
    condarc = next(c for c in changes if c.summary == "write /opt/conda/.condarc")
    text = condarc.actions[0].content.decode()
    assert "  - nvidia\n" in text and "channel_alias: https://mirror.example.edu/conda\n" in text


def test_checksum_mismatch_deletes_the_file_and_names_both_hashes(tmp_path):
    installer = tmp_path / "installer.sh"
    installer.write_text("echo hello\n")
    actual = sha256(installer.read_bytes())
    wrong = "0" * 64
    run = subprocess.run(
        conda.verify_command(str(installer), wrong), shell=True, capture_output=True, text=True
    )
    assert run.returncode == 1
    assert f"expected sha256 {wrong}, got {actual}" in run.stderr
    assert not installer.exists()
    installer.write_text("echo hello\n")
    ok = subprocess.run(conda.verify_command(str(installer), actual), shell=True)
    assert ok.returncode == 0 and installer.exists()


def test_existing_prefix_without_conda_is_not_overwritten():
    r = fresh_remote().on(r"test -e /opt/conda'", "")
    with pytest.raises(ProvisionError) as info:
        check(r)
    assert "/opt/conda exists but holds no working conda" in info.value.message


def test_anaconda_without_accept_tos_is_refused_naming_the_setting():
    layer = parse_set(
        [
            "conda.distribution=anaconda",
            "conda.installer_url=https://repo.anaconda.com/archive/Anaconda3-Linux-x86_64.sh",
            f"conda.installer_sha256={'cd' * 32}",
        ]
    )
    with pytest.raises(ConfigError) as info:
        build_settings([layer])
    assert info.value.exit_code == 2
    assert "conda.accept_tos = true" in info.value.message
    assert "--set conda.distribution" in info.value.message


def test_installer_url_without_sha256_is_refused():
    layer = parse_set(["conda.installer_url=https://mirror.example.edu/Miniforge3.sh"])
    with pytest.raises(ConfigError) as info:
        build_settings([layer])
    assert info.value.exit_code == 2
    assert "conda.installer_url: needs conda.installer_sha256" in info.value.message


def test_bad_sha256_is_refused():
    with pytest.raises(ConfigError) as info:
        build_settings([parse_set(["conda.installer_sha256=abc"])])
    assert "is not a sha256" in info.value.message


def test_miniconda_needs_its_installer_url():
    layer = parse_set(["conda.distribution=miniconda", "conda.accept_tos=true"])
    with pytest.raises(ConfigError) as info:
        build_settings([layer])
    assert "only Miniforge is pinned" in info.value.message


def test_disabled_conda_has_no_problems_and_no_changes():
    settings, _ = build_settings(
        [parse_set(["conda.enabled=false", "conda.distribution=anaconda"])]
    )
    assert settings["conda"].enabled is False
    assert check(FakeRemote(), conda.Settings(enabled=False)) == []


def test_anaconda_with_accept_tos_accepts_each_default_channel_visibly():
    s = conda.Settings(
        distribution="anaconda",
        installer_url="https://repo.anaconda.com/archive/Anaconda3-2025.06-1-Linux-x86_64.sh",
        installer_sha256="cd" * 32,
        accept_tos=True,
    )
    changes = check(fresh_remote().on(r"cat -- /opt/conda/conda-meta", (1, "")), s)
    summaries = [c.summary for c in changes]
    assert summaries[0].startswith("install Anaconda to /opt/conda from https://repo.anaconda.com/")
    assert summaries[1] == (
        "accept Anaconda's Terms of Service for https://repo.anaconda.com/pkgs/main, "
        "https://repo.anaconda.com/pkgs/r (conda.accept_tos = true)"
    )
    command = changes[1].actions[0].command
    assert command.startswith(
        "/opt/conda/bin/conda tos accept --override-channels --channel "
        "https://repo.anaconda.com/pkgs/main --system && /opt/conda/bin/conda tos accept "
        "--override-channels --channel https://repo.anaconda.com/pkgs/r --system && "
    )
    # Accepted once: the record makes the next run quiet.
    r = converged_remote().on(
        r"cat -- /opt/conda/conda-meta/provision-tos-accepted",
        "https://repo.anaconda.com/pkgs/main\nhttps://repo.anaconda.com/pkgs/r\n",
    )
    condarc = {**CONDARC, "distribution": "anaconda"}
    r.on(
        r"sha256sum -- /opt/conda/.condarc",
        f"664 root conda\n{digest('conda/condarc.j2', condarc)}  x\n",
    )
    assert check(r, s) == []


def test_miniforge_never_touches_the_tos():
    assert not any("Terms of Service" in c.summary for c in check(fresh_remote()))


# --- declared reads: check and preflight read nothing else ------------------------------------

FACT_FILES = ("debian-12-nspawn.txt", "ubuntu-22.04-gpu.txt", "ubuntu-24.04-fresh.txt")
ANACONDA = conda.Settings(
    distribution="anaconda",
    accept_tos=True,
    installer_url="https://repo.example/Anaconda3.sh",
    installer_sha256="0" * 64,
)


@pytest.mark.parametrize("facts_file", FACT_FILES)
@pytest.mark.parametrize("settings", [conda.Settings(), ANACONDA, conda.Settings(users=("alice",))])
@pytest.mark.parametrize("answers", [fresh_remote, converged_remote])
def test_check_and_preflight_read_only_what_conda_declares(facts_file, settings, answers):
    f = facts(facts_file)
    s = {"conda": settings, "users": users.Settings(accounts=("alice",))}
    r = bashrc(answers(), "alice", "/home/alice")
    r.answers.append((r".", Result(1, "")))  # the last rule: a declared read no rule answers
    declared.check_declared(conda.STEP, f, s, r)


def test_the_bashrc_read_runs_here(tmp_path):
    """The one read of a user's ~/.bashrc, by this machine's sh, with a getent that knows one
    account: its home on the first line, then the marked lines; exit 3 for a missing account."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(f"alias ll='ls -l'\n{BASHRC}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    getent = bin_dir / "getent"
    getent.write_text(
        '#!/bin/sh\n[ "$1 $2 $3" = "passwd -- tester" ] || exit 2\n'
        f'echo "tester:x:1000:1000::{home}:/bin/bash"\n'
    )
    getent.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    def run(user):
        proc = subprocess.run(
            conda.bashrc_read(user).command, shell=True, capture_output=True, text=True, env=env
        )
        return proc.returncode, proc.stdout

    assert run("tester") == (0, f"{home}\n{BASHRC}\n")
    assert run("nobody")[0] == conda.NO_ACCOUNT
    (home / ".bashrc").unlink()
    assert run("tester") == (0, f"{home}\n")  # no ~/.bashrc yet: the line is to be added
