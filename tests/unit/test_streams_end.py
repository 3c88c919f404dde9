"""streams.drive: a command has ended at EOF with its exit status, not at the status alone.

sshd can send exit-status before the last of the output: it reaps the command while the
command's pipe still holds data, and sends EOF only after all of it (RFC 4254 6.10 allows the
status at any time before close). The stand-in plays exactly that order, on a clock.
"""

from __future__ import annotations

import threading
import time

from provision import streams


class LateOutputChannel:
    """The exit status is ready at once; the output and then EOF arrive a little later."""

    def __init__(self, data: bytes, after_s: float) -> None:
        self.pending = b""
        self.eof_received = False
        self.closed = False
        self.lock = threading.Lock()
        timer = threading.Timer(after_s, self._arrive, (data,))
        timer.daemon = True  # never holds the test run open
        timer.start()

    def _arrive(self, data: bytes) -> None:
        with self.lock:
            self.pending += data
            self.eof_received = True

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return 0

    def recv_ready(self) -> bool:
        with self.lock:
            return bool(self.pending)

    def recv(self, n: int) -> bytes:
        with self.lock:
            chunk, self.pending = self.pending[:n], self.pending[n:]
            return chunk

    def recv_stderr_ready(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def test_output_after_the_exit_status_is_kept():
    channel = LateOutputChannel(b"@@facts\nos_id=debian\n@@end\n", after_s=0.1)
    status, out, err = streams.drive(channel, 5.0, None, stoppable=True, watch=False)
    assert (status, out, err) == (0, "@@facts\nos_id=debian\n@@end\n", "")


def test_it_still_ends_at_the_timeout_without_eof():
    channel = LateOutputChannel(b"", after_s=60)
    start = time.monotonic()
    status, _out, err = streams.drive(channel, 0.2, None, stoppable=True, watch=False)
    assert status == 124 and "timed out" in err
    assert time.monotonic() - start < 5
