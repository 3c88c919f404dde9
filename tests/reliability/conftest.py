"""Reliability suite wiring: the listener and tripwires that prove no connection is opened.

The figures (`faults 14/14 recovered, ...`) are counted in tests/conftest.py, so that a case
of another tier (the VM's network rollback) can count too.
"""

from __future__ import annotations

import socket
import threading

import pytest

# The integration tier's throw-away sshd on 127.0.0.1, for the round trips over real SSH.
from integration.conftest import sshd  # noqa: F401


class Listener:
    """A TCP socket on 127.0.0.1 that counts the connections made to it (and drops them)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


@pytest.fixture
def listener():
    """Where the corpus' inventories point: any SSH attempt shows up as an accepted connection."""
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def tripwire(monkeypatch):
    """In-process: opening a connection (provision's Remote or paramiko itself) is recorded
    and refused, so a case that got past validation is caught even without the listener."""
    import paramiko

    from provision import local, remote
    from provision.errors import ConnectError

    opened: list[str] = []

    def refuse_remote(self):
        opened.append(self.connection.host)
        raise ConnectError(f"tripwire: a connection was opened to {self.connection.host}")

    def refuse_paramiko(self, hostname, *args, **kwargs):
        opened.append(str(hostname))
        raise ConnectError(f"tripwire: paramiko connected to {hostname}")

    monkeypatch.setattr(remote.SSHRemote, "open", refuse_remote)
    monkeypatch.setattr(local.LocalRemote, "open", refuse_remote)
    monkeypatch.setattr(paramiko.SSHClient, "connect", refuse_paramiko)
    return opened


class ResolverTripwire(list):
    """Every host name looked up in-process (a list of names); the lookup itself fails."""


@pytest.fixture
def resolver(monkeypatch):
    """In-process DNS tripwire: socket.getaddrinfo / gethostbyname record the name and raise,
    so a bad address that reached the resolver (a lookup is a packet sent) fails the case even
    though no TCP connection followed."""
    looked_up = ResolverTripwire()

    def refuse(host, *args, **kwargs):
        looked_up.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, f"tripwire: DNS lookup of {host}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket, "gethostbyname_ex", refuse)
    return looked_up
