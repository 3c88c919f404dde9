"""All quoting of remote commands lives here.

Every variable goes into a command through `cmd()` (shlex.join); `and_`/`pipe` join strings
that are already quoted. `sudo_wrap` is applied in one place only (remote.py). `Secret`
values are masked in every line a person or a log file sees.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

# The password of a URL's user:password@ (a token in a private mirror's URL).
URL_PASSWORD_RE = re.compile(r"(?<=://)([^/\s:@'\"]+):[^/\s@'\"]+@")


class Secret(str):
    """A string that must never be shown: output and logs print it as ***."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


def cmd(*argv: object) -> str:
    """Quote each argument and join them into one shell command."""
    return shlex.join(str(a) for a in argv)


def and_(*commands: str) -> str:
    """Join already-quoted commands with && (stop at the first failure)."""
    return " && ".join(c for c in commands if c)


def pipe(*commands: str) -> str:
    """Join already-quoted commands with |."""
    return " | ".join(commands)


def sudo_wrap(command: str, *, with_password: bool = False) -> str:
    """Run the whole command as root: sudo around `sh -c '<command>'`.

    `-n` fails at once where a password would be needed instead of hanging; with a password,
    `-S -p ''` reads it from stdin without printing a prompt, so it never reaches argv.
    """
    flags = ["-S", "-p", ""] if with_password else ["-n"]
    return cmd("sudo", *flags, "-H", "--", "sh", "-c", command)


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in text with ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact(text: str) -> str:
    """Hide the password of every `scheme://user:password@` in text (`user:***@`)."""
    return URL_PASSWORD_RE.sub(r"\1:***@", text)


def apt_get(*args: str, lock_timeout_s: int = 600) -> str:
    """A non-interactive apt-get command that waits for the dpkg lock instead of failing.

    `--force-confold` keeps an administrator's edits to conffiles; NEEDRESTART_MODE=a stops
    Ubuntu's needrestart from asking which services to restart.
    """
    return cmd(
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "NEEDRESTART_MODE=a",
        "apt-get",
        "-y",
        "-q",
        "-o",
        f"DPkg::Lock::Timeout={lock_timeout_s}",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        *args,
    )


def apt_get_update(lock_timeout_s: int = 600) -> str:
    """`apt-get update` that waits for the package lists' lock too.

    DPkg::Lock::Timeout covers dpkg's frontend lock only: while another `apt-get update` runs
    (unattended-upgrades on a fresh box, or one left running by a cut connection), update
    fails at once on /var/lib/apt/lists/lock. So retry every 5 s up to the timeout.
    """
    update = apt_get("update", "--error-on=any", lock_timeout_s=lock_timeout_s)
    return (
        "( waited=0; while :; do "
        f"out=$({update} 2>&1) && {{ printf '%s\\n' \"$out\"; break; }}; rc=$?; "
        'case "$out" in *"/var/lib/apt/lists/lock"*) '
        f'if [ "$waited" -ge {int(lock_timeout_s)} ]; then printf \'%s\\n\' "$out"; exit $rc; fi; '
        "sleep 5; waited=$((waited + 5));; "
        "*) printf '%s\\n' \"$out\"; exit $rc;; esac; done )"
    )


HOST_LOCK = "/run/lock/provision.lock"
LOCK_BUSY = 75  # flock's exit status when the wait ran out


def host_locked(command: str, wait_s: int = 1800) -> str:
    """The command under the host-wide provision lock (flock, as root).

    A command left running by a cut connection (pip into a venv, say) keeps the lock until it
    ends, so the next run's changes wait for it instead of racing it; two runs from two
    laptops take turns the same way.
    """
    return cmd("flock", "-w", str(wait_s), "-E", str(LOCK_BUSY), HOST_LOCK, "sh", "-c", command)
