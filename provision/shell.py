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


# Script text for the do side (atomic writes, guard's rollbacks): the only place that knows
# the shell's syntax. Arguments named `path`, `text` or `message` are values (quoted here);
# `command`, `check`, `test`, `then` are shell text already quoted. A redirection applies to
# one simple command: pass a list of commands through group() first.


def seq(*commands: str) -> str:
    """Join already-quoted commands with ; (run each, whatever the one before did)."""
    return "; ".join(c for c in commands if c)


def or_(*commands: str) -> str:
    """Join already-quoted commands with || (stop at the first success)."""
    return " || ".join(commands)


def exists(path: str) -> str:
    """A test: the path exists (a file, folder or anything else)."""
    return f"[ -e {cmd(path)} ]"


def absent(path: str) -> str:
    """A test: nothing exists at the path."""
    return f"[ ! -e {cmd(path)} ]"


def if_(test: str, then: str, else_: str = "") -> str:
    """`if TEST; then THEN; [else ELSE;] fi` from already-quoted commands."""
    otherwise = f" else {else_};" if else_ else ""
    return f"if {test}; then {then};{otherwise} fi"


def group(command: str) -> str:
    """The command as one unit in the current shell: `{ command; }`."""
    return f"{{ {command}; }}"


def to(command: str, path: str, *, append: bool = False, stderr: bool = False) -> str:
    """The command with its output written to the file at path (appended; stderr too)."""
    both = " 2>&1" if stderr else ""
    return f"{command} {'>>' if append else '>'} {cmd(path)}{both}"


def logged(command: str, path: str, *, append: bool = False) -> str:
    """The command in a subshell, its output and errors written to the log at path."""
    return to(f"( {command} )", path, append=append, stderr=True)


def quiet(command: str) -> str:
    """The command with its error messages dropped (a missing file is no news)."""
    return f"{command} 2>/dev/null"


def file_text(path: str) -> str:
    """One word: the text of the file at path (`"$(cat path)"`, trailing newlines dropped)."""
    return f'"$(cat {cmd(path)})"'


def with_path(template: str, path: str) -> str:
    """A command template (a step's `validate`) with each {path} replaced by the quoted path."""
    return template.replace("{path}", cmd(path))


def write_file(text: str, path: str) -> str:
    """Write text to the file at path exactly (printf '%s': no escapes, no newline added)."""
    return to(f"printf '%s' {cmd(text)}", path)


def on_exit(command: str) -> str:
    """Run the command when the script exits, whether it succeeds or fails (`trap ... EXIT`)."""
    return f"trap {cmd(command)} EXIT"


def require(check: str, message: str, code: int) -> str:
    """Run check (its output to stderr); if it fails, say message on stderr and exit code."""
    return if_(f"! {check} >&2", f"echo {cmd(message)} >&2; exit {int(code)}")


def script(*lines: str) -> str:
    """A script file's text: one command a line, ending in a newline."""
    return "\n".join(lines) + "\n"


# Every remote command runs in the C locale: sudo's, apt's and dpkg's messages stay English on
# a host set to another language, so the hints that match them (wrong password, dpkg lock,
# full disk) keep working. Set outside sudo (its own messages) and inside it (sudoers may
# reset the environment).
LOCALE = ("env", "LC_ALL=C")


def _tagged(tag: str) -> tuple[str, ...]:
    # PROVISION_RUN=<tag> in the command's environment (inherited by its children) lets an
    # interrupt find and stop exactly this command on the host (kill_tagged).
    return (*LOCALE, f"PROVISION_RUN={tag}") if tag else LOCALE


def plain_wrap(command: str, tag: str = "") -> str:
    """The command for the login user: `sh -c` (the login shell may be fish or csh), C locale."""
    return cmd(*_tagged(tag), "sh", "-c", command)


def sudo_wrap(command: str, *, with_password: bool = False, tag: str = "") -> str:
    """Run the whole command as root: sudo around `sh -c '<command>'`, in the C locale.

    `-n` fails at once where a password would be needed instead of hanging; with a password,
    `-S -p ''` reads it from stdin without printing a prompt, so it never reaches argv.
    """
    flags = ["-S", "-p", ""] if with_password else ["-n"]
    return cmd(*LOCALE, "sudo", *flags, "-H", "--", *_tagged(tag), "sh", "-c", command)


def kill_tagged(tag: str) -> str:
    """Stop every process of the command tagged `tag` (see plain_wrap): TERM, by environment."""
    needle = shlex.quote(f"PROVISION_RUN={tag}")
    return (
        "for f in /proc/[0-9]*/environ; do "
        f'if grep -qzx -- {needle} "$f" 2>/dev/null; then '
        'p=${f#/proc/}; kill -TERM "${p%/environ}" 2>/dev/null; fi; done; true'
    )


def sudo_check() -> str:
    """Check the sudo password once: `-k` ignores any cached credentials, so sudo really asks
    (one attempt: the password on stdin is one line, then EOF)."""
    return cmd(*LOCALE, "sudo", "-S", "-p", "", "-k", "--", "true")


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
    from provision import aptsources  # its text only; it imports nothing of ours at the top

    update = apt_get("update", "--error-on=any", lock_timeout_s=lock_timeout_s)
    return (
        "( waited=0; while :; do "
        f"out=$({update} 2>&1) && {{ printf '%s\\n' \"$out\"; break; }}; rc=$?; "
        'case "$out" in *"/var/lib/apt/lists/lock"*) '
        f'if [ "$waited" -ge {int(lock_timeout_s)} ]; then printf \'%s\\n\' "$out"; exit $rc; fi; '
        "sleep 5; waited=$((waited + 5));; "
        # A failure of a source: name its file and line, and the host's clock (aptsources).
        f"*) printf '%s\\n' \"$out\"; {aptsources.LOCATE}; exit $rc;; esac; done )"
    )


HOST_LOCK = "/run/lock/provision.lock"
HOST_LOCK_HOLDER = "/run/lock/provision.lock.holder"
LOCK_BUSY = 75  # flock's exit status when the wait ran out

# Under the lock: note what runs (a later run names it while it waits), then run it.
_LOCKED = (
    f'printf \'%s (host pid %s, since %s)\\n\' "$1" "$$" "$(date -u \'+%H:%M:%S UTC\')" '
    f'>{HOST_LOCK_HOLDER} 2>/dev/null; exec sh -c "$0"'
)


def host_locked(command: str, wait_s: int = 1800, label: str = "") -> str:
    """The command under the host-wide provision lock (flock, as root).

    A command left running by a cut connection (pip into a venv, say) keeps the lock until it
    ends, so the next run's changes wait for it instead of racing it; two runs from two
    laptops take turns the same way. `label` (what runs, no secrets) goes to HOST_LOCK_HOLDER.
    """
    return cmd(
        "flock", "-w", str(wait_s), "-E", str(LOCK_BUSY), HOST_LOCK,
        "sh", "-c", _LOCKED, command, label or "a provision command",
    )  # fmt: skip
