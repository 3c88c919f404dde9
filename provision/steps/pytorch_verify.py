"""pytorch's verify checks: behaviour through testinfra (torch imports, its CUDA build is the
planned index's, and on a GPU host CUDA is available and a matmul runs).

Each check takes a testinfra host and the pytorch step's Settings (provision.steps.pytorch
imports this module for its STEP, so this one does not import it back).
"""

from __future__ import annotations

import json

from provision import shell, stack
from provision.errors import Skip
from provision.steps.pytorch_install import ENVS, MARKER

NO_GPU = "no NVIDIA GPU on this host (no PCI display device of vendor 10de)"
GPU_CHECK = """\
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
x = torch.randn(512, 512, device="cuda")
y = (x @ x).sum().item()
torch.cuda.synchronize()
print(torch.cuda.get_device_name(0), y == y)
"""


def cuda_of_index(tag: str) -> str | None:
    """torch.version.cuda that wheels from this index report: cpu → None, cu126 → 12.6."""
    if tag == "cpu":
        return None
    digits = tag[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def _python(s) -> str:
    if not s.enabled:
        raise Skip("pytorch.enabled is off")
    return f"{ENVS}/{s.env}/bin/python"


def _marker(host, s) -> dict:
    out = host.run(shell.cmd("cat", "--", f"{ENVS}/{s.env}/{MARKER}"))
    assert out.rc == 0, f"{ENVS}/{s.env}/{MARKER} is missing: the pytorch step has not run"
    return json.loads(out.stdout)


def _gpu(host) -> None:
    """Skip without a GPU; fail when nvidia-smi is there but cannot list the GPUs."""
    if not stack.has_gpu(host):
        raise Skip(NO_GPU)
    out = host.run("nvidia-smi -L")
    assert out.rc == 0 and "GPU" in out.stdout, (
        f"nvidia-smi -L failed (driver not loaded, or a reboot is needed): "
        f"{(out.stdout + out.stderr).strip()[-300:]}"
    )


def verify_import(host, s) -> None:
    """`import torch` works in the environment"""
    python = _python(s)
    out = host.run(shell.cmd(python, "-c", "import torch; print(torch.__version__)"))
    assert out.rc == 0, f"import torch failed: {out.stderr.strip()[-400:]}"


def build_of(version: str, cuda: str) -> str:
    """The build torch reports: its local version label (2.13.0+cu126 → cu126), else its CUDA
    (torch.version.cuda 12.8 → cu128, None → cpu; PyPI's and arm64 CPU wheels have no label)."""
    if "+" in version:
        return version.split("+", 1)[1]
    return "cpu" if cuda in ("", "None") else "cu" + cuda.replace(".", "")


def verify_cuda_tag(host, s) -> None:
    """torch's build (its +cpu/+cuXYZ label and torch.version.cuda) is the chosen one"""
    python = _python(s)
    tag = s.index or _marker(host, s)["index"]
    out = host.run(
        shell.cmd(python, "-c", "import torch; print(torch.__version__, torch.version.cuda)")
    )
    assert out.rc == 0, f"import torch failed: {out.stderr.strip()[-400:]}"
    version, _, cuda = out.stdout.strip().rpartition(" ")
    have, want = build_of(version, cuda), cuda_of_index(tag)
    assert have == tag and cuda == str(want), (
        f"torch {version} is the {have} build (torch.version.cuda is {cuda}), but the {tag} build "
        f"was chosen (its torch.version.cuda is {want}): another source served it; "
        "`provision pytorch` replaces it"
    )


def _gpu_python(host, s) -> str:
    python = _python(s)
    _gpu(host)
    if _marker(host, s)["index"] == "cpu":
        raise Skip("the environment holds CPU-only wheels (pytorch index cpu)")
    return python


def verify_cuda_available(host, s) -> None:
    """torch.cuda.is_available() on the GPU host"""
    python = _gpu_python(host, s)
    out = host.run(shell.cmd(python, "-c", "import torch; print(torch.cuda.is_available())"))
    assert out.stdout.strip() == "True", (
        f"torch.cuda.is_available() is not True: {(out.stdout + out.stderr).strip()[-400:]}"
    )


def verify_gpu_matmul(host, s) -> None:
    """a small matmul runs on the GPU"""
    python = _gpu_python(host, s)
    out = host.run(shell.cmd(python, "-c", GPU_CHECK))
    assert out.rc == 0, f"GPU matmul failed: {(out.stdout + out.stderr).strip()[-400:]}"
    assert out.stdout.strip().endswith("True"), f"GPU matmul gave NaN: {out.stdout.strip()}"
