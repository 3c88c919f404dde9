"""FakeRemote: answers commands from a table of regex → result, records every command, and
raises on any command it was not told about, so a test cannot pass silently."""

from __future__ import annotations

import re

from provision.changes import Result, Upload
from provision.remote import Connection, Remote

BATCH_PART = re.compile(r"echo @@(\d+); \{ (.+?); \} 2>/dev/null && echo @@ok")


class UnexpectedCommand(AssertionError):
    """The code under test sent a command the test did not expect."""


class FakeRemote(Remote):
    """A Remote that answers from a table instead of a host."""

    def __init__(self, answers=(), host="fake", **kwargs) -> None:
        super().__init__(Connection(host=host, addr="192.0.2.1", user="root"), **kwargs)
        self.answers = [(pattern, _result(r)) for pattern, r in answers]
        self.uploads = []
        self.ran = []
        self.reboots = 0

    def on(self, pattern: str, result) -> FakeRemote:
        """Answer commands matching the regex (first match wins; newest rules first)."""
        self.answers.insert(0, (pattern, _result(result)))
        return self

    def _exec(self, command: str, timeout_s, stdin) -> Result:
        self.ran.append(command)
        for pattern, result in self.answers:
            if re.search(pattern, command, re.S):
                return result
        raise UnexpectedCommand(f"unexpected command: {command[:300]}")

    def probe(self, command: str, sudo: bool = False) -> Result:
        """resources.prefetch_files' batch of file probes is answered file by file through the
        same table as single probes (unless a rule mentions `@@`: the test answers it whole)."""
        parts = BATCH_PART.findall(command)
        if not parts or any("@@" in pattern for pattern, _r in self.answers):
            return super().probe(command, sudo)
        out = []
        for index, one in parts:
            result = super().probe(one, sudo)
            out.append(f"@@{index}\n{result.stdout}" + ("@@ok\n" if result.ok else ""))
        return Result(0, "".join(out))

    def put_atomic(self, upload: Upload, timeout_s: int = 120) -> None:
        self.uploads.append(upload)
        self.commands += 1

    def reboot(self, timeout_s: int = 600, old_boot_id=None) -> None:
        self.reboots += 1


def _result(r) -> Result:
    if isinstance(r, Result):
        return r
    if isinstance(r, str):
        return Result(0, r)
    code, out = r
    return Result(code, out)
