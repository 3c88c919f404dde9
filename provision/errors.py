"""The ProvisionError tree: every failure a user should read, with a hint and an exit code.

A ProvisionError is the only failure shown as a message: the runner records one per host and
goes on with the other hosts, and the CLI prints it with its hint and exits with its code.
Anything else is a bug, and shows a traceback with --debug.
"""

from __future__ import annotations


class ProvisionError(Exception):
    """A failure with a message for people and an optional hint on how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        from provision.shell import redact  # a token in a URL never reaches a message

        message, hint = redact(message), redact(hint)
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(ProvisionError):
    """Bad inventory, settings or flags: nothing was sent to any host."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "", where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.where = where


class ConnectError(ProvisionError):
    """The host could not be reached, refused our key, or showed an unknown host key."""


class CommandError(ProvisionError):
    """A remote command exited non-zero."""

    def __init__(self, host: str, command: str, exit_code: int, output: str, hint: str = ""):
        tail = "\n".join(output.rstrip().splitlines()[-20:])
        if exit_code == -1:  # SSH reported no exit status: a signal ended it on the host
            message = f"{host}: `{command}` was killed on the host (no exit status)"
        else:
            message = f"{host}: `{command}` exited {exit_code}"
        if tail:
            message += "\n" + "\n".join(f"    {line}" for line in tail.splitlines())
        super().__init__(message, hint)
        self.host = host
        self.command = command
        self.returncode = exit_code
        self.output = output


class TemplateError(ProvisionError):
    """A template failed to render (templates/<path>:<line>: message)."""


class StepError(ProvisionError):
    """A step did not converge, or needs a reboot that is not allowed."""


class Skip(Exception):
    """Raised by a verify check that cannot run on this host; reported as skipped, not passed."""


class ProbeError(CommandError):
    """A read-only probe failed for another reason than its answer (sudo refused, permission
    denied): its output is no fact, so nothing is decided from it."""

    def __init__(self, host: str, command: str, result, why: str) -> None:
        super().__init__(
            host,
            command,
            result.exit_code,
            result.stdout + result.stderr,
            f"a probe could not read the host: {why}; provision stops instead of guessing "
            "(a plan from it would show changes that are not needed)",
        )
        self.why = why
