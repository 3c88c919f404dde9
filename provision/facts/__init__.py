"""What the tool knows about a host, read without changing it.

`host` holds the facts every step needs, gathered in one round trip at connect (`Facts`);
`reads` is how a step declares the further reads its check needs, which the runner batches
into one more round trip. Parsers are pure functions, tested on recorded outputs.
"""

from provision.facts.host import (
    GATHER_SCRIPT,
    Facts,
    Package,
    PciDevice,
    check_supported,
    human_duration,
    parse_facts,
    split_sections,
    warnings,
)
from provision.facts.reads import Read

__all__ = [
    "GATHER_SCRIPT",
    "Facts",
    "Package",
    "PciDevice",
    "Read",
    "check_supported",
    "human_duration",
    "parse_facts",
    "split_sections",
    "warnings",
]
