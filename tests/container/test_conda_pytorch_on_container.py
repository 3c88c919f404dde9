"""conda + pytorch over real SSH on a fresh container, from local sources on loopback.

The conda installer is a FIXTURE (tests/hosts/condafixture.py: a stand-in that behaves like
Miniforge's installer for what the steps use; no GitHub/Anaconda host is reachable here),
served with its sha256 over HTTP on 127.0.0.1. torch is the REAL wheel (/opt/wheels:
torch-2.13.0+cpu for CPython 3.11) served as a find-links page; its dependencies come from
PyPI. Proves: a wrong checksum is refused (file deleted, nothing installed); `provision all`
from nothing; verify green with the GPU checks skipped with their reason; torch imports in
the env; the second run changes nothing. On each release (bookworm, trixie) whose python3 has
a torch wheel here; the others skip and say which wheel is missing (PyPI's torch of that
release is another build, and the step refuses it).
"""

from __future__ import annotations

import json
import re

import container
import pytest
from common import RELEASES, ssh
from condafixture import build as build_installer
from pkgindex import WHEELS, make_wheelhouse, serve

from hostrun import booted, missing_tools, provision_runner
from provision.steps.pytorch import NO_GPU

pytestmark = pytest.mark.container

WRONG_SHA = "0" * 64
# torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl: version, python tag (PEP 427)
WHEEL_RE = re.compile(r"torch-([^-]+)-([^-]+)-[^-]+-[^-]+\.whl")


def image_python(release: str) -> str:
    """The X.Y of python3 in the release's image (the conda FIXTURE makes envs of it)."""
    link = (container.build(release) / "usr/bin/python3").readlink().name  # python3.11
    return link.removeprefix("python")


def torch_wheel(python: str) -> tuple[str, str] | None:
    """(file name, version) of a torch wheel here for CPython X.Y, None when there is none."""
    tag = "cp" + python.replace(".", "")
    for path in sorted(WHEELS.glob("torch-*.whl")):
        m = WHEEL_RE.fullmatch(path.name)
        if m and tag in m.group(2).split("."):
            return path.name, m.group(1).split("+")[0]
    return None


@pytest.fixture(scope="module", params=RELEASES)
def release(request, require_tier):
    """The release, its python3 and the torch wheel for it; a skip that names the missing
    wheel where there is none (never a pass on another build)."""
    reason = missing_tools(
        ("mmdebstrap", "systemd-nspawn", "ssh"), "mmdebstrap systemd-container openssh-client"
    )
    if reason:
        require_tier("container", reason)
    python = image_python(request.param)
    found = torch_wheel(python)
    if found is None:
        have = ", ".join(p.name for p in sorted(WHEELS.glob("torch-*.whl"))) or "none"
        pytest.skip(
            f"no torch wheel for CPython {python} ({request.param}'s python3) is reachable "
            f"here: {WHEELS} holds {have}, and download.pytorch.org cannot be reached"
        )
    return {"name": request.param, "python": python, "wheel": found[0], "version": found[1]}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, release):
    """The FIXTURE installer and the real torch wheel, each served on 127.0.0.1."""
    root = tmp_path_factory.mktemp("conda-sources")
    installer, sha = build_installer(root / "installer")
    installer_server, installer_base = serve(installer.parent)
    wheel_server, wheels = serve(make_wheelhouse(root / "wheels"))
    try:
        # The same file cut short, as a dropped download leaves it (served beside it).
        truncated = installer.parent / "truncated" / installer.name
        truncated.parent.mkdir()
        truncated.write_bytes(installer.read_bytes()[: installer.stat().st_size // 2])
        yield {
            "url": installer_base + installer.name,
            "truncated_url": installer_base + "truncated/" + installer.name,
            "sha256": sha,
            "wheels": wheels,
        }
    finally:
        for server in (installer_server, wheel_server):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def host(require_tier, sources, release):
    extra = {
        "conda.enabled": "true",
        "conda.installer_url": sources["url"],
        "conda.installer_sha256": sources["sha256"],
        "pytorch.enabled": "true",
        "pytorch.index": "cpu",
        "pytorch.version": release["version"],
        "pytorch.packages": "torch",
        "pytorch.find_links": sources["wheels"],
        "pytorch.index_url": "https://pypi.org/simple",
        "pytorch.python": release["python"],
    }
    yield from booted("container", require_tier, extra_vars=extra, release=release["name"])


@pytest.fixture
def provision(host, tmp_path):
    return provision_runner(host, tmp_path / "logs")


@pytest.mark.reliability("faults")
def test_wrong_checksum_is_refused_and_the_download_deleted(host, provision, sources):
    run = provision(
        "conda",
        "--host",
        host.name,
        "--set",
        f"conda.installer_sha256={WRONG_SHA}",
        check_rc=1,
    )
    out = run.stdout + run.stderr
    assert "checksum mismatch" in out, out
    assert f"expected sha256 {WRONG_SHA}" in out and f"got {sources['sha256']}" in out, out
    left = ssh(host, "ls /var/cache/provision/ /opt/conda 2>&1; true").stdout
    assert "Miniforge3-FIXTURE" not in left, left
    assert "No such file" in left and "'/opt/conda'" in left, left


@pytest.mark.reliability("faults")
def test_truncated_download_is_refused_and_deleted(host, provision, sources):
    run = provision(
        "conda", "--host", host.name, "--set", f"conda.installer_url={sources['truncated_url']}",
        check_rc=1,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert "checksum mismatch" in out and f"expected sha256 {sources['sha256']}" in out, out
    assert f"got {sources['sha256']}" not in out, out
    left = ssh(host, "ls /var/cache/provision/ /opt/conda 2>&1; true").stdout
    assert "Miniforge3-FIXTURE" not in left and "'/opt/conda'" in left, left


def test_all_from_nothing_then_verify_with_gpu_checks_skipped(host, provision, release):
    first = provision("all", "--host", host.name)
    assert "install Miniforge to /opt/conda" in first.stdout, first.stdout
    python = release["python"]
    assert f"create conda env /opt/conda/envs/dl with Python {python}" in first.stdout, first.stdout
    verify = provision("verify", "--host", host.name, "conda", "pytorch")
    out = verify.stdout + verify.stderr
    assert "6 passed, 0 failed, 0 error, 2 skipped" in out, out
    skipped = [line for line in out.splitlines() if " skipped " in line]
    assert len(skipped) == 2 and all(line.endswith(NO_GPU) for line in skipped), out


def test_torch_imports_in_the_env_as_a_user(host, release):
    version = release["version"]
    for python in ("/opt/conda/envs/dl/bin/python", "/opt/provision/envs/dl/bin/python"):
        out = ssh(host, f"{python} -c 'import torch; print(torch.__version__)'", user="tester")
        assert out.stdout.strip() == f"{version}+cpu", out  # the wheel's build, not PyPI's
    marker = json.loads(ssh(host, "cat /opt/conda/envs/dl/provision-pytorch.json").stdout)
    assert marker["index"] == "cpu" and marker["requirements"] == [f"torch=={version}"]
    shared = ssh(host, "stat -c '%G %A' /opt/conda /opt/conda/envs/dl").stdout.split("\n")
    assert shared[0].startswith("conda drwxrwsr-x") and shared[1].startswith("conda drwxrwsr"), (
        shared
    )
    # A login shell of the user has the conda function and reaches the env through it.
    login = ssh(
        host,
        "bash -lc 'conda activate dl && python -c \"import torch\" && type -t conda'",
        user="tester",
    )
    assert login.stdout.strip().endswith("function"), login


def test_second_run_changes_nothing(host, provision):
    provision("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=0)
