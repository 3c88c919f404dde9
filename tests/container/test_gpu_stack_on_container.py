"""The whole GPU stack in one `provision all` on a fresh container: driver (Debian's
non-free packages, `driver.require_gpu=false`), cuda (from the FIXTURE signed apt repository
that stands in for NVIDIA's, tests/hosts/aptrepo.py), conda (the FIXTURE installer,
tests/hosts/condafixture.py) and pytorch (the REAL torch 2.13.0 CPU wheel from /opt/wheels
served as find-links; its dependencies from PyPI). From nothing to a green verify with every
GPU check skipped with its reason, then a second run that changes nothing.

A second host runs pytorch without conda: a plain venv with the system python3 (a slow case,
by hand: `sudo tests/run -m slow tests/container/test_gpu_stack_on_container.py`).
"""

from __future__ import annotations

import re

import pytest
from common import ssh
from gpustack import TORCH, served, settings

from hostrun import booted, provision_runner

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def sources(require_tier, tmp_path_factory):
    """The FIXTURE apt repo and conda installer, and the real torch wheel, on 127.0.0.1."""
    import aptrepo

    reason = aptrepo.missing_tools()
    if reason:
        require_tier("container", reason)
    with served(tmp_path_factory.mktemp("gpu-stack-sources")) as urls:
        yield urls


@pytest.fixture(scope="module")
def stack(require_tier, sources):
    extra = settings(sources)
    yield from booted("container", require_tier, extra_vars=extra)


def test_all_brings_the_gpu_stack_from_nothing_to_a_green_verify(stack, tmp_path):
    provision = provision_runner(stack, tmp_path / "logs")
    plan = provision("all", "--host", stack.name, "--plan")
    for step in ("driver", "cuda", "conda", "pytorch"):
        assert f" {step} " in plan.stdout or f"{step}:" in plan.stdout, plan.stdout
    provision("all", "--host", stack.name)
    provision("all", "--host", stack.name, "--plan", "--detailed-exitcode")
    assert commands_of_last_run(tmp_path / "logs") <= 3  # facts, run lock, declared reads
    provision("all", "--host", stack.name)  # a no-op apply: the same three
    assert commands_of_last_run(tmp_path / "logs") <= 3
    verify = provision("verify", "--host", stack.name, check_rc=None)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "no NVIDIA GPU on this host" in verify.stdout
    assert " 0 failed" in verify.stdout or "0 failed" in verify.stdout
    version = ssh(
        stack, "/opt/provision/envs/dl/bin/python -c 'import torch; print(torch.__version__)'"
    )
    assert version.stdout.strip() == "2.13.0+cpu"
    nvcc = ssh(stack, "bash -lc 'nvcc --version'")
    assert "release 12.8" in nvcc.stdout


def commands_of_last_run(log_dir) -> int:
    """The remote command count the newest transcript ends with ("# 3 commands, 1.2s")."""
    newest = max(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime_ns)
    last = newest.read_text().rstrip().splitlines()[-1]
    m = re.fullmatch(r"# (\d+) commands, [\d.]+s", last)
    assert m, last
    return int(m.group(1))


@pytest.fixture(scope="module")
def venv_host(require_tier, sources):
    extra = {"pytorch.find_links": sources["wheels"], **TORCH}
    yield from booted("container", require_tier, extra_vars=extra)


# A second whole `provision all` from nothing (three minutes of CI with its teardown): run by
# hand as a slow case, its result recorded in the README's Tests table.
@pytest.mark.slow
def test_pytorch_in_a_plain_venv_when_conda_is_off(venv_host, tmp_path):
    provision = provision_runner(venv_host, tmp_path / "logs")
    provision("all", "--host", venv_host.name)  # base first: the CA of this machine's proxy
    provision("all", "--host", venv_host.name, "--plan", "--detailed-exitcode")
    check = ssh(
        venv_host,
        "/opt/provision/envs/dl/bin/python -c 'import sys, torch; print(sys.prefix, torch.__version__)'",
    )
    assert check.stdout.split() == ["/opt/provision/envs/dl", "2.13.0+cpu"]
    assert ssh(venv_host, "test -L /opt/provision/envs/dl", check=False).returncode == 1
    verify = provision("verify", "--host", venv_host.name, "pytorch", check_rc=None)
    assert verify.returncode == 0, verify.stdout
    assert "no NVIDIA GPU on this host" in verify.stdout
