"""`provision status --watch`: one connection per host kept open between refreshes, every host
gathered in parallel, a lost connection retried on the next refresh."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from provision.errors import ConnectError, ProvisionError
from provision.status.read import HostStatus, gather


class Poller:
    """Keeps one connection per host open between refreshes; gathers all hosts in parallel."""

    def __init__(self, configs, parallel: int = 16, connect=None) -> None:
        if connect is None:
            from provision.remote import connect  # Fabric is imported only to connect
        self.configs = list(configs)
        self.connect = connect
        self.remotes: dict[str, object] = {}
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(self.configs))))

    def _one(self, hc) -> HostStatus:
        remote = self.remotes.get(hc.name)
        try:
            if remote is None:
                remote = self.connect(hc.connection)
                self.remotes[hc.name] = remote
            return gather(hc.name, remote)
        except ProvisionError as exc:
            if isinstance(exc, ConnectError) and remote is not None:
                remote.close()
                self.remotes.pop(hc.name, None)  # reconnect on the next refresh
            return HostStatus(hc.name, error=exc.message.removeprefix(f"{hc.name}: "))

    def refresh(self) -> list[HostStatus]:
        """Every host's status now, in the configs' order."""
        return list(self.pool.map(self._one, self.configs))

    def close(self) -> None:
        """Close every connection and stop the workers."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for remote in self.remotes.values():
            remote.close()
        self.remotes.clear()
