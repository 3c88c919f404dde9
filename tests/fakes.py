"""FakeRemote: answers commands from a table of regex → result, records every command, and
raises on any command it was not told about, so a test cannot pass silently."""

from __future__ import annotations

import re
import shlex

from provision import resources, shell
from provision.changes import Result, Upload
from provision.facts import files
from provision.remote import Connection, Remote


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
        self.batches = []  # the declared reads of each read_all

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
        """A file-state read that asks for content (facts.files) is answered from the table's
        stat/sha256 rule, and its content from the rule for `head -c ... -- PATH`, when the
        state is readable and no key material (as the host decides)."""
        if files.CONTENT_MARK not in command:
            return super().probe(command, sudo)
        result = super().probe(command.rsplit(" && { grep", 1)[0], sudo)
        if not result.ok:
            return result
        path = command.rsplit(" -- ", 1)[1].removesuffix("; true; }")
        state = files.parse_state(result.stdout, True)
        if state.key_material or resources.private_mode(state.meta[0] if state.meta else ""):
            return result
        head = shell.cmd("head", "-c", str(files.MAX_DIFF_BYTES + 1), "--", shlex.split(path)[0])
        for pattern, answer in self.answers:
            if re.search(pattern, head, re.S):
                self.ran.append(head)
                return Result(0, result.stdout + files.CONTENT_MARK + "\n" + answer.stdout)
        return result

    def read_all(self, reads, login_user: str) -> dict:
        """The declared reads, as one command; each is answered from the table when a check
        looks it up (a read the check never looks at needs no rule)."""
        self.commands += 1
        self.batches.append(list(dict.fromkeys(reads)))
        return _LazyAnswers(self, reads)

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


class _LazyAnswers(dict):
    """Declared reads → results, each asked of the FakeRemote's table on first lookup."""

    def __init__(self, remote: FakeRemote, reads) -> None:
        super().__init__()
        self.remote = remote
        self.keys_ = set(reads)

    def __contains__(self, key) -> bool:
        return key in self.keys_

    def __getitem__(self, key):
        if not dict.__contains__(self, key):
            before = self.remote.commands
            dict.__setitem__(self, key, FakeRemote.probe(self.remote, key.command, key.sudo))
            self.remote.commands = before
        return dict.__getitem__(self, key)
