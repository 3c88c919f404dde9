"""A unit's enablement state for verify checks, read from `systemctl is-enabled` itself.

testinfra's `Service.is_enabled` accepts only exit codes 0 and 1 and raises for anything else,
but systemctl(1) of systemd 257 (Debian 13) documents, for is-enabled, exit 0 for "enabled",
"enabled-runtime", "alias", "static", "indirect", "generated" and "transient", > 0 for "linked",
"masked" and "disabled", and 4 ("no such unit", LSB "program or service status is unknown")
for "not-found" (tests/data/facts/systemd-257-systemctl-is-enabled.txt). A missing unit is a
failed check with the state in its message, never an exception. resources.service (what
check plans) counts the same states as enabled.
"""

from __future__ import annotations

from provision import shell

ENABLED_STATES = frozenset(
    {"enabled", "enabled-runtime", "alias", "static", "indirect", "generated", "transient"}
)
# Of those, the states `systemctl disable` undoes (its symlinks); the others have none.
DISABLEABLE_STATES = frozenset({"enabled", "enabled-runtime", "alias"})


def enabled_state(host, unit: str) -> tuple[bool, str]:
    """(enabled at boot, the state systemctl printed; "not-found" for a missing unit)."""
    out = host.run(shell.cmd("systemctl", "is-enabled", "--", unit))
    lines = out.stdout.strip().splitlines()
    state = lines[-1].strip() if lines else ""
    if not state:
        # older systemd printed nothing for a missing unit, only an error on stderr
        state = "not-found" if "No such file" in out.stderr or out.rc == 4 else "unknown"
    return out.rc == 0 and state in ENABLED_STATES, state


def not_enabled_message(unit: str, state: str) -> str:
    """Why a unit is not enabled, in the words verify prints."""
    if state == "not-found":
        return f"{unit} is not installed (systemctl is-enabled: not-found)"
    return f"{unit} is not enabled at boot (systemctl is-enabled: {state})"
