"""Atomic file writes on a host (Remote.put_atomic): stage, validate, back up, rename.

The content goes by SFTP to a private /tmp/.provision-* file, then one root command installs
it next to its destination with its mode and owner, validates it, keeps the old file under
BACKUP_DIR and renames it into place. Whatever fails, no staged copy is left behind.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import PurePosixPath

from provision import shell
from provision.changes import Upload
from provision.errors import CommandError, ProvisionError

BACKUP_DIR = "/var/backups/provision"
# The script's exit status when the new file fails its validation (EX_DATAERR).
VALIDATION_FAILED = 65


def put(remote, upload: Upload, timeout_s: int = 120) -> None:
    """Write a file atomically: stage next to it, validate, keep a backup, rename."""
    dest = PurePosixPath(upload.dest)
    remote.wrap("true", sudo=True)  # a refused sudo password fails here, before any upload
    staged_src = f"/tmp/.provision-{uuid.uuid4().hex}"
    remote._put_bytes(upload.content, staged_src)
    new = str(dest.parent / f".{dest.name}.provision-new")
    backup = f"{BACKUP_DIR}{dest}"
    lines = [
        "set -e",
        shell.on_exit(shell.cmd("rm", "-f", "--", staged_src, new)),
        shell.cmd("mkdir", "-p", "--", str(dest.parent)),
        shell.cmd(
            "install",
            "-m",
            upload.mode,
            "-o",
            upload.owner,
            "-g",
            upload.group,
            "--",
            staged_src,
            new,
        ),
        # The data on disk before the rename: else a crash can leave an empty file in place.
        shell.cmd("sync", "--", new),
    ]
    if upload.validate:
        check = shell.with_path(upload.validate, new)
        lines.append(shell.require(check, "provision: validation failed", VALIDATION_FAILED))
    lines += [
        shell.if_(
            shell.exists(str(dest)),
            shell.and_(
                shell.cmd("mkdir", "-p", "--", str(PurePosixPath(backup).parent)),
                shell.cmd("cp", "-p", "--", str(dest), backup),
            ),
        ),
        shell.cmd("mv", "-f", "--", new, str(dest)),
    ]
    try:
        remote.run("\n".join(lines), sudo=True, timeout_s=timeout_s)
    except CommandError as exc:
        if exc.returncode == VALIDATION_FAILED:
            exc.hint = f"the new {dest} failed validation; the old file is unchanged"
        # The trap removes the staged copy, unless sudo refused before it ran: then the
        # login user, who owns it, removes it.
        with contextlib.suppress(ProvisionError):
            remote.run(shell.cmd("rm", "-f", "--", staged_src), sudo=False, check=False)
        raise
