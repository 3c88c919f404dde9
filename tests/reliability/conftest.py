"""Reliability suite wiring: connection tripwires and the figures printed at the end.

Cases are marked `@pytest.mark.reliability("<figure>")`; the summary line counts them per
figure, e.g. `bad inputs 52/52 clear, secrets 0 leaks`. It is printed only when at least one
marked case ran (nothing when the suite was deselected).
"""

from __future__ import annotations

import socket
import threading

import pytest

# The integration tier's throw-away sshd on 127.0.0.1, for the round trips over real SSH.
from integration.conftest import sshd  # noqa: F401

# figure -> how the summary line shows it
FIGURES = {
    "faults": "faults {passed}/{total} recovered",
    "lockout": "lockout {passed}/{total} recovered",
    "bad_input": "bad inputs {passed}/{total} clear",
    "secrets": "secrets {failed} leaks",
}


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Tag each phase's report with the case's figure, for the summary."""
    report = yield
    marker = item.get_closest_marker("reliability")
    if marker is not None and marker.args:
        report.user_properties.append(("reliability", marker.args[0]))
    return report


def figures(stats: dict) -> dict[str, dict[str, int]]:
    """Per figure: total, passed, failed, skipped cases (a case counts once)."""
    outcome: dict[tuple[str, str], str] = {}
    for reports in stats.values():
        for report in reports:
            figure = dict(getattr(report, "user_properties", ())).get("reliability")
            if figure is None or getattr(report, "when", None) not in ("setup", "call", "teardown"):
                continue
            key = (figure, report.nodeid)
            before = outcome.get(key)
            if report.failed:
                outcome[key] = "failed"
            elif report.skipped and before != "failed":
                outcome[key] = "skipped"
            elif report.passed and report.when == "call" and before is None:
                outcome[key] = "passed"
    counts: dict[str, dict[str, int]] = {}
    for (figure, _nodeid), result in outcome.items():
        c = counts.setdefault(figure, {"total": 0, "passed": 0, "failed": 0, "skipped": 0})
        c["total"] += 1
        c[result] += 1
    return counts


def summary_line(counts: dict[str, dict[str, int]]) -> str:
    """`bad inputs 52/52 clear, secrets 0 leaks`; skipped cases are named, never hidden."""
    parts = []
    for figure in [*FIGURES, *sorted(set(counts) - set(FIGURES))]:
        if figure not in counts:
            continue
        c = counts[figure]
        text = FIGURES.get(figure, figure + " {passed}/{total} passed").format(**c)
        if c["skipped"]:
            text += f" ({c['skipped']} of {c['total']} not run)"
        parts.append(text)
    return ", ".join(parts)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """The reliability figures, after every other summary (nothing if no case ran)."""
    counts = figures(terminalreporter.stats)
    if counts:
        terminalreporter.write_line(summary_line(counts))
