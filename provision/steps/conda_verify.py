"""conda's verify checks: behaviour through testinfra (conda runs from the prefix, the prefix
is shared with the conda group, .condarc lists the channels, a user's login shell has `conda`).

Each check takes a testinfra host and the conda step's Settings (provision.steps.conda imports
this module for its STEP, so this one does not import it back).
"""

from __future__ import annotations

from provision import shell
from provision.errors import Skip
from provision.groupshare import unshared_probe


def _enabled(s) -> None:
    if not s.enabled:
        raise Skip("conda.enabled is off")


def verify_conda_runs(host, s) -> None:
    """conda --version runs from the prefix"""
    _enabled(s)
    out = host.run(shell.cmd(f"{s.prefix}/bin/conda", "--version"))
    assert out.rc == 0, f"{s.prefix}/bin/conda --version failed: {out.stderr.strip()[-300:]}"
    assert out.stdout.startswith("conda "), f"unexpected version line: {out.stdout!r}"


def verify_prefix_shared(host, s) -> None:
    """the prefix belongs to the conda group, group-writable with setgid directories"""
    _enabled(s)
    prefix = host.file(s.prefix)
    assert prefix.is_directory, f"{s.prefix} is not a directory"
    assert prefix.group == s.group, f"{s.prefix} belongs to group {prefix.group}, not {s.group}"
    assert prefix.mode & 0o2070 == 0o2070, f"{s.prefix} has mode {prefix.mode:o}, want g+rwxs"
    stray = host.run(unshared_probe(s.prefix, s.group)).stdout.strip()
    assert not stray, f"{stray} is not shared with group {s.group}"


def verify_condarc(host, s) -> None:
    """.condarc lists the channels and keeps base inactive"""
    _enabled(s)
    text = host.file(f"{s.prefix}/.condarc").content_string
    assert "auto_activate_base: false" in text, ".condarc lacks auto_activate_base: false"
    for channel in s.channels:
        assert f"  - {channel}\n" in text, f".condarc does not list channel {channel}"


def verify_login_shell_function(host, s) -> None:
    """a configured user's login shell has the `conda` shell function"""
    _enabled(s)
    names = list(s.users)
    if not names:
        line = host.run(shell.cmd("getent", "group", s.group)).stdout.strip()
        names = [m for m in line.split(":")[3].split(",") if m] if line.count(":") >= 3 else []
    assert names, f"no user is in group {s.group}"
    for name in names:
        out = host.run(shell.cmd("su", "-l", name, "-s", "/bin/bash", "-c", "type -t conda"))
        assert out.stdout.strip() == "function", (
            f"{name}'s login shell has no conda function: {(out.stdout + out.stderr)[-300:]}"
        )
