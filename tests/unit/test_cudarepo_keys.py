"""The CUDA repository key per distribution (issue 19): the keyring's fingerprints are read from
the file itself, checked against the key NVIDIA signs the release's directory with, and a
keyring of another release (same cuda-keyring 1.1-1) is replaced and named in the plan; the
directories NVIDIA builds per architecture; the release's own toolkit on Debian 13 / Ubuntu
26.04.

Expectations come from outside the code: NVIDIA's published 3bf863cc key and the fingerprint in
the sqv refusals quoted in NVIDIA/cuda-repo-management #30/#34, the short id 8793F200 from #39,
gpg's own fingerprints of keys it makes here, and apt-cache's answer for trixie
(tests/data/facts/debian-13-apt-cuda-toolkit.txt).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_cuda import (
    CONVERGED,
    DATA,
    DEBIAN_MAIN,
    OFFICIAL,
    check,
    facts,
    preflight,
    remote,
    render,
    state,
)

from provision import compat, cudarepo, settings
from provision.errors import ConfigError
from provision.steps import cuda

ASC = (DATA / "nvidia-cuda-3bf863cc.asc").read_bytes()
# From the sqv refusals quoted in NVIDIA/cuda-repo-management issues #30 and #34.
NVIDIA_3BF863CC = "EB693B3035CD5710E231E123A4B469963BF863CC"


def test_nvidias_published_3bf863cc_key_has_the_fingerprint_sqv_names():
    assert cudarepo.key_fingerprints(ASC) == (NVIDIA_3BF863CC,)
    binary = cudarepo.dearmor(ASC)
    assert cudarepo.key_fingerprints(binary) == (NVIDIA_3BF863CC,)
    wrapped = base64.encodebytes(binary).decode().splitlines()  # base64's 76-column lines
    assert cudarepo.keyring_fingerprints(wrapped) == (NVIDIA_3BF863CC,)


def test_garbage_and_empty_keyrings_hold_no_key():
    assert cudarepo.key_fingerprints(b"") == ()
    assert cudarepo.key_fingerprints(b"<html>not a key</html>\n") == ()
    assert cudarepo.keyring_fingerprints(["!!not base64!!"]) == ()
    truncated = cudarepo.dearmor(ASC)[:100]
    assert cudarepo.key_fingerprints(truncated) == ()


@pytest.mark.skipif(not shutil.which("gpg"), reason="needs gpg to make keys")
def test_fingerprints_of_a_two_key_keyring_match_what_gpg_says(tmp_path):
    """Primary keys only (not subkeys), v4 ed25519 and rsa, in gpg's binary export."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        for uid, algo in (("a <a@invalid>", "ed25519"), ("b <b@invalid>", "rsa2048")):
            subprocess.run(
                ["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", uid, algo,
                 "default", "never"],
                check=True, env=env, capture_output=True,
            )  # fmt: skip
        exported = subprocess.run(
            ["gpg", "--batch", "--export"], check=True, env=env, capture_output=True
        ).stdout
        listed = subprocess.run(
            ["gpg", "--batch", "--with-colons", "--list-keys"],
            check=True, env=env, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
    primaries, previous = [], ""
    for line in listed.splitlines():
        fields = line.split(":")
        if fields[0] == "fpr" and previous == "pub":
            primaries.append(fields[9])
        previous = fields[0]
    assert len(primaries) == 2
    assert cudarepo.key_fingerprints(exported) == tuple(primaries)


def test_each_directory_has_the_key_nvidia_signs_it_with():
    # Issue #39: existing repositories keep 3bf863cc; Debian 13 has the new key 8793F200.
    for distro in ("ubuntu2204", "ubuntu2404", "debian12"):
        assert cudarepo.repo_key(distro) == NVIDIA_3BF863CC
    assert cudarepo.repo_key("debian13").endswith("8793F200")
    assert cudarepo.repo_key("ubuntu2604").endswith("60DF8A40")
    assert cudarepo.repo_key("debian13", "ab" * 20) == "AB" * 20  # cuda.repo_key wins


def test_debian13_is_x86_64_only_and_ubuntu2604_has_sbsa():
    assert cudarepo.repo_arch_dir("debian13", "amd64") == "x86_64"
    with pytest.raises(compat.Incompatible, match=r"debian13 CUDA repository has no sbsa") as e:
        cudarepo.repo_arch_dir("debian13", "arm64")
    assert "cuda.source = distro" in e.value.hint
    assert cudarepo.repo_arch_dir("ubuntu2604", "arm64") == "sbsa"
    assert cudarepo.repo_arch_dir("debian12", "arm64") == "sbsa"


def test_repo_key_setting_is_a_fingerprint():
    settings.fingerprint("")
    settings.fingerprint(NVIDIA_3BF863CC)
    for bad in ("3bf863cc", "EB69 3B30 35CD 5710 E231 E123 A4B4 6996 3BF8 63CC", "x" * 40):
        with pytest.raises(ValueError, match="not a key fingerprint"):
            settings.fingerprint(bad)


# --- the plan: a keyring holding another release's key is replaced -------------------------


def repo_files(distro):
    repo = f"{OFFICIAL}/{distro}/x86_64/"
    return {
        f"/etc/apt/sources.list.d/cuda-{distro}-x86_64.list": render(
            "cuda/cuda.list.j2", distro=distro, arch_dir="x86_64", repo=repo, keyring=cuda.KEYRING
        ),
        cudarepo.PIN: render(
            "cuda/cuda-repository-pin-600.j2", origin=cudarepo.urlsplit(repo).hostname
        ),
        cuda.PROFILE: render("cuda/cuda.sh.j2", version="12.8", bin_dir="/usr/local/cuda-12.8/bin"),
    }


def converged(distro, codename, key=None):
    """A host whose apt state is converged for `distro`, its keyring holding `key`."""
    main = DEBIAN_MAIN.replace("bookworm", codename)
    targets = (
        main,
        main.replace("\tmain\t", "\tcontrib\t"),
        f"{OFFICIAL}/{distro}/x86_64/\t\t\t/etc/apt/sources.list.d/cuda-{distro}-x86_64.list",
    )
    kwargs = {"key": key} if key is not None else {}
    answer = state(targets, fetched=(f"{OFFICIAL}/{distro}/x86_64/",), keyring=True, **kwargs)
    return remote(answer, repo_files(distro))


def test_debian12_host_with_nvidias_key_is_converged():
    assert check(facts("debian-12-nspawn", *CONVERGED), converged("debian12", "bookworm")) == []


def test_a_keyring_with_another_key_is_replaced_and_named_in_the_plan():
    other = "AB" * 20
    changes = check(
        facts("debian-12-nspawn", *CONVERGED), converged("debian12", "bookworm"), repo_key=other
    )
    assert [c.summary for c in changes] == [
        f"replace {cudarepo.KEYRING} (it holds 3BF863CC, not ABABABAB, the key of debian12): "
        f"install cuda-keyring_1.1-1_all.deb from {OFFICIAL}/debian12/x86_64/",
        f"download the package lists of {OFFICIAL}/debian12/x86_64/",
    ]
    assert "dpkg --force-confdef --force-confold -i" in changes[0].actions[0].command
    unreadable = check(
        facts("debian-12-nspawn", *CONVERGED), converged("debian12", "bookworm", key=b"junk")
    )
    assert "(it holds no readable key, not 3BF863CC" in unreadable[0].summary


def serve_debian13(monkeypatch):
    """compat's debian-13 entry (H2's) where present; the directory name the issue gives else."""
    try:
        compat.cuda_repo_distro("debian-13")
    except compat.Incompatible:
        real = compat.cuda_repo_distro
        monkeypatch.setattr(
            cudarepo.compat,
            "cuda_repo_distro",
            lambda os_key: "debian13" if os_key == "debian-13" else real(os_key),
        )


def trixie(*installed):
    return dataclasses.replace(
        facts("debian-12-nspawn", *installed), os_version="13", codename="trixie"
    )


def test_a_debian12_keyring_on_a_debian13_host_is_replaced(monkeypatch):
    """The issue's case: cuda-keyring 1.1-1 from debian12 passes a version check on trixie."""
    serve_debian13(monkeypatch)
    changes = check(trixie(*CONVERGED), converged("debian13", "trixie"))
    assert [c.summary for c in changes][:1] == [
        f"replace {cudarepo.KEYRING} (it holds 3BF863CC, not 8793F200, the key of debian13): "
        f"install cuda-keyring_1.1-1_all.deb from {OFFICIAL}/debian13/x86_64/"
    ]
    curl = changes[0].actions[0].command
    assert f"{OFFICIAL}/debian13/x86_64/cuda-keyring_1.1-1_all.deb" in curl


def test_debian13_arm64_is_refused_before_anything_changes(monkeypatch):
    serve_debian13(monkeypatch)
    with pytest.raises(compat.Incompatible, match="no sbsa"):
        preflight(dataclasses.replace(trixie(), arch="arm64"), source="nvidia")


# --- verify: the keyring file holds the key of this release's repository -------------------


class KeyringFileHost:
    """A testinfra stand-in: cuda-keyring 1.1-1 installed, KEYRING holding `content`."""

    def __init__(self, os_key, content):
        self.os_key, self.content = os_key, content

    def check_output(self, command):
        if command.startswith("base64 < "):
            return base64.encodebytes(self.content).decode()  # wrapped, like coreutils' base64
        return self.os_key if "os-release" in command else "amd64"

    def package(self, name):
        return type("Package", (), {"is_installed": True, "version": "1.1-1"})()

    def file(self, path):
        fields = {"exists": True, "size": len(self.content), "content": self.content}
        return type("File", (), fields)()


def test_verify_keyring_names_the_key_it_wants(monkeypatch):
    monkeypatch.setattr(cuda, "nvidia_only", lambda host, s: "12.8")
    binary = cudarepo.dearmor(ASC)
    cuda.verify_keyring(KeyringFileHost("debian-12", binary), cuda.Settings())
    serve_debian13(monkeypatch)
    with pytest.raises(AssertionError, match=re.escape(NVIDIA_3BF863CC) + r", not 02182E60"):
        cuda.verify_keyring(KeyringFileHost("debian-13", binary), cuda.Settings())
    with pytest.raises(AssertionError, match="no readable key"):
        cuda.verify_keyring(KeyringFileHost("debian-12", b"x"), cuda.Settings())


# --- the release's own toolkit ---------------------------------------------------------------


def test_debian13_ships_cuda_12_4_as_nvidia_cuda_toolkit():
    recorded = (DATA / "debian-13-apt-cuda-toolkit.txt").read_text()
    version = re.search(r"^Version: (\d+\.\d+)\.", recorded, re.M)[1]
    assert cuda.DISTRO_TOOLKITS["debian-13"].version == version == "12.4"
    preflight(trixie(), source="distro", version="12.4")
    with pytest.raises(
        ConfigError, match=r"debian-13's nvidia-cuda-toolkit is CUDA 12\.4, not 12\.8"
    ):
        preflight(trixie(), source="distro", version="12.8")


def test_ubuntu2604_distro_toolkit_is_the_archives_cuda_toolkit():
    f = dataclasses.replace(
        facts("ubuntu-24.04-fresh", apt_stamp=None), os_version="26.04", codename="resolute"
    )
    targets = tuple(
        f"http://archive.ubuntu.com/ubuntu/\tresolute\t{c}\t/etc/apt/sources.list.d/ubuntu.sources"
        for c in ("main", "multiverse")
    )
    changes = check(f, remote(state(targets)), source="distro", version="")
    assert changes[-1].summary == "install 1 package: cuda-toolkit"
    with pytest.raises(ConfigError, match=r"ubuntu-26.04's cuda-toolkit is CUDA 13\.1, not 12\.4"):
        preflight(f, source="distro", version="12.4")


def test_distro_messages_name_no_single_release():
    """Issue 19: release-neutral texts (the setting's help named Debian only)."""
    help_text = dataclasses.fields(cuda.Settings)[2].metadata["help"]
    assert "Debian" not in help_text
    assert "Debian 12" not in Path(cuda.__file__).read_text()
