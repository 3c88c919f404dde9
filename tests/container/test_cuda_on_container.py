"""cuda over real SSH on a fresh container: NVIDIA's repository mechanics (cuda-keyring, the
signed-by source, contrib on Debian, the pin, the versioned toolkit package, profile.d)
against a local signed apt repository that stands in for NVIDIA's (tests/hosts/aptrepo.py,
a FIXTURE: its key, keyring package and `nvcc` are made for the tests, nothing is NVIDIA's).
Then the distribution's own toolkit as a `slow` case (Debian's nvidia-cuda-toolkit, 2.3 GB).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from aptrepo import missing_tools
from common import ssh
from pkgindex import serve

from hostrun import booted, provision_runner
from provision.cudarepo import dearmor

pytestmark = pytest.mark.container
REPO_PATH = "debian12/x86_64/"
FACTS = Path(__file__).resolve().parent.parent / "data" / "facts"


@pytest.fixture(scope="module")
def fixture_repo(require_tier, tmp_path_factory):
    """FIXTURE: the signed stand-in for NVIDIA's CUDA repository, served on 127.0.0.1."""
    reason = missing_tools()
    if reason:
        require_tier("container", reason)
    import aptrepo

    root = aptrepo.build(tmp_path_factory.mktemp("cuda-fixture-repo"))
    server, url = serve(root)
    try:
        yield url.rstrip("/"), aptrepo.key_fingerprint(root)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def host(require_tier, fixture_repo):
    """A fresh container with the cuda step on, pointed at the fixture repository (whose key,
    not NVIDIA's, is the one its keyring must hold)."""
    url, key = fixture_repo
    extra = {
        "cuda.enabled": "true",
        "cuda.repo_url": url,
        "cuda.repo_key": key,
        "cuda.version": "12.8",
    }
    yield from booted("container", require_tier, extra_vars=extra)


@pytest.fixture
def provision(host, tmp_path):
    return provision_runner(host, tmp_path / "logs")


def test_cuda_from_the_fixture_repo_installs_converges_and_verifies(host, provision, fixture_repo):
    repo = f"{fixture_repo[0]}/{REPO_PATH}"
    first = provision("cuda", "--host", host.name)
    for line in (
        "write /etc/apt/sources.list.d/provision-components.sources",
        f"install cuda-keyring_1.1-1_all.deb from {repo}",
        "write /etc/apt/sources.list.d/cuda-debian12-x86_64.list",
        "write /etc/apt/preferences.d/cuda-repository-pin-600",
        f"download the package lists of {repo}",
        "install 1 package: cuda-toolkit-12-8",
        "write /etc/profile.d/cuda.sh",
    ):
        assert line in first.stdout, f"{line!r} not in:\n{first.stdout}"
    provision("cuda", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=0)
    verify = provision("verify", "--host", host.name, "cuda")
    assert "6 passed" in verify.stdout, verify.stdout


def test_the_host_uses_one_signed_cuda_source_and_no_apt_key(host):
    listed = ssh(host, "cat /etc/apt/sources.list.d/cuda-debian12-x86_64.list").stdout
    assert "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] " in listed
    sources = ssh(host, "grep -rl cuda-archive-keyring /etc/apt/sources.list.d/").stdout.split()
    assert sources == ["/etc/apt/sources.list.d/cuda-debian12-x86_64.list"]
    assert ssh(host, "test -e /etc/apt/trusted.gpg", check=False).returncode != 0
    contrib = ssh(host, "apt-get indextargets --format '$(COMPONENT)' | sort -u").stdout.split()
    assert "contrib" in contrib


def test_a_keyring_holding_another_releases_key_is_replaced(host, provision, fixture_repo):
    """Issue 19: every release's cuda-keyring is 1.1-1, so a keyring of another release (here
    NVIDIA's published 3bf863cc key, debian12's) passes a version check; the key does not."""
    nvidia = base64.b64encode(dearmor((FACTS / "nvidia-cuda-3bf863cc.asc").read_bytes()))
    ssh(host, f"echo {nvidia.decode()} | base64 -d > /usr/share/keyrings/cuda-archive-keyring.gpg")
    plan = provision("cuda", "--host", host.name, "--plan")
    assert (
        "replace /usr/share/keyrings/cuda-archive-keyring.gpg (it holds 3BF863CC, not "
        f"{fixture_repo[1][-8:]}, the key of debian12)"
    ) in plan.stdout, plan.stdout
    verify = provision("verify", "--host", host.name, "cuda", check_rc=None)
    assert verify.returncode != 0 and "EB693B3035CD5710E231E123A4B469963BF863CC" in verify.stdout
    provision("cuda", "--host", host.name)
    provision("cuda", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=0)


def test_nvcc_is_on_a_login_shells_path(host):
    out = ssh(host, "bash -lc 'nvcc --version'", user="tester").stdout
    assert "Cuda compilation tools, release 12.8, V12.8.93" in out


def test_a_download_that_is_not_cuda_keyring_is_refused(host, provision, fixture_repo, tmp_path):
    """Reinstall from a mirror serving a wrong file at the keyring's name: refused, deleted."""
    wrong = tmp_path / "wrong" / REPO_PATH
    wrong.mkdir(parents=True)
    (wrong / "cuda-keyring_1.1-1_all.deb").write_text("<html>not a package</html>\n")
    server, url = serve(tmp_path / "wrong")
    try:
        ssh(host, "dpkg --purge cuda-keyring")
        proc = provision(
            "cuda", "--host", host.name, "--set", f"cuda.repo_url={url}", check_rc=None
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode != 0
    assert "is not cuda-keyring 1.1-1 (it says: not a .deb); refused and deleted it" in (
        proc.stdout + proc.stderr
    )
    assert (
        ssh(host, "ls /var/lib/provision/").stdout.split().count("cuda-keyring_1.1-1_all.deb") == 0
    )
    provision("cuda", "--host", host.name)  # the fixture repository puts it back
    provision("cuda", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=0)


@pytest.fixture(scope="module")
def distro_host(require_tier):
    extra = {"cuda.enabled": "true", "cuda.source": "distro"}
    yield from booted("container", require_tier, extra_vars=extra)


@pytest.mark.slow
def test_debian_nvidia_cuda_toolkit_installs_and_verifies(distro_host, tmp_path):
    """Debian's own toolkit (contrib and non-free, about 2.3 GB): slow, run with -m slow."""
    provision = provision_runner(distro_host, tmp_path / "logs")
    first = provision("cuda", "--host", distro_host.name)
    assert "install 1 package: nvidia-cuda-toolkit" in first.stdout
    provision("cuda", "--host", distro_host.name, "--plan", "--detailed-exitcode", check_rc=0)
    verify = provision("verify", "--host", distro_host.name, "cuda")
    assert "1 passed" in verify.stdout, verify.stdout
    out = ssh(distro_host, "nvcc --version", user="tester").stdout
    assert "release 11.8," in out
