#!/usr/bin/env python3
"""A delay line: a TCP relay on 127.0.0.1 that adds latency (and optionally a rate cap).

This machine's kernel has no `tc netem` (CONFIG_NET_SCH_NETEM is not set), so latency for the
test hosts is made here, in user space. Every chunk read from one side is timestamped on
arrival and written to the other side at arrival + one_way_s, in order: propagation delay,
not serialization (ten chunks arriving together all leave one_way_s later, together). The
connection to the target is made 1.5 round trips after the client's connect, and the client's
first bytes leave one round trip after it: the TCP handshake that the client's own connect to
127.0.0.1 did not pay, so a new connection's first exchange takes two round trips. With a rate
cap, each direction of the whole line (all connections together) transmits at most
rate_bytes_s; a chunk's delay is then its wait for the line, its transmission and one_way_s. Half-close propagates
(EOF on one side is a shutdown(SHUT_WR) on the other, after the same delay).

    python3 tests/hosts/delay.py --target 127.0.0.1:PORT --rtt-ms 20 [--rate-mb-s 20]
        # first stdout line: the bound 127.0.0.1:PORT; runs until SIGTERM
    python3 tests/hosts/delay.py --target 10.77.0.11:22 --netns /run/netns/pv-pvlan
        # listens here, connects from inside that network namespace (lan.py's relay)

    with Line(("127.0.0.1", port), one_way_s=0.01) as line:
        ... connect to ("127.0.0.1", line.port) ...

Standard library only (asyncio, one event loop thread per Line).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

CHUNK = 65536
# Bytes one direction of one connection may hold in flight before the relay stops reading
# that side (TCP backpressure reaches the sender then): the line's bandwidth-delay product.
WINDOW = 8 * 1024 * 1024


class Line:
    """A TCP relay on 127.0.0.1 that delays every chunk by one_way_s in each direction
    (propagation delay: chunks are timestamped on arrival and written at arrival+one_way_s,
    in order, without serializing the delays) and optionally caps each direction's rate."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        one_way_s: float = 0.0,
        rate_bytes_s: float | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        netns: str | None = None,
    ) -> None:
        if one_way_s < 0 or (rate_bytes_s is not None and rate_bytes_s <= 0):
            raise ValueError("one_way_s must be >= 0 and rate_bytes_s > 0")
        self.target = target
        self.one_way_s = one_way_s
        self.rate_bytes_s = rate_bytes_s
        self.listen = listen
        self.netns = netns  # connect to the target from this network namespace (a path)
        self.port = 0
        self.sent = 0  # client -> target
        self.received = 0  # target -> client
        self.connections = 0
        self._free_at = {"sent": 0.0, "received": 0.0}  # when each direction's line is free
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> Line:
        """Listen and relay in a background thread; returns self (port is set)."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accepted, *self.listen, reuse_address=True)
                )
                self.port = self._server.sockets[0].getsockname()[1]
                if self.netns:
                    # Only this thread moves; the listening socket stays where it was made, and
                    # every connection to the target (made in this thread) is in the netns.
                    from common import setns

                    setns(self.netns)
            except BaseException as exc:  # handed to start()'s caller
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"delay-line-{id(self)}", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return self

    def close(self) -> None:
        """Stop listening, drop every connection, stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> Line:
        return self if self._thread else self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- in the loop's thread ------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()  # the listening socket is closed here
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            # Since 3.12 this also waits for the connections' handlers, aborted just above.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def _track(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accepted(self, c_reader, c_writer) -> None:
        self._writers.add(c_writer)
        self.connections += 1
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        # Client data that arrives while we connect upstream is queued with its own due time.
        up_queue: collections.deque = collections.deque()
        up_wake = asyncio.Event()
        up_room = asyncio.Event()
        up_room.set()
        up_state = {"queued": 0}
        reader_up = self._track(
            self._read(c_reader, up_queue, up_wake, up_room, up_state, "sent", accepted)
        )
        t_writer = None
        try:
            # The target accepts when the client's ACK reaches it: 1.5 round trips.
            await asyncio.sleep(3 * self.one_way_s)
            t_reader, t_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.CancelledError):
            reader_up.cancel()
            c_writer.transport.abort()
            self._writers.discard(c_writer)
            return
        self._writers.add(t_writer)
        down_queue: collections.deque = collections.deque()
        down_wake, down_room = asyncio.Event(), asyncio.Event()
        down_room.set()
        down_state = {"queued": 0}
        pumps = [
            reader_up,
            self._track(self._write(t_writer, up_queue, up_wake, up_room, up_state, "sent")),
            self._track(
                self._read(t_reader, down_queue, down_wake, down_room, down_state, "received")
            ),
            self._track(
                self._write(c_writer, down_queue, down_wake, down_room, down_state, "received")
            ),
        ]
        try:
            done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            if pending or any(t.cancelled() or t.exception() for t in done):
                for w in (c_writer, t_writer):
                    w.transport.abort()  # a reset or error on one side: reset the other too
        finally:
            for pump in pumps:
                pump.cancel()
            for w in (c_writer, t_writer):
                w.close()
                self._writers.discard(w)

    def _due(self, arrived: float, size: int, direction: str) -> float:
        """When a chunk that arrived at `arrived` is written to the other side."""
        if self.rate_bytes_s is None or not size:
            return arrived + self.one_way_s
        start = max(arrived, self._free_at[direction])
        self._free_at[direction] = start + size / self.rate_bytes_s
        return self._free_at[direction] + self.one_way_s

    async def _read(self, reader, queue, wake, room, state, direction, since=None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await room.wait()
            data = await reader.read(CHUNK)
            arrived = loop.time()
            if since is not None:  # the client could send only once its connect() returned
                arrived = max(arrived, since + 2 * self.one_way_s)
            queue.append((self._due(arrived, len(data), direction), data))
            state["queued"] += len(data)
            if state["queued"] >= WINDOW:
                room.clear()
            wake.set()
            if not data:
                return

    async def _write(self, writer, queue, wake, room, state, direction) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not queue:
                wake.clear()
                await wake.wait()
            due, data = queue.popleft()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not data:  # EOF: half-close the other side after the same delay
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            # Counted before the write: whoever got these bytes sees them counted already.
            setattr(self, direction, getattr(self, direction) + len(data))
            writer.write(data)
            await writer.drain()
            state["queued"] -= len(data)
            if state["queued"] < WINDOW:
                room.set()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """The CLI: relay until SIGTERM (or SIGINT); the bound address on stdout's first line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round trip added (2 x one way)")
    parser.add_argument("--rate-mb-s", type=float, help="cap each direction (10^6 bytes/s)")
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0), metavar="HOST:PORT")
    parser.add_argument("--netns", metavar="PATH",
                        help="connect to the target from this network namespace (/run/netns/X)")  # fmt: skip
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rate = args.rate_mb_s * 1e6 if args.rate_mb_s else None
    line = Line(
        args.target,
        one_way_s=args.rtt_ms / 2000,
        rate_bytes_s=rate,
        listen=args.listen,
        netns=args.netns,
    )
    line.start()
    print(f"{args.listen[0]}:{line.port}", flush=True)
    try:
        while not stop.wait(1):
            pass
    finally:
        line.close()
    return 0


# --- a test host behind a delay line (testhost.py up --rtt-ms) ---------------------------------


def start_process(
    target: str,
    record: Path,
    *,
    rtt_ms: float = 0.0,
    rate_mb_s: float | None = None,
    netns: str | None = None,
) -> dict:
    """Start a delay.py process of its own session (it outlives `testhost.py up`) relaying
    127.0.0.1:FREE to target (HOST:PORT), from inside netns when given. Its PID, port and
    settings go to the record file (JSON), which is how stop_process finds it. Returns that."""
    import subprocess

    argv = [sys.executable, __file__, "--target", target, "--rtt-ms", str(rtt_ms)]
    argv += (["--rate-mb-s", str(rate_mb_s)] if rate_mb_s else []) + (
        ["--netns", netns] if netns else []
    )
    with open(record.with_suffix(".log"), "ab") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,  # setsid: `down` stops it by PID
        )
    first = proc.stdout.readline().decode().strip()
    proc.stdout.close()  # it prints nothing more
    if not first.rpartition(":")[2].isdigit():
        proc.kill()
        proc.wait()
        raise RuntimeError(f"relay to {target} did not start; see {record.with_suffix('.log')}")
    port = int(first.rpartition(":")[2])
    data = {"pid": proc.pid, "port": port, "target": target, "rtt_ms": rtt_ms}
    data.update(rate_mb_s=rate_mb_s, netns=netns)
    record.write_text(json.dumps(data))
    return data


def stop_process(record: Path) -> None:
    """Stop the process start_process recorded (by its PID, and only while that PID is still
    a delay.py relaying to the recorded target: PIDs get reused). Idempotent."""
    try:
        data = json.loads(record.read_text())
        pid = int(data["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError):
        record.unlink(missing_ok=True)
        return
    target = str(data.get("target")).encode()  # HOST:PORT (a bare port in older records)
    if any(a.endswith(b"delay.py") for a in cmdline) and any(
        a == target or a.endswith(b":" + target) for a in cmdline
    ):  # still our process, not a recycled PID
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            with contextlib.suppress(ChildProcessError):  # our own child: reap it
                os.waitpid(pid, os.WNOHANG)
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    record.unlink(missing_ok=True)


def attach(host, rtt_ms: float, rate_mb_s: float | None = None) -> int:
    """Put a running test host (common.TestHost) behind a delay-line process of its own
    session; its PID goes to STATE/NAME/delay.json. The inventory's ansible_port becomes the
    line's port and known_hosts gets `[127.0.0.1]:LINEPORT` lines with the host's own keys
    (copied from its sshd port's entries: nothing is accepted blindly). Returns the port."""
    from common import save_host

    target = f"{host.addr}:{host.port}"
    record = start_process(
        target, host.state_dir / "delay.json", rtt_ms=rtt_ms, rate_mb_s=rate_mb_s
    )
    port = record["port"]
    own = f"[{host.addr}]:{host.port} "
    lines = [ln for ln in host.known_hosts.read_text().splitlines() if ln.startswith(own)]
    if not lines:
        raise RuntimeError(f"{host.known_hosts} has no {own.strip()} keys to copy")
    with open(host.known_hosts, "a") as known:
        known.writelines(f"[{host.addr}]:{port} {ln[len(own) :]}\n" for ln in lines)
    text = host.inventory.read_text()
    host.inventory.write_text(text.replace(f" ansible_port={host.port} ", f" ansible_port={port} "))
    host.extras["delay"] = record
    save_host(host)
    return port


def detach(state_dir) -> None:
    """Stop the delay line attach() started for this host. Idempotent."""
    stop_process(Path(state_dir) / "delay.json")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


if __name__ == "__main__":
    sys.exit(main())
