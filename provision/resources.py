"""Reusable desired-state helpers for steps' `check`: each looks up its declared reads and
returns Changes; `*_read` gives the Read a step declares for each helper it calls.

A helper never changes anything on the host; the runner executes the actions it returns.
A file's old content comes for a diff only when it is no secret (facts.files decides on the
host), so a private (0600) file or a key is never fetched, shown or transcribed.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from provision import shell, unitstate
from provision.changes import Change, Restart, Run, Upload
from provision.facts import files
from provision.facts.files import KEY_MATERIAL_RE, MAX_DIFF_BYTES
from provision.facts.reads import Read
from provision.step import Context, Download
from provision.templates import render, sha256, unified_diff

APT_STAMP = "/var/lib/provision/apt-update-stamp"


def move_aside(path: str, why: str, backup_root: str = "/var/backups/provision") -> Change:
    """Move a file below `backup_root` (the same path under it), kept for the user to look at."""
    backup = f"{backup_root}{path}"
    move = shell.and_(
        shell.cmd("mkdir", "-p", "--", str(PurePosixPath(backup).parent)),
        shell.cmd("mv", "-f", "--", path, backup),
    )
    return Change(f"move {path} to {backup} ({why})", (Run(move),))


def apt_update(lock_timeout_s: int) -> Run:
    """`apt-get update` that fails on any fetch error and records when it last succeeded."""
    return Run(
        shell.and_(
            shell.apt_get_update(lock_timeout_s),
            shell.cmd("mkdir", "-p", "--", "/var/lib/provision"),
            shell.cmd("touch", "--", APT_STAMP),
        ),
        timeout_s=lock_timeout_s + 900,
        description="apt-get update",
    )


def packages(
    ctx: Context,
    names: tuple[str, ...] | list[str],
    *,
    lock_timeout_s: int = 600,
    cache_max_age_s: int = 86400,
    sources_changed: bool = False,
    recommends: bool = False,
) -> list[Change]:
    """Install the packages that are missing (one apt-get call); update the lists if stale."""
    missing = [n for n in dict.fromkeys(names) if not ctx.facts.installed(n)]
    if not missing:
        return []
    actions: list[Run] = []
    age = ctx.facts.apt_cache_age_s
    if sources_changed or age is None or age > cache_max_age_s:
        actions.append(apt_update(lock_timeout_s))
    flags = [] if recommends else ["--no-install-recommends"]
    install = shell.apt_get("install", *flags, *missing, lock_timeout_s=lock_timeout_s)
    actions.append(Run(install, timeout_s=lock_timeout_s + 3600, description="apt-get install"))
    noun = "package" if len(missing) == 1 else "packages"
    return [Change(f"install {len(missing)} {noun}: {', '.join(missing)}", tuple(actions))]


def package_downloads(ctx: Context, names: tuple[str, ...] | list[str]) -> list[Download]:
    """What `packages` would fetch: the missing ones, declared for the background fetcher."""
    missing = tuple(n for n in dict.fromkeys(names) if not ctx.facts.installed(n))
    return [Download("apt", missing)] if missing else []


def apt_sources(changes: list[Change]) -> list[Download]:
    """The apt source files among the changes' uploads, declared for the background fetcher
    (it then sees the packages they enable before the step writes them)."""
    return [
        Download("source", dest=a.dest, content=a.content.decode())
        for c in changes
        for a in c.actions
        if isinstance(a, Upload) and a.dest.startswith("/etc/apt/sources.list.d/")
    ]


def private_mode(mode: str) -> bool:
    """Whether a mode (octal digits, as stat %a prints it) lets neither group nor others read."""
    try:
        return not int(mode, 8) & 0o044
    except ValueError:
        return True  # cannot tell: treat as private


def withheld(exists: bool, meta: list[str], key_material: bool, mode: str, content: bytes) -> str:
    """Why a file's diff must not show content ('' when it may): old or new is private."""
    if exists and (not meta or private_mode(meta[0])):
        return f"the host's copy is mode {meta[0] if meta else '?'}, readable by its owner only"
    if exists and key_material:
        return "the host's copy holds key material or a password"
    if private_mode(mode):
        return f"the file is to be mode {mode}, readable by its owner only"
    if KEY_MATERIAL_RE.search(content.decode(errors="replace")):
        return "the new content holds key material or a password"
    return ""


