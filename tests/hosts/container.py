"""systemd-nspawn test hosts: Debian 12 with systemd as PID 1, sshd on a loopback port.

The container shares this machine's network (sshd binds 127.0.0.1:PORT only), so nothing
that reconfigures interfaces may run inside it. A wrapper restarts nspawn when it exits
with 133 (`systemctl reboot` inside), which gives real reboot cycles.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from common import (
    CACHE,
    STATE,
    SUDO_PASSWORD,
    USER,
    TestHost,
    ensure_key,
    free_port,
    known_hosts_lines,
    log,
    save_host,
    ssh,
    stop,
    wait_for_ssh,
    write_inventory,
)

MIRROR = os.environ.get("PROVISION_TESTHOST_MIRROR", "http://deb.debian.org/debian")
INCLUDE = "systemd-sysv,dbus,openssh-server,sudo,python3,iproute2,ca-certificates"
CONFIGURE = f"""
set -e
useradd -m -s /bin/bash {USER}
useradd -m -s /bin/bash pw{USER}
echo 'pw{USER}:{SUDO_PASSWORD}' | chpasswd
echo '{USER} ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/{USER}
echo 'pw{USER} ALL=(ALL:ALL) ALL' > /etc/sudoers.d/pw{USER}
chmod 0440 /etc/sudoers.d/{USER} /etc/sudoers.d/pw{USER}
for home in /root /home/{USER} /home/pw{USER}; do
  mkdir -p $home/.ssh; cp /tmp/testhost.pub $home/.ssh/authorized_keys
  chmod 700 $home/.ssh; chmod 600 $home/.ssh/authorized_keys
done
chown -R {USER}: /home/{USER}/.ssh; chown -R pw{USER}: /home/pw{USER}/.ssh
printf 'ListenAddress 127.0.0.1\\nPasswordAuthentication no\\n' > /etc/ssh/sshd_config.d/10-testhost.conf
echo testhost > /etc/hostname
echo "127.0.1.1 testhost" >> /etc/hosts
rm -f /tmp/testhost.pub
"""
RECIPE = f"mmdebstrap --variant=important --include={INCLUDE} bookworm {MIRROR}\n{CONFIGURE}"


def build() -> Path:
    """The cached base rootfs (rebuilt when the recipe above changes)."""
    digest = hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
    final = CACHE / f"container-{digest}" / "rootfs"
    if final.is_dir():
        return final
    key = ensure_key()
    work = final.parent.with_name(final.parent.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    log(f"building container rootfs {final.parent.name} with mmdebstrap (about 40 s)")
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=important",
            f"--include={INCLUDE}",
            "bookworm",
            str(rootfs),
            MIRROR,
        ],
        check=True,
    )
    shutil.copy(key.with_suffix(".pub"), rootfs / "tmp" / "testhost.pub")
    subprocess.run(["chroot", str(rootfs), "sh", "-c", CONFIGURE], check=True)
    work.rename(final.parent)
    return final


def up(
    name: str, extra_vars: dict[str, str] | None = None, boot_timeout_s: float = 120
) -> TestHost:
    """Copy the rootfs, boot it, wait for SSH; returns the host (inventory written)."""
    base = build()
    state = STATE / name
    if state.exists():
        down(name)
    state.mkdir(parents=True)
    rootfs = state / "rootfs"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)], check=True)
    port = free_port()
    conf = rootfs / "etc/ssh/sshd_config.d/10-testhost.conf"
    conf.write_text(conf.read_text() + f"Port {port}\n")
    known = state / "known_hosts"
    known.write_text(known_hosts_lines(list((rootfs / "etc/ssh").glob("ssh_host_*_key.pub")), port))
    host = TestHost(
        name=name,
        kind="container",
        addr="127.0.0.1",
        port=port,
        user=USER,
        key_file=ensure_key(),
        known_hosts=known,
        inventory=state / "inventory.ini",
        state_dir=state,
    )
    # 133 is nspawn's exit code for a reboot inside: start it again, like a real machine.
    loop = (
        'while :; do systemd-nspawn -q -D "$0" -b --register=no --keep-unit -M "$1"; rc=$?; '
        '[ "$rc" -eq 133 ] || exit "$rc"; done'
    )
    with open(state / "console.log", "ab") as console:
        proc = subprocess.Popen(
            ["sh", "-c", loop, str(rootfs), f"th-{name}"],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host.pid = proc.pid
    save_host(host)
    log(f"booting container {name} (sshd on 127.0.0.1:{port})")
    wait_for_ssh(host, boot_timeout_s, is_alive=lambda: proc.poll() is None)
    ssh(host, "systemctl is-system-running --wait || true", timeout=boot_timeout_s)
    write_inventory(host, extra_vars)
    save_host(host)
    return host


def down(name: str) -> None:
    """Power the container off (or kill what we started) and delete its state."""
    stop(name, grace_s=20)
