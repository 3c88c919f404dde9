"""The GPU-only checks, on a machine with an NVIDIA GPU, through a local connection (no SSH):
the card is in compat's table with the right architecture, the driver check (module loaded and
matching nvidia-smi), and the pytorch checks (CUDA available, a matmul on the GPU) against an
environment that sees the machine's own torch, the containers step's /dev/char read (against
os.stat) and, where Docker and NVIDIA's toolkit are there, a container that sees the GPU. Marked `gpu` (deselected by default); run by
tests/gpu/run-on-gpu.sh. Without a GPU every test fails with that reason: this file exists to
be run where there is one (by default the `gpu` marker deselects them: they collect and do not
run). Each expectation comes from outside the code it checks: nvidia-smi, the kernel's
/proc/driver/nvidia/version, dpkg's records, the wheel's own metadata and kernel list."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from provision import compat, stack, verify
from provision.facts.gpu import module_version
from provision.local import LocalRemote
from provision.remote import Connection
from provision.runner import gather_facts
from provision.steps import STEPS, driver, pytorch

pytestmark = pytest.mark.gpu
ENV = "gpucheck"


@pytest.fixture(scope="module")
def remote():
    r = LocalRemote(Connection(host="local", addr="127.0.0.1", user="root"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def host(remote):
    h = verify.testinfra_host(remote)
    if not stack.has_gpu(h):
        pytest.fail("no NVIDIA GPU on this machine: run tests/gpu/run-on-gpu.sh on the GPU box")
    return h


@pytest.fixture(scope="module")
def facts(remote, host):
    return gather_facts(remote)


def test_the_card_is_in_compats_table(facts):
    gpus, unknown = compat.gpus_from_facts(facts)
    print("GPUs:", [(g.device_id, g.name, g.arch, g.compute) for g in gpus], "unknown:", unknown)
    assert gpus and not unknown, f"not in the table: {unknown}"
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print("nvidia-smi:", smi.strip())
    reported = {line.split(",")[1].strip() for line in smi.strip().splitlines()}
    assert {g.compute for g in gpus} == reported, f"table {gpus} vs nvidia-smi {smi}"


def os_key_of(facts) -> str:
    """This machine's OS, or Ubuntu 24.04 where provision does not support it."""
    supported = {("ubuntu", "22.04"), ("ubuntu", "24.04"), ("debian", "12")}
    return facts.os_key if (facts.os_id, facts.os_version) in supported else "ubuntu-24.04"


def smi(*fields: str) -> list[list[str]]:
    """nvidia-smi's answer for each GPU: one row of the asked fields."""
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [[cell.strip() for cell in line.split(",")] for line in out.strip().splitlines()]


def test_compat_choice_for_this_machine(facts):
    gpus, _ = compat.gpus_from_facts(facts)
    choice = compat.choose(gpus, os_key_of(facts))
    print(compat.describe(choice))
    assert choice.arch == min((g.arch for g in gpus), key=compat.ARCH_ORDER.index)
    assert choice.torch_index.startswith("cu") and choice.cuda


def test_driver_module_loaded_and_matches_nvidia_smi(host):
    driver.verify_module_loaded(host, driver.Settings())


# The user-space libraries' packages: their upstream version is the driver's (580.95.05).
LIBRARY_PACKAGES = ("libnvidia-compute-", "libcuda1", "libnvidia-ml1", "nvidia-utils-")


def test_driver_versions_agree(facts):
    """The kernel's module (/proc/driver/nvidia/version, as the facts read it), nvidia-smi's
    driver_version and dpkg's driver library packages name one driver version."""
    loaded = module_version(facts.nvidia_driver)
    reported = {row[0] for row in smi("driver_version")}
    print("module:", loaded, "nvidia-smi:", reported)
    assert loaded, f"/proc/driver/nvidia/version names no module: {facts.nvidia_driver!r}"
    assert reported == {loaded}, f"module {loaded}, nvidia-smi {reported}: reboot needed"
    libraries = {
        name: re.sub(r"^\d+:", "", pkg.version).split("-")[0]
        for name, pkg in facts.packages.items()
        if pkg.installed and name.startswith(LIBRARY_PACKAGES)
    }
    print("driver library packages:", libraries or "none (a driver not installed by dpkg)")
    for name, version in libraries.items():
        assert version == loaded, f"{name} is {version}, the loaded module {loaded}"


RUNTIMES = ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime")


