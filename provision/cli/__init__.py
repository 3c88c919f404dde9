"""The command line: parses flags and hands the work to config, runner, verify, doctor, sync
and the other modules, which make the decisions. One module per family of commands, each
registering on the one click group (app.cli).

Exit codes: 0 every host fine, 1 a host failed, 2 usage or configuration error (nothing was
sent to any host), 3 `--plan --detailed-exitcode` found changes.
"""

from __future__ import annotations

# Importing a command module registers its commands on the group.
from provision.cli import (  # noqa: F401
    checks,
    forward,
    info,
    notebook,
    relay,
    run,
    status,
    transfer,
)
from provision.cli.app import cli, main

__all__ = ["cli", "main"]