def file_read(ctx: Context, dest: str) -> Read:
    """The declared read file_content makes of `dest` (with its content when diffs are shown)."""
    return files.read(dest, ctx.diffs)


def service_read(unit: str) -> Read:
    """The declared read `service` makes of `unit`."""
    return Read(
        shell.cmd("systemctl", "show", "-p", "UnitFileState", "-p", "ActiveState", "--", unit)
    )


def file_content(
    ctx: Context,
    dest: str,
    content: bytes,
    *,
    mode: str = "0644",
    owner: str = "root",
    group: str = "root",
    validate: str | None = None,
    restart: str | None = None,
    restart_only_if_running: bool = False,
    show_diff: bool = True,
    summary: str = "",
) -> list[Change]:
    """The file holds exactly `content` with this mode and owner; else an atomic upload."""
    read = file_read(ctx, dest)
    answer = ctx.read(read.command, sudo=True)
    state = files.parse_state(answer.stdout, answer.ok)
    exists, current_meta, current_hash = state.exists, list(state.meta), state.sha256
    key_material = state.key_material
    wanted_meta = [format(int(mode, 8), "o"), owner, group]
    if exists and current_meta == wanted_meta and current_hash == sha256(content):
        return []
    diff = ""
    if show_diff:
        same = exists and current_hash == sha256(content)  # only the mode or owner differs
        why = "" if same else withheld(exists, current_meta, key_material, mode, content)
        was = current_hash[:12] if exists else "(none)"
        if why:
            # Decided from the mode and grep's exit status alone: the old text is never read.
            diff = f"{dest} differs (sha256 {was} -> {sha256(content)[:12]}); not shown: {why}\n"
        elif not same:
            old = state.content if exists and state.content is not None else ""
            if exists and state.content is None:  # not read: too big to show, or not wanted
                old = "x" * (MAX_DIFF_BYTES + 1)
            if len(old) > MAX_DIFF_BYTES or len(content) > MAX_DIFF_BYTES:
                diff = f"sha256 {was} -> {sha256(content)[:12]}\n"
            else:
                diff = unified_diff(old, content.decode(errors="replace"), dest)
        if exists and current_meta != wanted_meta and not diff.startswith("---"):
            diff += f"mode/owner {' '.join(current_meta)} -> {mode} {owner} {group}\n"
    actions: list = [Upload(dest, content, mode, owner, group, validate)]
    if restart:
        actions.append(Restart(restart, restart_only_if_running))
    verb = "update" if exists else "write"
    return [Change(summary or f"{verb} {dest}", tuple(actions), diff)]


def template_file(
    ctx: Context, template: str, dest: str, variables: dict, **kwargs
) -> list[Change]:
    """The file is the rendered template (see file_content for the keyword arguments)."""
    return file_content(ctx, dest, render(template, **variables), **kwargs)


def service(ctx: Context, unit: str, *, enabled: bool = True, running: bool = True) -> list[Change]:
    """The unit is enabled at boot and running (or not), in one probe."""
    probe = ctx.read(service_read(unit).command)
    state = dict(line.split("=", 1) for line in probe.stdout.splitlines() if "=" in line)
    changes = []
    # The same states verify counts as enabled (provision/unitstate.py): a static, indirect,
    # generated or transient unit is not one `systemctl enable` could change, so planning it
    # would repeat on every run; `systemctl disable` changes only the ones with symlinks.
    file_state = state.get("UnitFileState", "")
    is_enabled = file_state in unitstate.ENABLED_STATES
    if enabled and not is_enabled:
        changes.append(
            Change(f"enable {unit} at boot", (Run(shell.cmd("systemctl", "enable", "--", unit)),))
        )
    elif not enabled and file_state in unitstate.DISABLEABLE_STATES:
        changes.append(
            Change(f"disable {unit} at boot", (Run(shell.cmd("systemctl", "disable", "--", unit)),))
        )
    active = state.get("ActiveState") in ("active", "activating", "reloading")
    if running and not active:
        changes.append(Change(f"start {unit}", (Run(shell.cmd("systemctl", "start", "--", unit)),)))
    elif not running and active:
        changes.append(Change(f"stop {unit}", (Run(shell.cmd("systemctl", "stop", "--", unit)),)))
    return changes
