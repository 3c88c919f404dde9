"""tests/hosts/delay.py, the user-space delay line (this kernel has no netem): loopback only.

Expectations come from the clock and the bytes: a round trip through the line takes at least
twice the one-way delay, bytes come back identical and in order, a rate cap bounds the time
from below, EOF reaches the other side, and nothing is left listening or open afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
import time

import pytest
from delay import Line

SLACK_S = 0.15  # these machines are noisy: a generous upper bound


class Echo(socketserver.BaseRequestHandler):
    """Echo until EOF, then half-close back (or, with the mode "count", answer the byte count
    once the client half-closed)."""

    def handle(self) -> None:
        total = 0
        while data := self.request.recv(65536):
            total += len(data)
            if self.server.mode == "echo":
                self.request.sendall(data)
        if self.server.mode == "count":
            self.request.sendall(f"{total}\n".encode())
        self.server.eofs += 1
        self.request.shutdown(socket.SHUT_WR)


@pytest.fixture
def echo():
    def make(mode: str = "echo"):
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
        server.daemon_threads = True
        server.mode, server.eofs = mode, 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    servers: list = []
    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        data = sock.recv(min(65536, size - got))
        assert data, f"EOF after {got} of {size} bytes"
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_round_trip_takes_twice_the_one_way_delay(echo):
    server = echo()
    one_way = 0.05
    with (
        Line(server.server_address, one_way_s=one_way) as line,
        socket.create_connection(("127.0.0.1", line.port), timeout=5) as sock,
    ):
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"  # the first also waits for the handshake
        rtts = []
        for _ in range(3):
            start = time.perf_counter()
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
            rtts.append(time.perf_counter() - start)
    assert min(rtts) >= 2 * one_way
    assert min(rtts) <= 2 * one_way + SLACK_S


def test_the_first_exchange_pays_the_handshake_round_trip_too(echo):
    server = echo()
    one_way = 0.05
    with Line(server.server_address, one_way_s=one_way) as line:
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", line.port), timeout=5) as sock:
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
        first = time.perf_counter() - start
    assert 4 * one_way <= first <= 4 * one_way + SLACK_S


def test_delays_are_not_serialized(echo):
    """Twenty chunks sent back to back come back about one round trip later, not twenty."""
    server = echo()
    one_way = 0.05
    with (
        Line(server.server_address, one_way_s=one_way) as line,
        socket.create_connection(("127.0.0.1", line.port), timeout=5) as sock,
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"w")
        recv_exactly(sock, 1)
        start = time.perf_counter()
        for i in range(20):
            sock.sendall(bytes([i]) * 100)
            time.sleep(0.002)  # separate chunks
        assert recv_exactly(sock, 2000) == b"".join(bytes([i]) * 100 for i in range(20))
        elapsed = time.perf_counter() - start
    assert 2 * one_way <= elapsed <= 2 * one_way + 0.04 + SLACK_S


def test_bytes_come_back_identical_over_concurrent_connections(echo):
    server = echo()
    payloads = [os.urandom(1_000_000) for _ in range(4)]
    results: dict[int, bytes] = {}

    def client(i: int, port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sender = threading.Thread(target=sock.sendall, args=(payloads[i],))
            sender.start()
            results[i] = recv_exactly(sock, len(payloads[i]))
            sender.join()

    with Line(server.server_address, one_way_s=0.01) as line:
        threads = [threading.Thread(target=client, args=(i, line.port)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        sent, received = line.sent, line.received
    assert [results.get(i) == payloads[i] for i in range(4)] == [True] * 4
    assert sent == received == 4_000_000


def test_a_rate_cap_bounds_the_transfer_time(echo):
    server = echo("count")
    size, rate = 2_000_000, 4_000_000
    with Line(server.server_address, rate_bytes_s=rate) as line:
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", line.port), timeout=20) as sock:
            sock.sendall(os.urandom(size))
            sock.shutdown(socket.SHUT_WR)
            answer = recv_all(sock)
        elapsed = time.perf_counter() - start
    assert answer == f"{size}\n".encode()
    assert size / rate * 0.9 <= elapsed <= size / rate + 1.0


def test_eof_propagates_both_ways(echo):
    server = echo()
    with (
        Line(server.server_address, one_way_s=0.02) as line,
        socket.create_connection(("127.0.0.1", line.port), timeout=5) as sock,
    ):
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)  # the server sees EOF, echoes, then half-closes
        assert recv_all(sock) == b"last words"  # ...and we see its EOF
    assert server.eofs == 1


def test_close_leaves_nothing_listening_or_open(echo):
    server = echo()
    before = open_fds()
    line = Line(server.server_address, one_way_s=0.01).start()
    port = line.port
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    for sock in socks:
        sock.sendall(b"hi")
        recv_exactly(sock, 2)
    line.close()
    for sock in socks:  # the line dropped them
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    deadline = time.monotonic() + 3  # the echo server's threads close their ends meanwhile
    while open_fds() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds() <= before


def test_a_closed_connection_leaves_no_sockets_behind(echo):
    server = echo()
    with Line(server.server_address) as line:
        with socket.create_connection(("127.0.0.1", line.port), timeout=5) as sock:
            sock.sendall(b"warm")
            recv_exactly(sock, 4)
        time.sleep(0.2)
        before = open_fds()
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", line.port), timeout=5) as sock:
                sock.sendall(b"hi")
                sock.shutdown(socket.SHUT_WR)
                assert recv_all(sock) == b"hi"
        deadline = time.monotonic() + 3
        while open_fds() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_fds() <= before
