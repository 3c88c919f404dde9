"""What a failed remote command's output means: the hint under its error. The text is matched
in English: every command runs with LC_ALL=C (shell.LOCALE)."""

from __future__ import annotations

from provision import aptsources, shell
from provision.changes import Result


def command_hint(result: Result) -> str:
    """The fix for a known failure in the output of a command (empty when none is known)."""
    text = result.stderr + result.stdout
    # sudo, then sudo-rs (Ubuntu 26.04's sudo; its words: provision.sudoers._REFUSED).
    if "a password is required" in text or "interactive authentication is required" in text:
        return "sudo needs a password here: use --ask-sudo-pass or PROVISION_SUDO_PASSWORD"
    if any(s in text for s in ("incorrect password", "Sorry, try again", "incorrect authentication",
                               "Authentication failed, try again")):  # fmt: skip
        return "the sudo password was refused"
    if "Could not get lock" in text or "Unable to acquire the dpkg frontend lock" in text:
        return "another apt/dpkg run held the lock for the whole timeout (unattended-upgrades?)"
    if result.exit_code == shell.LOCK_BUSY and not text.strip():
        return (
            f"another provision run held {shell.HOST_LOCK} for 30 minutes (one cut off may "
            "still be working there): look at `ps -ef` on the host, then run again"
        )
    if apt := aptsources.hint(text):  # a broken apt source: its file:line and the fix
        return apt
    if "No space left on device" in text:
        return (
            "the filesystem is full: free space on the host (df -h) and run again; a file "
            "being replaced is left as it was"
        )
    if "dpkg was interrupted" in text:
        return "run provision again: base repairs it with `dpkg --configure -a`"
    return ""
