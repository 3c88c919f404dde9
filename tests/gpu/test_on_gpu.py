"""The GPU-only checks, on a machine with an NVIDIA GPU, through a local connection (no SSH):
the card is in compat's table with the right architecture, the driver check (module loaded and
matching nvidia-smi), and the pytorch checks (CUDA available, a matmul on the GPU) against an
environment that sees the machine's own torch. Marked `gpu` (deselected by default); run by
tests/gpu/run-on-gpu.sh. Without a GPU every test fails with that reason: this file exists to
be run where there is one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provision import compat, verify
from provision.local import LocalRemote
from provision.remote import Connection
from provision.runner import gather_facts
from provision.steps import driver, pytorch

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
    if not driver.has_gpu(h):
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


def test_compat_choice_for_this_machine(facts):
    gpus, _ = compat.gpus_from_facts(facts)
    os_key = (
        facts.os_key
        if (facts.os_id, facts.os_version)
        in {("ubuntu", "22.04"), ("ubuntu", "24.04"), ("debian", "12")}
        else "ubuntu-24.04"
    )
    choice = compat.choose(gpus, os_key)
    print(compat.describe(choice))
    assert choice.arch == min((g.arch for g in gpus), key=compat.ARCH_ORDER.index)
    assert choice.torch_index.startswith("cu") and choice.cuda


def test_driver_module_loaded_and_matches_nvidia_smi(host):
    driver.verify_module_loaded(host, driver.Settings())


def test_driver_versions_agree_in_facts(facts):
    loaded = driver.loaded_version(facts)
    print("loaded module:", loaded)
    assert loaded, "/proc/driver/nvidia/version has no version"


@pytest.fixture(scope="module")
def torch_env(remote):
    """A venv that sees this machine's torch (--system-site-packages) and the marker the
    pytorch step writes, so the step's own checks run unchanged."""
    import torch

    tag = "cu" + torch.version.cuda.replace(".", "") if torch.version.cuda else "cpu"
    env = Path(pytorch.ENVS) / ENV
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True)
    (env / pytorch.MARKER).write_text(json.dumps({"index": tag, "torch": torch.__version__}))
    print("torch", torch.__version__, "tag", tag)
    return pytorch.Settings(env=ENV)


def test_pytorch_cuda_available(host, torch_env):
    pytorch.verify_cuda_available(host, torch_env)


def test_pytorch_matmul_on_the_gpu(host, torch_env):
    pytorch.verify_gpu_matmul(host, torch_env)


def test_pytorch_cuda_tag_matches(host, torch_env):
    pytorch.verify_cuda_tag(host, torch_env)
