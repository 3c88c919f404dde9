"""A throw-away sshd on 127.0.0.1 for the Remote tests: temporary host keys, an ed25519
client key, root login by key only. It touches only a temporary folder on this machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from provision.remote import Connection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, require_tier):
    """Start sshd on a free loopback port; yield (port, key file, known_hosts file)."""
    if os.geteuid() != 0:
        require_tier("integration", "needs root to run sshd")
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).exists() or not shutil.which("ssh-keygen"):
        require_tier("integration", "needs openssh-server (apt-get install openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    d.chmod(0o755)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "hostkey"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "id"], check=True)
    (d / "authorized_keys").write_text((d / "id.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
        f"PidFile {d}/sshd.pid\nUsePAM no\nSubsystem sftp internal-sftp\n"
    )
    with open(d / "log", "w") as log:
        proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stderr=log)
    host_pub = (d / "hostkey.pub").read_text().split()
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield {"port": port, "key": d / "id", "known_hosts": known, "dir": d}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def connection(sshd) -> Connection:
    return Connection(
        host="loopback",
        addr="127.0.0.1",
        port=sshd["port"],
        user="root",
        key_file=str(sshd["key"]),
        known_hosts=str(sshd["known_hosts"]),
    )
