"""The programs a command needs on this machine (the laptop), checked before connecting.

Most commands need nothing but Python (paramiko speaks SSH); push/pull run the local rsync
over the local OpenSSH client. A missing one is a ConfigError (exit 2) that says how to
install it, before anything is sent to a host.
"""

from __future__ import annotations

import shutil

from provision.errors import ConfigError

# tool -> (Debian/Ubuntu package, macOS way)
PACKAGES = {
    "rsync": ("rsync", "brew install rsync"),
    "ssh": ("openssh-client", "ships with macOS"),
    "ssh-keygen": ("openssh-client", "ships with macOS"),
    "ssh-keyscan": ("openssh-client", "ships with macOS"),
}


def require(*tools: str, purpose: str) -> None:
    """Raise ConfigError naming every tool of `tools` that is not on PATH, with the fix."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    packages = sorted({PACKAGES.get(tool, (tool, ""))[0] for tool in missing})
    mac = sorted({PACKAGES[t][1] for t in missing if t in PACKAGES and PACKAGES[t][1]})
    hint = f"install it: sudo apt-get install {' '.join(packages)}"
    if mac:
        hint += f" (macOS: {'; '.join(mac)})"
    names = ", ".join(missing)
    raise ConfigError(f"{purpose} needs {names} on this machine, and PATH has no {names}", hint)
