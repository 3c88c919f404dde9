"""Host-key policies for Paramiko (duck-typed: no Paramiko import here).

Fabric trusts any unknown host key; provision refuses it unless the user accepted new keys
(OpenSSH's accept-new) or the key was already proven for the same host at another port or
address (after a confirmed move).
"""

from __future__ import annotations

from pathlib import Path


def known_name(addr: str, port: int) -> str:
    """The name known_hosts files use: addr, or [addr]:port off port 22."""
    return addr if port == 22 else f"[{addr}]:{port}"


class UnknownHostKey(Exception):
    """The host showed a key that known_hosts does not vouch for."""

    def __init__(self, key_type: str) -> None:
        super().__init__(key_type)
        self.key_type = key_type


class RejectPolicy:
    """Paramiko policy: refuse hosts whose key is not in known_hosts (Fabric would add it),
    except the one key already proven for this host at another port or address."""

    def __init__(self, known_hosts: Path, trusted_keys: tuple[str, ...] = ()) -> None:
        self.known_hosts = known_hosts
        self.trusted_keys = trusted_keys

    def missing_host_key(self, client, hostname, key) -> None:
        if f"{key.get_name()} {key.get_base64()}" in self.trusted_keys:
            AcceptNewPolicy(self.known_hosts).missing_host_key(client, hostname, key)
            return
        raise UnknownHostKey(key.get_name())


class AcceptNewPolicy:
    """Paramiko policy like OpenSSH's accept-new: trust and record a key seen the first time."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.known_hosts.open("a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
