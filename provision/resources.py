"""Reusable desired-state helpers for steps' `check`: each reads (probes) and returns Changes.

A helper never changes anything on the host; the runner executes the actions it returns.
A file's old content is read for a diff only when it is no secret: the probe that reads its
mode and hash also asks the host (grep -q: an exit status, never the text) whether it holds
key material, so a private (0600) file or a key is never fetched, shown or transcribed.
"""

from __future__ import annotations

import re

from provision import shell
from provision.changes import Change, Restart, Run, Upload
from provision.step import Context
from provision.templates import render, sha256, unified_diff

APT_STAMP = "/var/lib/provision/apt-update-stamp"
MAX_DIFF_BYTES = 64 * 1024
# Key material and credentials: WireGuard's PrivateKey/PresharedKey, PEM and OpenSSH private
# key blocks, `password = ...`-style lines. One POSIX ERE that Python's re reads the same way:
# grep -qiE runs it on the host, re.I on the content we would write. A false match only hides
# a diff.
KEY_MATERIAL = (
    r"privatekey|presharedkey|-----begin [a-z0-9 ]*private key-----"
    r"|(password|passwd|secret|token|api_?key)[^=:]{0,3}[=:]"
)
KEY_MATERIAL_RE = re.compile(KEY_MATERIAL, re.I)
KEY_MARK = "provision-key-material"


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


def _state_probe(path: str) -> str:
    """Mode, owner, group and sha256 of a file, then KEY_MARK when it holds key material (or
    grep could not tell: exit 2), from `stat`, `sha256sum` and `grep -q`: no content leaves."""
    grep = shell.cmd("grep", "-qiE", "-e", KEY_MATERIAL, "--", path)
    return shell.and_(
        shell.cmd("stat", "-c", "%a %U %G", "--", path),
        shell.cmd("sha256sum", "--", path),
        f"{{ {grep}; [ $? -eq 1 ] || echo {KEY_MARK}; }}",
    )


def _state(stdout: str, ok: bool) -> tuple[bool, list[str], str, bool]:
    """(exists, [mode, owner, group], sha256, holds key material) from _state_probe's output."""
    lines = stdout.split("\n")
    if not (ok and len(lines) >= 2):
        return False, [], "", False
    return True, lines[0].split(), (lines[1].split() or [""])[0], KEY_MARK in lines[2:]


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


def prefetch_files(ctx: Context, paths: list[str]) -> None:
    """Read the mode, owner and hash of several files in one probe, for file_content."""
    paths = [p for p in dict.fromkeys(paths) if p not in ctx.file_states]
    if len(paths) < 2:
        return  # file_content probes a single file itself
    parts = []
    for i, path in enumerate(paths):
        parts.append(f"echo @@{i}; {{ {_state_probe(path)}; }} 2>/dev/null && echo @@ok")
    out = ctx.probe("; ".join(parts), sudo=True).stdout
    found: dict[int, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@@") and line[2:].isdigit():
            current = found.setdefault(int(line[2:]), [])
        elif current is not None:
            current.append(line)
    for i, path in enumerate(paths):
        lines = found.get(i, [])
        ok = bool(lines) and lines[-1] == "@@ok"
        ctx.file_states[path] = _state("\n".join(lines[:-1]) + "\n", ok)


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
    if dest in ctx.file_states:
        exists, current_meta, current_hash, key_material = ctx.file_states[dest]
    else:
        probe = ctx.probe(_state_probe(dest), sudo=True)
        exists, current_meta, current_hash, key_material = _state(probe.stdout, probe.ok)
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
            old = ""
            if exists:
                read = ctx.probe(
                    shell.cmd("head", "-c", str(MAX_DIFF_BYTES + 1), "--", dest), sudo=True
                )
                old = read.stdout
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
    probe = ctx.probe(
        shell.cmd("systemctl", "show", "-p", "UnitFileState", "-p", "ActiveState", "--", unit)
    )
    state = dict(line.split("=", 1) for line in probe.stdout.splitlines() if "=" in line)
    changes = []
    is_enabled = state.get("UnitFileState") in ("enabled", "enabled-runtime", "static", "alias")
    if enabled and not is_enabled:
        changes.append(
            Change(f"enable {unit} at boot", (Run(shell.cmd("systemctl", "enable", "--", unit)),))
        )
    elif not enabled and is_enabled:
        changes.append(
            Change(f"disable {unit} at boot", (Run(shell.cmd("systemctl", "disable", "--", unit)),))
        )
    active = state.get("ActiveState") in ("active", "activating", "reloading")
    if running and not active:
        changes.append(Change(f"start {unit}", (Run(shell.cmd("systemctl", "start", "--", unit)),)))
    elif not running and active:
        changes.append(Change(f"stop {unit}", (Run(shell.cmd("systemctl", "stop", "--", unit)),)))
    return changes
