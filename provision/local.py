"""The transport on the box itself (ansible_connection=local): subprocess, no SSH."""

from __future__ import annotations

import os
import subprocess

from provision import interrupt
from provision.changes import Result
from provision.connection import Connection
from provision.errors import StepError
from provision.transport import Remote


class LocalRemote(Remote):
    """Run on this machine (ansible_connection=local): subprocess, no SSH."""

    def __init__(self, connection: Connection, **kwargs) -> None:
        super().__init__(connection, **kwargs)
        self.is_root = os.geteuid() == 0

    def _exec(self, command: str, timeout_s: int | None, stdin: str | None) -> Result:
        if self.interruptible:
            interrupt.check()  # a worker thread stops before its next command
        proc = None
        try:
            proc = subprocess.Popen(  # the command was quoted by shell.py
                command,
                shell=True,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            out, err = proc.communicate(stdin, timeout=timeout_s)
        except interrupt.Interrupted:
            if proc is None:
                raise
            if interrupt.stoppable(command):
                proc.terminate()  # run() then stops its tagged children too
            else:
                proc.communicate()  # apt/dpkg: never killed mid-run
            raise
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Result(124, out, err + f"\nprovision: timed out after {timeout_s}s")
        return Result(proc.returncode, out, err)

    supports_streams = True

    def _open_stream(self, command: str):
        from provision.streams import ProcessStream

        return ProcessStream(command)

    def _put_bytes(self, data: bytes, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def reboot(self, timeout_s: int = 600, old_boot_id: str | None = None) -> None:
        raise StepError(
            f"{self.host}: a reboot is needed, and this run is on the box itself",
            "reboot it by hand, then run provision again",
        )
