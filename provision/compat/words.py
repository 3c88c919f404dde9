"""How compat names things in the reasons and refusals it writes for people.

Every part of the choice says "Pascal (compute 6.1)" and lists values the same way; one place
keeps those words alike across the driver, wheel and toolkit messages.
"""

from __future__ import annotations

from collections.abc import Iterable

from provision.compat.tables import ARCH_COMPUTES, ARCH_TITLES


def label(arch: str, compute: dict[str, str]) -> str:
    """ "Pascal (compute 6.1)": the architecture with the compute capability found for it."""
    return f"{ARCH_TITLES[arch]} (compute {compute.get(arch, ARCH_COMPUTES[arch][0])})"


def listing(items: Iterable[object]) -> str:
    """Items joined with commas, as the messages list them."""
    return ", ".join(str(item) for item in items)
