"""How to reach one host: address, port, user, key, known_hosts, sudo password (from the
inventory's ansible_* and provision_* vars). Plain data: the transports (remote.py over SSH,
local.py on the box) take it, and so do sync, guard and the ssh-config writer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from provision import shell


@dataclass(frozen=True)
class Connection:
    """How to reach one host (from the inventory's ansible_* and provision_* vars)."""

    host: str  # inventory name, used in every message
    addr: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    local: bool = False
    known_hosts: str | None = None  # a known_hosts file instead of ~/.ssh/known_hosts
    accept_new_host_key: bool = False
    connect_timeout_s: int = 15
    sudo_password: shell.Secret | None = None
    identities_only: bool = False  # only the named key: no agent, no ~/.ssh/id_* (lockout checks)
    # "type base64" of the keys already proven for this host (same sshd, new port or address):
    # accepted and recorded in known_hosts, any other unknown key is still refused.
    trusted_keys: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """How messages name the endpoint: user@addr:port, or "local"."""
        user = f"{self.user}@" if self.user else ""
        return "local" if self.local else f"{user}{self.addr}:{self.port}"

    @property
    def known_hosts_path(self) -> Path:
        """The known_hosts file this host's key is checked against (~/.ssh/known_hosts unless
        the inventory names another)."""
        return Path(os.path.expanduser(self.known_hosts or "~/.ssh/known_hosts"))
