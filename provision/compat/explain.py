"""A `Choice` for people (`describe`) and for programs (`to_json`).

What `provision compat` prints: the cards, driver, CUDA and wheels chosen, then every reason.
Apart from the choice so that the words people read can change without touching the decision,
and the JSON keys that scripts rely on are written down once.
"""

from __future__ import annotations

from provision.compat.card_table import NVIDIA_VENDOR
from provision.compat.model import Choice, Gpu
from provision.compat.tables import ARCH_TITLES, SOURCE_TITLES, WHEEL_URL


def _gpu_line(gpu: Gpu) -> str:
    """One card as the GPUs: lines show it: name, PCI id, architecture, compute, memory."""
    vram = f"{gpu.vram_gb:g} GB"
    return (
        f"{gpu.name} ({NVIDIA_VENDOR}:{gpu.device_id}): {ARCH_TITLES[gpu.arch]}, "
        f"compute {gpu.compute}, {vram}"
    )


def describe(choice: Choice) -> str:
    """Several lines for people: the cards, driver, CUDA, torch, warnings, then why."""
    lines = [f"OS:       {choice.os_key}"]
    if choice.gpus:
        for number, gpu in enumerate(choice.gpus):
            lines.append(f"{'GPUs:' if number == 0 else '':<10}{_gpu_line(gpu)}")
    elif choice.arch:
        lines.append(f"GPUs:     none known; chosen for {ARCH_TITLES[choice.arch]}")
    else:
        lines.append("GPUs:     none found; chosen for a current card (Turing or newer)")
    lines.append(
        f"driver:   {choice.driver_branch}, {choice.flavour} kernel modules, "
        f"from {SOURCE_TITLES[choice.source]}"
    )
    lines.append(f"CUDA:     {choice.cuda or 'none (cpu wheels)'}")
    torch = f"index {choice.torch_index} ({WHEEL_URL.format(tag=choice.torch_index)})"
    if choice.torch_version:
        torch += f", torch {choice.torch_version}"
    if choice.torch_max:
        torch += f", torch <= {choice.torch_max}"
    lines.append(f"PyTorch:  {torch}")
    lines.extend(f"warning:  {text}" for text in choice.warnings)
    lines.append("why:")
    lines.extend(f"  - {reason}" for reason in choice.reasons)
    return "\n".join(lines)


def to_json(choice: Choice) -> dict[str, object]:
    """A JSON-friendly view of the choice (`provision compat --json`)."""
    return {
        "os": choice.os_key,
        "gpus": [
            {
                "device_id": f"{NVIDIA_VENDOR}:{gpu.device_id}",
                "name": gpu.name,
                "arch": gpu.arch,
                "compute": gpu.compute,
                "vram_gb": gpu.vram_gb,
            }
            for gpu in choice.gpus
        ],
        "arch": choice.arch,
        "driver": {
            "branch": choice.driver_branch,
            "flavour": choice.flavour,
            "source": choice.source,
        },
        "cuda": choice.cuda,
        "pytorch": {
            "index": choice.torch_index,
            "index_url": WHEEL_URL.format(tag=choice.torch_index),
            "max": choice.torch_max,
            "version": choice.torch_version,
        },
        "warnings": list(choice.warnings),
        "reasons": list(choice.reasons),
    }
