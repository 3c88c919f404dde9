"""HostConfig: everything needed to provision one host, as plain data.

Apart from config.py, which builds it and so imports every step's Settings: a module that only
passes a HostConfig along (the runner, the executor, verify, ssh-config) can import it from here
without that weight, and without an import path back through the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provision.connection import Connection


@dataclass(frozen=True)
class HostConfig:
    """Everything needed to provision one host."""

    name: str
    connection: Connection
    settings: dict[str, Any]  # step key -> that step's Settings instance
    sources: dict[str, str]  # "step.field" or host var -> where the value came from
    allow_reboot: bool = True
    reboot_timeout_s: int = 900
    mac: str | None = None  # wake-on-LAN address (provision_mac)
