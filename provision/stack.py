"""The GPU-stack decision: one compat choice per host, shared by driver, cuda, pytorch, doctor
and the CLI.

The user's explicit wishes come from three steps' settings (driver's branch, flavour and
source, cuda's version, pytorch's index and version); the host's GPUs and OS come from its
facts. `decide` builds that request once, asks compat once, and keeps the answer (or compat's
refusal) in the facts' memo: the facts are frozen, so a decision holds exactly as long as the
facts it was made from, and re-gathered facts start with none. No step imports another to
reach the decision, and no caller rebuilds the request by hand.

Also here: what a testinfra host says about its NVIDIA PCI functions, for the verify checks of
the GPU steps (the same sysfs read the facts make: provision.facts.gpu).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provision import compat
from provision.errors import ProvisionError
from provision.facts import Facts
from provision.facts import gpu as gpu_facts
from provision.step import Context

MEMO_KEY = "gpu-stack"


def request_of(settings_by_key: Mapping[str, Any]) -> compat.Request:
    """The user's explicit GPU-stack choices from a host's settings, by step key (`driver`,
    `cuda`, `pytorch`); empty or 0 lets compat choose."""
    driver, cuda = settings_by_key["driver"], settings_by_key["cuda"]
    torch = settings_by_key["pytorch"]
    return compat.Request(
        branch=driver.branch,
        flavour=driver.flavour,
        source=driver.source,
        cuda=cuda.version,
        torch_index=torch.index,
        torch_version=torch.version,
    )


def decide(facts: Facts, settings_by_key: Mapping[str, Any]) -> compat.Choice:
    """compat's choice for this host's GPUs and OS and the user's request, made once per facts
    (and request): later calls return the same Choice, or raise the same Incompatible."""
    request = request_of(settings_by_key)
    memo = facts.memo.setdefault(MEMO_KEY, {})
    # Each facts object has its own memo (dataclasses.replace gives a copy a fresh one); the
    # key names the facts object too, so a decision can never serve other facts.
    key = (id(facts), request)
    made = memo.get(key)
    if made is None or made[0] is not facts:
        try:
            gpus, _unknown = compat.gpus_from_facts(facts)
            made = (facts, compat.choose(gpus, facts.os_key, request, cpu=facts.arch), None)
        except ProvisionError as exc:
            made = (facts, None, exc)
        memo[key] = made
    _facts, choice, refusal = made
    if refusal is not None:
        raise refusal
    return choice


def decision(ctx: Context) -> compat.Choice:
    """The decision for the host a step's check (or reads) looks at."""
    return decide(ctx.facts, ctx.settings_by_key)


def try_decision(ctx: Context) -> compat.Choice | None:
    """The decision, or None where compat refuses (reads are declared before preflight, which
    reports the refusal)."""
    try:
        return decision(ctx)
    except ProvisionError:
        return None


def loaded_version(facts: Facts) -> str:
    """The loaded NVIDIA module's version ('' when none is loaded)."""
    return gpu_facts.module_version(facts.nvidia_driver)


# --- testinfra hosts (verify) ----------------------------------------------------------------


def host_pci_classes(host) -> list[str]:
    """The PCI classes of a testinfra host's NVIDIA functions (facts.gpu.PCI_SCRIPT)."""
    return [row[2] for row in gpu_facts.parse_pci_lines(host.run(gpu_facts.PCI_SCRIPT).stdout)]


def has_gpu(host) -> bool:
    """Whether the host has an NVIDIA display-class PCI device (a GPU, not its audio)."""
    return any(gpu_facts.is_display(c) for c in host_pci_classes(host))


def has_nvswitch(host) -> bool:
    """Whether the host has an NVIDIA PCI bridge (an NVSwitch of an HGX/DGX board)."""
    return any(gpu_facts.is_nvswitch(c) for c in host_pci_classes(host))
