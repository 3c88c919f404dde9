"""What the tool knows about a host, read without changing it.

`host` holds the facts every step needs, gathered in one round trip at connect (`Facts`),
and `support` whether provision may work on the host at all;
`reads` is how a step declares the further reads its check needs, which the runner batches
into one more round trip. Parsers are pure functions, tested on recorded outputs.
"""

from provision.durations import human_duration
from provision.facts.host import (
    GATHER_SCRIPT,
    Facts,
    Package,
    PciDevice,
    parse_facts,
    split_sections,
)
from provision.facts.reads import Read
from provision.facts.support import check_consistent, check_supported, package_system_os, warnings

__all__ = [
    "GATHER_SCRIPT",
    "Facts",
    "Package",
    "PciDevice",
    "Read",
    "check_consistent",
    "check_supported",
    "human_duration",
    "package_system_os",
    "parse_facts",
    "split_sections",
    "warnings",
]
