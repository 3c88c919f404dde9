"""Shared pieces of the disposable test-host harness: paths, the SSH key, the TestHost
record, inventory files, and ssh through the OpenSSH client with strict host-key checking.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("PROVISION_TESTHOST_CACHE", "/var/cache/provision-testhost"))
STATE = Path(os.environ.get("PROVISION_TESTHOST_STATE", "/tmp/provision-testhosts"))
USER = "tester"
RELEASES = ("bookworm", "trixie")  # Debian 12 and 13: the suites Debian's mirror serves
DEFAULT_RELEASE = "bookworm"
SUDO_PASSWORD = "tester-sudo-pw"  # pwtester's sudo password inside every test host


@dataclass
class TestHost:
    """A running disposable host and how to reach it."""

    __test__ = False  # not a pytest test class

    name: str
    kind: str  # container | vm
    addr: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    inventory: Path
    state_dir: Path
    pid: int | None = None
    extras: dict = field(default_factory=dict)


def log(message: str) -> None:
    """Progress for people, on stderr (stdout carries the inventory path)."""
    print(f"[testhost] {message}", file=sys.stderr, flush=True)


def ensure_key() -> Path:
    """The ed25519 key pair every test host accepts (generated once)."""
    key = CACHE / "id_ed25519"
    if not key.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "provision-testhost",
                "-f",
                str(key),
            ],
            check=True,
        )
    return key


CLONE_NEWNET = 0x40000000  # setns(2)'s flag for a network namespace


def setns(netns: str | Path | int) -> None:
    """Move the calling THREAD into a network namespace (a /run/netns/NAME path, or an open fd
    such as /proc/self/ns/net's). A socket keeps the namespace it was created in: the LAN relay
    and proxy (lan.py) create one socket on one side, then switch. Python 3.11 has no os.setns,
    hence ctypes."""
    import ctypes

    fd = netns if isinstance(netns, int) else os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        if fd is not netns:
            os.close(fd)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_argv(host: TestHost, user: str) -> list[str]:
    """The OpenSSH client command line for USER on the host (strict host-key checking)."""
    return [
        "ssh",
        "-i",
        str(host.key_file),
        "-p",
        str(host.port),
        "-o",
        f"UserKnownHostsFile={host.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        f"{user}@{host.addr}",
    ]


def ssh(
    host: TestHost, command: str, user: str = "root", check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run a command on the host with the OpenSSH client."""
    return subprocess.run(
        [*ssh_argv(host, user), command],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def wait_for_ssh(host: TestHost, timeout_s: float, is_alive=lambda: True) -> None:
    """Wait until `tester` can log in."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive():
            raise RuntimeError(f"{host.name} stopped while booting; see {host.state_dir}")
        try:
            if ssh(host, "true", user=USER, check=False, timeout=10).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1)
    raise TimeoutError(f"{host.name}: no SSH on port {host.port} after {timeout_s:.0f}s")


def known_hosts_lines(pub_files: list[Path], port: int) -> str:
    """known_hosts lines for the host keys, as `[127.0.0.1]:PORT type key`."""
    lines = []
    for pub in sorted(pub_files):
        kind, key = pub.read_text().split()[:2]
        lines.append(f"[127.0.0.1]:{port} {kind} {key}\n")
    return "".join(lines)


def ca_certificates() -> list[Path]:
    """This machine's extra CA certificates (a TLS-intercepting egress proxy's, say)."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


# Test hosts have no GPU: the GPU stack is off unless a test turns it on (extra_vars).
GPU_STACK_OFF = {
    "driver.enabled": "false",
    "cuda.enabled": "false",
    "conda.enabled": "false",
    "pytorch.enabled": "false",
}


def write_inventory(host: TestHost, extra_vars: dict[str, str] | None = None) -> Path:
    """The inventory file for the host: connection variables and the tests' settings."""
    values = dict(extra_vars or {})
    certs = ca_certificates()
    if certs:
        values.setdefault("base.ca_certificates", ",".join(str(c) for c in certs))
    lines = [
        "# Written by tests/hosts/testhost.py for a disposable test host; deleted by `down`.",
        "[testhosts]",
        f"{host.name} ansible_host={host.addr} ansible_port={host.port} ansible_user={host.user} "
        f"ansible_ssh_private_key_file={host.key_file} provision_known_hosts={host.known_hosts}",
    ]
    if values:
        lines += ["", "[testhosts:vars]", *(f"{k}={v}" for k, v in values.items())]
    host.inventory.write_text("\n".join(lines) + "\n")
    return host.inventory


def save_host(host: TestHost) -> None:
    """Record the host in STATE/NAME/host.json, so `down` and `ssh` work from other processes."""
    data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(host).items()}
    (host.state_dir / "host.json").write_text(json.dumps(data, indent=2))


def load_host(name: str) -> TestHost:
    """The host recorded by save_host (FileNotFoundError when there is none)."""
    data = json.loads((STATE / name / "host.json").read_text())
    for key in ("key_file", "known_hosts", "inventory", "state_dir"):
        data[key] = Path(data[key])
    return TestHost(**data)


def is_alive(pid: int | None) -> bool:
    """Whether a process we started is still running (a zombie counts as gone)."""
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def stop(name: str, grace_s: float) -> None:
    """Power a host off over SSH, else kill the process group we started; delete its state."""
    state = STATE / name
    if not state.exists():
        return
    try:
        host = load_host(name)
    except (OSError, ValueError):
        host = None
    if host and is_alive(host.pid):
        with contextlib.suppress(subprocess.TimeoutExpired):
            ssh(host, "systemctl poweroff", check=False, timeout=20)
        deadline = time.monotonic() + grace_s
        while is_alive(host.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if is_alive(host.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(host.pid, signal.SIGKILL)
            time.sleep(1)
    shutil.rmtree(state, ignore_errors=True)
