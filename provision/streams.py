"""Commands we talk to while they run (hostlock.Stream): an SSH channel or a local process.

The channel is Paramiko's, opened by remote.py; this module only calls its methods (and builds
sshd's "signal" request, which Paramiko lacks). Waits wake as soon as data, EOF or the exit
status arrives (select on the channel's pipe, or its status event), and at least every 20-50 ms
so Ctrl-C lands at once. (A fixed sleep instead cost ~45 ms of every no-op run: each command
ended, on average, half a sleep before it was noticed.)
"""

from __future__ import annotations

import codecs
import contextlib
import select
import subprocess
import time

from provision import interrupt


def wait(channel, timeout_s: float) -> None:
    """Sleep up to timeout_s, waking early when the channel has data, EOF or its exit status.

    Paramiko's channel.fileno() is a pipe it makes readable on stdout/stderr data and keeps
    readable from EOF on; after EOF only the exit status is awaited (its status_event)."""
    if timeout_s <= 0:
        return
    fileno = getattr(channel, "fileno", None)
    status = getattr(channel, "status_event", None)
    if fileno is None or status is None:  # not a Paramiko channel (the tests' fakes)
        time.sleep(timeout_s)
        return
    if getattr(channel, "eof_received", False):
        status.wait(timeout_s)
        return
    with contextlib.suppress(OSError, ValueError):  # closed meanwhile: the loop sees it
        select.select([fileno()], [], [], timeout_s)


class _Lines:
    """Splits received text into lines."""

    def __init__(self) -> None:
        self.buffer = ""

    def pop(self) -> str | None:
        if "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            return line.rstrip("\r")
        return None


class ChannelStream(_Lines):
    """A Paramiko channel running one command."""

    def __init__(self, channel) -> None:
        super().__init__()
        self.channel = channel
        self.stderr = ""

    def readline(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.pop()
            if line is not None:
                return line
            ch = self.channel
            if ch.recv_stderr_ready():
                self.stderr += ch.recv_stderr(65536).decode(errors="replace")
            if ch.recv_ready():
                data = ch.recv(65536)
                if not data:
                    return self._end()
                self.buffer += data.decode(errors="replace")
                continue
            if ch.closed or ch.eof_received:  # EOF follows the output (not the exit status)
                if ch.recv_ready():
                    continue
                return self._end()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            wait(ch, min(0.05, left))

    def _end(self) -> str:
        rest, self.buffer = self.buffer, ""
        return rest

    def send(self, text: str) -> None:
        self.channel.sendall(text.encode())

    def alive(self) -> bool:
        transport = self.channel.get_transport()
        return not self.channel.closed and transport is not None and transport.is_active()

    def close(self) -> str:
        with contextlib.suppress(Exception):
            if self.channel.recv_stderr_ready():
                self.stderr += self.channel.recv_stderr(65536).decode(errors="replace")
        with contextlib.suppress(Exception):
            self.channel.shutdown_write()
        with contextlib.suppress(Exception):
            self.channel.close()
        return self.stderr


class ProcessStream(_Lines):
    """A local process (ansible_connection=local)."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.proc = subprocess.Popen(  # the command was quoted by shell.py
            command,
            shell=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def readline(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.pop()
            if line is not None:
                return line
            wait = max(0.0, min(0.05, deadline - time.monotonic()))
            ready, _, _ = select.select([self.proc.stdout], [], [], wait)
            if ready:
                data = self.proc.stdout.read1(65536)
                if not data:
                    rest, self.buffer = self.buffer, ""
                    return rest
                self.buffer += data.decode(errors="replace")
            elif time.monotonic() >= deadline:
                return None

    def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> str:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")


class _Sink:
    """Collects a channel's bytes and hands complete lines to a callback."""

    def __init__(self, on_line) -> None:
        self.data = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial = ""
        self.on_line = on_line

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if self.on_line:
            self.partial += self.decoder.decode(chunk)
            *lines, self.partial = self.partial.split("\n")
            for line in lines:
                self.on_line(line.rstrip("\r"))

    def text(self) -> str:
        return self.data.decode(errors="replace")


def drive(
    channel,
    timeout_s: float | None,
    on_line,
    stoppable: bool,
    watch: bool = True,
    stop=lambda channel: channel.close(),
) -> tuple[int, str, str]:
    """Wait for the command on an exec'd channel: (exit status, stdout, stderr); 124 on
    timeout, -1 when the channel closed without a status. Polls, so a signal lands at once:
    on Interrupted a stoppable command is stopped (`stop`: the transport signals it and
    closes its channel); any other is waited for (apt, dpkg), then Interrupted is raised."""
    out, err = _Sink(on_line), _Sink(on_line)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    interrupted: interrupt.Interrupted | None = None
    while True:
        try:
            if watch and interrupted is None and interrupt.requested():
                raise interrupt.Interrupted(interrupt.state.signum)
            busy = False
            if channel.recv_ready():
                out.feed(channel.recv(65536))
                busy = True
            if channel.recv_stderr_ready():
                err.feed(channel.recv_stderr(65536))
                busy = True
            if busy:
                continue
            # Done at EOF with the status, or at close: sshd may send the exit status before
            # the last of the output (it reaps the command while its pipe still holds data),
            # and EOF comes only after all of it.
            ended = channel.exit_status_ready() and getattr(channel, "eof_received", True)
            if ended or channel.closed:
                if channel.recv_ready() or channel.recv_stderr_ready():
                    continue
                break
            if deadline is not None and time.monotonic() > deadline:
                channel.close()
                return 124, out.text(), err.text() + f"\nprovision: timed out after {timeout_s}s"
            wait(channel, 0.02)
        except interrupt.Interrupted as exc:
            if not stoppable:
                interrupted = exc  # apt/dpkg: keep waiting, raise when it ended
                continue
            stop(channel)
            raise
    if interrupted is not None:
        raise interrupted
    status = channel.recv_exit_status() if channel.exit_status_ready() else -1
    return status, out.text(), err.text()