def wheel_tag() -> str:
    """The index tag of this machine's torch from pip's records, not from what the build
    reports: the local version of its distribution (2.9.1+cu128 → cu128), else, for PyPI's
    untagged CUDA wheels, the version of the CUDA runtime wheel pip installed with it
    (nvidia-cuda-runtime-cu12 12.8.90 → cu128); "" when neither says."""
    tag = importlib.metadata.version("torch").partition("+")[2]
    if tag:
        return tag
    for name in RUNTIMES:
        try:
            major, minor = importlib.metadata.version(name).split(".")[:2]
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
        return f"cu{major}{minor}"
    return ""


def write_marker(tag: str) -> pytorch.Settings:
    """The marker the pytorch step writes, naming `tag` as the planned index."""
    env = Path(pytorch.ENVS) / ENV
    (env / pytorch.MARKER).write_text(json.dumps({"index": tag}))
    return pytorch.Settings(env=ENV)


@pytest.fixture(scope="module")
def torch_env(remote):
    """A venv that sees this machine's torch (--system-site-packages) and the marker the
    pytorch step writes, so the step's own checks run unchanged."""
    import torch

    env = Path(pytorch.ENVS) / ENV
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True)
    print("torch", torch.__version__, "wheel tag", wheel_tag() or "(none)")
    return write_marker(wheel_tag() or "cu" + (torch.version.cuda or "").replace(".", ""))


def test_pytorch_cuda_available(host, torch_env):
    pytorch.verify_cuda_available(host, torch_env)


def test_pytorch_matmul_on_the_gpu(host, torch_env):
    pytorch.verify_gpu_matmul(host, torch_env)


def test_pytorch_cuda_tag_matches(host, torch_env):
    """verify_cuda_tag against the index the wheel's metadata names: it passes, and a marker
    naming another index makes it fail."""
    tag = wheel_tag()
    if not tag.startswith("cu"):
        pytest.skip(f"torch {importlib.metadata.version('torch')} names no CUDA index")
    try:
        pytorch.verify_cuda_tag(host, write_marker(tag))
        with pytest.raises(AssertionError, match=r"torch\.version\.cuda is"):
            pytorch.verify_cuda_tag(host, write_marker("cpu"))
    finally:
        write_marker(tag)


def test_compats_wheels_have_kernels_for_this_card(facts):
    """The index compat chooses for this card carries its kernels: when this machine's torch
    is that build, its arch list holds the compute capability nvidia-smi reports (sm_90 for
    an H100/H200), or PTX of the same major it can JIT from."""
    import torch

    settings = {step.key: step.settings() for step in STEPS}
    chosen = stack.decide(facts, settings) if facts.os_key == os_key_of(facts) else None
    chosen = chosen or compat.choose(compat.gpus_from_facts(facts)[0], os_key_of(facts))
    if wheel_tag() != chosen.torch_index:
        pytest.skip(f"this machine's torch is {wheel_tag() or 'untagged'}, compat chose "
                    f"{chosen.torch_index}")  # fmt: skip
    archs = torch.cuda.get_arch_list()
    for (cap,) in smi("compute_cap"):
        major, minor = cap.split(".")
        ptx = [a for a in archs if a.startswith(f"compute_{major}")]
        assert f"sm_{major}{minor}" in archs or ptx, f"no kernels for {cap} in {archs}"


def test_the_dev_char_read_finds_what_os_stat_finds(host):
    """The containers step's read of NVIDIA device nodes without a /dev/char link (the cause
    of containers losing their GPUs at daemon-reload), against Python's own os.stat of them."""
    import os

    from provision.steps import containers_toolkit

    expected = []
    for path in sorted(Path("/dev").glob("nvidia*")):
        st = path.stat()
        if path.is_char_device():
            link = Path(f"/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
            expected += [] if link.exists() else [str(path)]
    out = subprocess.run(["sh", "-c", containers_toolkit.UNLINKED_READ.command],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    print("device nodes without a /dev/char link:", expected)
    assert sorted(out.split()) == expected


def test_a_container_sees_the_gpu(host):
    """containers.nvidia's GPU check: a container asks for the GPUs and runs nvidia-smi -L."""
    import shutil

    from provision.steps import containers

    if not (shutil.which("docker") and shutil.which("nvidia-ctk")):
        pytest.skip("no Docker with NVIDIA's container toolkit on this GPU machine (it is not "
                    "provisioned by this tool): the container GPU check needs both")  # fmt: skip
    containers.verify_gpu_in_container(host, containers.Settings(enabled=True, nvidia=True))
