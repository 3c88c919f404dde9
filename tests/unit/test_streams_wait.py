"""streams.wait: a command's end is seen when it happens, not at the next fixed sleep.

The channel stand-in has what Paramiko's has for waiting (fileno(): a pipe made readable when
data or EOF arrives; status_event: set with the exit status); the bounds are the clock's.
"""

from __future__ import annotations

import os
import threading
import time

from provision import streams


class PipeChannel:
    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        self.status_event = threading.Event()
        self.eof_received = False

    def fileno(self) -> int:
        return self.read_end


def later(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_wait_returns_when_data_arrives_not_at_the_timeout():
    channel = PipeChannel()
    later(0.05, lambda: os.write(channel.write_end, b"x"))
    start = time.monotonic()
    streams.wait(channel, 5.0)
    assert 0.04 <= time.monotonic() - start < 2.0


def test_after_eof_it_waits_for_the_exit_status():
    channel = PipeChannel()
    channel.eof_received = True
    os.write(channel.write_end, b"x")  # Paramiko keeps the pipe readable from EOF on
    later(0.05, channel.status_event.set)
    start = time.monotonic()
    streams.wait(channel, 5.0)
    assert 0.04 <= time.monotonic() - start < 2.0  # neither spun nor slept the whole timeout


def test_with_nothing_arriving_it_sleeps_its_timeout():
    channel = PipeChannel()
    start = time.monotonic()
    streams.wait(channel, 0.1)
    assert time.monotonic() - start >= 0.09


def test_a_channel_without_a_pipe_sleeps():
    start = time.monotonic()
    streams.wait(object(), 0.05)
    assert time.monotonic() - start >= 0.045
