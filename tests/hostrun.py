"""Helpers for the real-host tiers: run the provision CLI against a test host, reboot one."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _repo_path() -> str:
    """PYTHONPATH with this checkout first: the CLI under test is this tree's, whatever copy
    `pip install -e` points at."""
    repo = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH", "")
    return repo + (os.pathsep + rest if rest else "")


def provision_runner(host, log_dir: Path):
    """Run the real `provision` CLI as a subprocess against a test host (its inventory by
    default); asserts the exit code unless check_rc=None."""
    import subprocess

    def run(*args: str, env: dict | None = None, check_rc: int | None = 0, timeout_s: int = 3600):
        cmd = [sys.executable, "-m", "provision", *args]
        if "-i" not in args and "--inventory" not in args:
            cmd += ["-i", str(host.inventory)]
        cmd += ["--log-dir", str(log_dir)]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=log_dir.parent,
            timeout=timeout_s,
            env={**os.environ, "PYTHONPATH": _repo_path(), **(env or {})},
        )
        if check_rc is not None:
            assert proc.returncode == check_rc, (
                f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


def connection_to(host):
    """A provision Connection to a test host as its sudo user, strict host keys."""
    from provision.remote import Connection

    return Connection(
        host=host.name,
        addr=host.addr,
        port=host.port,
        user=host.user,
        key_file=str(host.key_file),
        known_hosts=str(host.known_hosts),
    )


def reboot_boot_ids(host, timeout_s: int) -> tuple[str, str]:
    """Reboot a test host through provision's Remote; the boot ids before and after."""
    from provision.remote import connect

    remote = connect(connection_to(host))
    try:
        before = remote.boot_id()
        remote.reboot(timeout_s=timeout_s)
        return before, remote.boot_id()
    finally:
        remote.close()


def missing_tools(tools: tuple[str, ...], packages: str) -> str:
    """Why a real-host tier cannot run here ('' when it can): root and the tools."""
    import shutil

    if os.geteuid() != 0:
        return "needs root (mmdebstrap, chroot, nspawn/qemu, ip netns)"
    for tool in tools:
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install {packages})"
    return ""


def require_lan_tier(require_tier) -> None:
    """What LAN container hosts (tests/hosts/lan.py) need here, or the tier's skip/failure."""
    reason = missing_tools(
        ("mmdebstrap", "systemd-nspawn", "ssh", "ip"),
        "mmdebstrap systemd-container openssh-client iproute2",
    )
    if reason:
        require_tier("container", reason)


def booted(kind: str, require_tier, **up_kwargs):
    """Generator for a module fixture: a fresh test host of this kind, removed afterwards."""
    import uuid

    if kind == "container":
        reason = missing_tools(
            ("mmdebstrap", "systemd-nspawn", "ssh"), "mmdebstrap systemd-container openssh-client"
        )
    else:
        reason = missing_tools(
            ("mmdebstrap", "qemu-system-x86_64", "qemu-img", "sfdisk", "mke2fs", "ssh"),
            "mmdebstrap qemu-system-x86 qemu-utils fdisk",
        )
    if reason:
        require_tier(kind, reason)
    harness = __import__(kind)
    name = f"{kind[0]}{uuid.uuid4().hex[:6]}"
    host = harness.up(name, **up_kwargs)
    try:
        yield host
    finally:
        harness.down(name)
