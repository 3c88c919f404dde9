"""sudo's answers, read in one place: the password checked once, refusals told from facts.

Under `pam_faillock deny=3` every wrong password counts towards a lockout, so a wrong password
must be found by one attempt and never sent again (Remote latches it). sudo itself retries a
wrong password (passwd_tries=3), and reading EOF for the retry counts as a second failure;
CHECK_SCRIPT therefore feeds the password through a FIFO it keeps open and kills sudo (whose
real uid is the login user's) when it says "try again": one attempt, one failure counted.
The messages are matched in English: every command runs with LC_ALL=C (shell.LOCALE).
"""

from __future__ import annotations

import re

from provision.changes import Result
from provision.errors import ConnectError

# sh: the password is the first line of stdin (read by the shell, never in argv or env).
CHECK_SCRIPT = r"""IFS= read -r pw || pw=
d=$(mktemp -d /tmp/.provision-sudo.XXXXXX) || exit 70
trap 'rm -rf "$d"' EXIT
mkfifo "$d/in" || exit 70
env LC_ALL=C sudo -S -p '' -k -- true <"$d/in" >/dev/null 2>"$d/err" &
p=$!
exec 4>"$d/in"
printf '%s\n' "$pw" >&4
pw=
n=0
while [ "$n" -lt 300 ]; do
  case $(cat "/proc/$p/stat" 2>/dev/null) in *") Z "*|"") break;; esac
  if grep -q 'try again' "$d/err"; then
    kill -9 "$p" 2>/dev/null; wait "$p"; cat "$d/err" >&2; exit 1
  fi
  sleep 0.1; n=$((n + 1))
done
if [ "$n" -ge 300 ]; then kill -9 "$p" 2>/dev/null; echo 'provision: sudo did not answer' >&2; fi
wait "$p"; rc=$?
exec 4>&-
cat "$d/err" >&2
exit "$rc"
"""

# sudo's own refusals (C locale). Only sudo prints these with its "sudo: " prefix. sudo-rs
# (Ubuntu 26.04's default sudo) words them its own way, with the same prefix (its logger,
# src/sudo/mod.rs:65, and its diagnostic! macro). trifectatechfoundation/sudo-rs at
# e5a01fd7: src/common/error.rs:89 ("I'm sorry USER. I'm afraid I can't do that"), :91
# ("interactive authentication is required": `sudo -n` where a password is needed), :122
# ("maximum N incorrect authentication attempts"); src/sudo/pam.rs:127 ("Authentication
# failed, try again."); src/pam/error.rs:214 ("Account validation failure, is your account
# locked?"), :227 ("A terminal is required to authenticate"), :236 ("Authentication required
# but not attempted": an empty password).
_SUDO_RS_WRONG = r"Authentication failed, try again\.|maximum \d+ incorrect authentication attempts"
_REFUSED = re.compile(
    r"^sudo: (a password is required|\d+ incorrect password attempts?|no password was provided"
    r"|[aA] terminal is required|[aA]ccount validation failure|.*is not in the sudoers file"
    r"|.*is not allowed to (run sudo|execute)|.*may not run sudo|PAM account management error"
    r"|interactive authentication is required|I'm sorry .*I'm afraid I can't do that"
    r"|Authentication required but not attempted|" + _SUDO_RS_WRONG + r")"
    r"|^Sorry, try again\.",
    re.MULTILINE,
)
_WRONG_PASSWORD = re.compile(
    r"^(sudo: \d+ incorrect password attempts?|Sorry, try again\.|sudo: (" + _SUDO_RS_WRONG + "))",
    re.MULTILINE,
)
_DENIED = re.compile(r"Permission denied|Operation not permitted")


def password_refused(result: Result) -> bool:
    """sudo said the password given on stdin is wrong."""
    return result.exit_code == 1 and bool(_WRONG_PASSWORD.search(result.stderr))


def probe_failure(result: Result, *, sudo: bool) -> str:
    """Why a probe's answer is no answer ('' when it is one): sudo refused to run it, or the
    login user may not read what it looks at. A missing file is an answer; these are not."""
    if result.ok:
        return ""
    refused = _REFUSED.search(result.stderr) if sudo and result.exit_code == 1 else None
    if refused:
        return f"sudo refused to run it ({refused.group(0).strip()})"
    if not sudo and _DENIED.search(result.stderr):
        return "permission denied to the login user"
    return ""


def _who(user: str | None) -> str:
    return user or "the login user"


def refused_error(host: str, user: str | None) -> ConnectError:
    """The error for any sudo command after the password was refused (it is not sent again)."""
    return ConnectError(
        f"{host}: the sudo password for {_who(user)} was refused; provision does not try it "
        "again (each try counts towards a lockout under pam_faillock)",
        _PASSWORD_HINT,
    )


_PASSWORD_HINT = (
    "give the right password with --ask-sudo-pass or PROVISION_SUDO_PASSWORD (one wrong "
    "attempt was made; `faillock --user USER --reset` as root clears a lockout)"
)


def check_error(host: str, user: str | None, exit_code: int, output: str) -> ConnectError:
    """The one clear message of a failed password check."""
    if any(s in output for s in ("try again", "incorrect password", "incorrect authentication")):
        return refused_error(host, user)
    detail = output.strip().splitlines()[-1] if output.strip() else f"exit {exit_code}"
    # sudo-rs refuses a user sudoers does not allow with "I'm sorry USER. I'm afraid I can't
    # do that" (src/common/error.rs:89 at e5a01fd7).
    if any(s in output for s in ("sudoers", "not allowed", "may not run", "can't do that")):
        return ConnectError(
            f"{host}: {_who(user)} may not use sudo there ({detail})",
            "add the user to the sudo group (or sudoers) as root, or set ansible_user=root",
        )
    return ConnectError(
        f"{host}: the sudo password check failed ({detail}); nothing was changed",
        _PASSWORD_HINT,
    )
