"""The SSH transport: Fabric/Paramiko (local.py runs on the box itself), and `connect`, which
picks one of the two for a Connection. The commands' shared behaviour (sudo, masking,
interrupts, reboots) is transport.Remote's.

Each command runs on its own channel, polled, so an interrupt lands at once (interrupt.py).
Host keys are checked against known_hosts; unknown keys are refused unless the user accepted
new keys. Fabric and Paramiko are imported lazily to keep start-up fast.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from provision import hostlock, interrupt
from provision.atomic import BACKUP_DIR  # noqa: F401 (where backups go; kept importable here)
from provision.changes import Result
from provision.connection import Connection
from provision.errors import ConnectError
from provision.hostkeys import (
    AcceptNewPolicy,
    RejectPolicy,
    UnknownHostKey,
    changed_key_error,
    known_name,
)
from provision.local import LocalRemote
from provision.transport import BOOT_ID, RERUN_HINT, Remote

# Connection and Remote moved out (connection.py, transport.py); importing them from here, as
# most of the code and tests do, keeps working.
__all__ = ["BOOT_ID", "RERUN_HINT", "Connection", "LocalRemote", "Remote", "SSHRemote", "connect"]


class SSHRemote(Remote):
    """Fabric over SSH, with strict host-key checking."""

    def __init__(self, connection: Connection, **kwargs) -> None:
        super().__init__(connection, **kwargs)
        self.conn = None

    def open(self) -> None:
        if self.conn is not None:
            return
        import fabric
        import paramiko

        c = self.connection
        connect_kwargs: dict = {}
        if c.key_file:
            connect_kwargs["key_filename"] = [os.path.expanduser(c.key_file)]
            if c.identities_only:
                connect_kwargs.update(allow_agent=False, look_for_keys=False)
        conn = fabric.Connection(
            c.addr,
            user=c.user,
            port=c.port,
            connect_timeout=c.connect_timeout_s,
            connect_kwargs=connect_kwargs,
        )
        known = c.known_hosts_path
        for path in (Path("/etc/ssh/ssh_known_hosts"), known):
            if path.is_file():
                conn.client.load_system_host_keys(str(path))
        conn.client.set_missing_host_key_policy(
            AcceptNewPolicy(known) if c.accept_new_host_key else RejectPolicy(known, c.trusted_keys)
        )
        try:
            conn.open()
        except UnknownHostKey as exc:
            conn.close()
            port = f"-p {c.port} " if c.port != 22 else ""
            raise ConnectError(
                f"{self.host}: unknown host key for {c.target} ({exc.key_type}), refused",
                f"check the fingerprint, then `ssh-keyscan {port}{c.addr} >> {known}`, "
                "or pass --accept-new-host-key to trust it on first use",
            ) from None
        except paramiko.BadHostKeyException as exc:
            conn.close()
            raise changed_key_error(
                self.host, c.addr, c.port, known, exc.key, exc.expected_key
            ) from None
        except paramiko.AuthenticationException as exc:
            conn.close()
            raise ConnectError(
                f"{self.host}: authentication as {c.user or 'the default user'} failed at "
                f"{c.target}: {exc}",
                "check ansible_user and ansible_ssh_private_key_file in the inventory",
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            conn.close()
            raise ConnectError(
                f"{self.host}: cannot connect to {c.target}: {exc or type(exc).__name__}",
                "check the address and port, that the host is up and sshd is running",
            ) from None
        # Keepalives notice a dead peer (reboot, cut network) instead of waiting forever.
        conn.client.get_transport().set_keepalive(15)
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextlib.contextmanager
    def forward_local(self, local_port: int, remote_port: int, on_failure=None):
        """127.0.0.1:local_port here is 127.0.0.1:remote_port there, inside the block.

        The port here listens before the block starts (a URL printed inside it is served at
        once; a port taken here is a ConnectError now). A connection the box refuses (nothing
        listens there yet) closes only that connection: `on_failure(reason)` hears of it, and
        the next connection tries again. Yields the list of those reasons.
        """
        self.open()
        try:
            forward = LocalForward(self.conn.transport, local_port, remote_port, on_failure)
        except OSError as exc:
            raise ConnectError(
                f"{self.host}: cannot listen on 127.0.0.1:{local_port} here: {exc.strerror or exc}",
                "stop the program that holds it, or pick a free port with --local-port",
            ) from None
        try:
            yield forward.failures
        finally:
            forward.close()

    def host_keys(self) -> tuple[str, ...]:
        """The keys this endpoint is known by ("type base64"): the one it showed and the
        known_hosts entries that vouched for it."""
        import paramiko

        self.open()
        shown = self.conn.transport.get_remote_server_key()
        keys = [f"{shown.get_name()} {shown.get_base64()}"]
        c = self.connection
        known = c.known_hosts_path
        if known.is_file():
            entry = paramiko.HostKeys(str(known)).lookup(known_name(c.addr, c.port)) or {}
            keys += [f"{k.get_name()} {k.get_base64()}" for k in entry.values()]
        return tuple(dict.fromkeys(keys))

    def _exec(self, command: str, timeout_s: int | None, stdin: str | None) -> Result:
        import paramiko

        from provision import streams

        if self.interruptible:
            interrupt.check()
        self.open()
        try:
            channel = self.conn.client.get_transport().open_session()
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()  # EOF: a command that reads stdin does not hang
            interrupt.running(self.host, self.showing or command, interrupt.stoppable(command))
            try:
                code, out, err = streams.drive(
                    channel,
                    timeout_s,
                    self.on_line,
                    interrupt.stoppable(command),
                    watch=self.interruptible,
                    stop=stop_channel,
                )
            finally:
                interrupt.done()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectError(
                f"{self.host}: connection lost: {exc or type(exc).__name__}", RERUN_HINT
            ) from None
        transport = self.conn.client.get_transport() if self.conn else None
        if code == -1 and (transport is None or not transport.is_active()):
            # The channel closed without an exit status because the connection went away.
            self.close()
            raise ConnectError(f"{self.host}: connection lost (no exit status)", RERUN_HINT)
        return Result(code, out, err)

    supports_streams = True

    def _open_stream(self, command: str) -> hostlock.Stream:
        from provision.streams import ChannelStream

        self.open()
        try:
            channel = self.conn.client.get_transport().open_session()
            channel.exec_command(command)
        except Exception as exc:  # paramiko.SSHException, OSError, EOFError
            self.close()
            raise ConnectError(f"{self.host}: connection lost: {exc}", RERUN_HINT) from None
        return ChannelStream(channel)

    def _put_bytes(self, data: bytes, path: str) -> None:
        import paramiko

        self.open()
        try:
            sftp = self.conn.sftp()
            with sftp.open(path, "wx") as f:  # x: refuse to follow an existing file/link
                f.chmod(0o600)
                f.write(data)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"{self.host}: upload to {path} failed: {exc}") from None


def connect(connection: Connection, **kwargs) -> Remote:
    """A Remote for the connection (local or SSH), opened."""
    if connection.local:
        remote: Remote = LocalRemote(connection, **kwargs)
    else:
        remote = SSHRemote(connection, **kwargs)
    remote.open()
    return remote


def stop_channel(channel) -> None:
    """Stop the command on the host: sshd's "signal" request (TERM to its session: sudo
    passes it on), then close the channel (a writer then dies of SIGPIPE)."""
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message

    with contextlib.suppress(Exception):
        m = Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(channel.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string("TERM")
        channel.transport._send_user_message(m)
    with contextlib.suppress(Exception):
        channel.close()


class LocalForward:
    """One local port forward over a Paramiko transport (`ssh -L 127.0.0.1:L:127.0.0.1:R`).

    Fabric's own forward_local binds the port in its thread after it has returned (a URL
    printed at once can be refused: seen in CI) and its thread ends at the first connection
    the box refuses, so one early click kills the tunnel. Here the port listens before the
    constructor returns, and each connection is its own channel and its own thread.
    """

    def __init__(self, transport, local_port: int, remote_port: int, on_failure=None) -> None:
        import socket
        import threading

        self.transport = transport
        self.remote = ("127.0.0.1", remote_port)
        self.on_failure = on_failure
        self.failures: list[str] = []
        self.done = threading.Event()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", local_port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.2)  # the accept loop looks at `done` this often
        self.listener = listener
        self.thread = threading.Thread(target=self._accept, name="forward", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import socket
        import threading

        import paramiko

        while not self.done.is_set():
            try:
                client, peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                channel = self.transport.open_channel("direct-tcpip", self.remote, peer, timeout=15)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                client.close()
                reason = str(exc) or type(exc).__name__
                self.failures.append(reason)
                if self.on_failure:
                    self.on_failure(reason)
                continue
            threading.Thread(
                target=self._pump, args=(client, channel), name="forward-conn", daemon=True
            ).start()

    def _pump(self, client, channel) -> None:
        """Copy bytes both ways until both sides have closed (or the forward is closed); a
        side's end of data is passed on as a half-close, as ssh does."""
        import select
        import socket

        # each end: where its bytes go, and how its end of data is passed on
        onward = {
            client: (channel.sendall, channel.shutdown_write),
            channel: (client.sendall, lambda: client.shutdown(socket.SHUT_WR)),
        }
        open_ends = {client, channel}
        try:
            while open_ends and not self.done.is_set():
                ready, _, _ = select.select(list(open_ends), [], [], 0.2)
                for end in ready:
                    data = end.recv(65536)
                    send, half_close = onward[end]
                    if data:
                        send(data)
                    else:
                        open_ends.discard(end)
                        half_close()
        except OSError:
            pass
        finally:
            channel.close()
            client.close()

    def close(self) -> None:
        self.done.set()
        self.listener.close()
        self.thread.join(timeout=2)
