"""ufw, read one way for every step that opens a port in it (ssh, tensorboard): the declared
read of `ufw status` and its pure parser. Shared here so no step imports another."""

from __future__ import annotations

from provision.facts.reads import Read

# `ufw status` needs root; on a host without ufw it exits 127 (an answer, not a failure).
UFW_STATUS = Read("ufw status", sudo=True)


def ufw_allows(status: str, rule: str) -> bool:
    """Whether `ufw status` output has an ALLOW line for the rule (e.g. 22/tcp)."""
    return any(line.split()[:2] == [rule, "ALLOW"] for line in status.splitlines())


def ufw_active(status: str) -> bool:
    """Whether `ufw status` says the firewall is on."""
    return "Status: active" in status
