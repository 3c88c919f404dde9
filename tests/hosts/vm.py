"""qemu (TCG) test hosts: a Debian 12 VM with its own kernel, GRUB and NIC, over real SSH.

For what a container cannot prove: kernel headers and DKMS, initramfs, reboots through GRUB,
netplan on a real NIC. /dev/kvm here cannot boot a stock kernel, so qemu runs TCG. The image
is built once (mmdebstrap → ext4 with `mke2fs -d` at a 1 MiB offset, no loop device; GRUB
installed by one short boot with `init=`), cached by a hash of this recipe; each `up` boots
a qcow2 overlay with SSH forwarded to a free port on 127.0.0.1 (user-mode networking).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from common import (
    CACHE,
    STATE,
    USER,
    TestHost,
    ensure_key,
    free_port,
    known_hosts_lines,
    log,
    save_host,
    stop,
    wait_for_ssh,
    write_inventory,
)
from container import CONFIGURE, MIRROR

DISK_MB = 20 * 1024
INCLUDE = (
    "linux-image-amd64,grub-pc,systemd-sysv,dbus,openssh-server,sudo,python3,iproute2,"
    "ca-certificates,udev,kmod,initramfs-tools"
)
VM_CONFIGURE = r"""
set -e
printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' > /etc/systemd/network/90-default-dhcp.network
systemctl enable systemd-networkd
echo 'nameserver 10.0.2.3' > /etc/resolv.conf
echo '/dev/vda1 / ext4 errors=remount-ro 0 1' > /etc/fstab
sed -i 's/^ListenAddress.*//' /etc/ssh/sshd_config.d/10-testhost.conf
cat > /etc/default/grub <<'G'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="console=ttyS0,115200"
GRUB_TERMINAL=serial
G
cat > /usr/local/sbin/testhost-install-grub <<'S'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys
mount -o remount,rw /
grub-install /dev/vda && update-grub && echo TESTHOST-GRUB-OK > /dev/console
sync; echo o > /proc/sysrq-trigger
S
chmod 755 /usr/local/sbin/testhost-install-grub
: > /etc/machine-id
"""
RECIPE = f"{INCLUDE}\n{MIRROR}\n{CONFIGURE}\n{VM_CONFIGURE}\n{DISK_MB}"
QEMU = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-nographic"]


def build() -> Path:
    """The cached base image (qcow2); its host keys lie beside it in hostkeys/."""
    digest = hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
    final = CACHE / f"vm-{digest}"
    if (final / "base.qcow2").exists():
        return final / "base.qcow2"
    key = ensure_key()
    work = final.with_name(final.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    log(f"building VM image {final.name} (mmdebstrap, mke2fs, one TCG boot for GRUB: ~5 min)")
    subprocess.run(
        ["mmdebstrap", "--quiet", "--mode=root", "--variant=important",
         "--components=main contrib non-free non-free-firmware",
         f"--include={INCLUDE}", "bookworm", str(rootfs), MIRROR],
        check=True,
    )  # fmt: skip
    shutil.copy(key.with_suffix(".pub"), rootfs / "tmp" / "testhost.pub")
    subprocess.run(["chroot", str(rootfs), "sh", "-c", CONFIGURE + VM_CONFIGURE], check=True)
    keys = work / "hostkeys"
    keys.mkdir()
    for pub in (rootfs / "etc/ssh").glob("ssh_host_*_key.pub"):
        shutil.copy(pub, keys / pub.name)
    shutil.copy(sorted((rootfs / "boot").glob("vmlinuz-*"))[-1], work / "vmlinuz")
    shutil.copy(sorted((rootfs / "boot").glob("initrd.img-*"))[-1], work / "initrd.img")
    raw = work / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(DISK_MB * 1024 * 1024)
    subprocess.run(
        ["sfdisk", "-q", str(raw)], input="label: dos\nstart=2048, type=83, bootable\n",
        text=True, check=True,
    )  # fmt: skip
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(rootfs), "-E", f"offset={2048 * 512}",
         str(raw), f"{DISK_MB - 1}M"],
        check=True,
    )  # fmt: skip
    shutil.rmtree(rootfs)
    log("installing GRUB with one short TCG boot (3-4 min)")
    grub = subprocess.run(
        [*QEMU, "-m", "2048", "-smp", "2", "-no-reboot",
         "-drive", f"file={raw},format=raw,if=virtio",
         "-kernel", str(work / "vmlinuz"), "-initrd", str(work / "initrd.img"),
         "-append", "root=/dev/vda1 rw console=ttyS0 init=/usr/local/sbin/testhost-install-grub"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    (work / "grub-install.log").write_text(grub.stdout + grub.stderr)
    if "TESTHOST-GRUB-OK" not in grub.stdout:
        raise RuntimeError(f"GRUB install boot failed; see {work / 'grub-install.log'}")
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")], check=True
    )
    raw.unlink()
    work.rename(final)
    return final / "base.qcow2"


def up(
    name: str,
    extra_vars: dict[str, str] | None = None,
    boot_timeout_s: float = 400,
    memory_mb: int = 4096,
    cpus: int = 2,
) -> TestHost:
    """Boot a fresh overlay of the image; wait for SSH; write the inventory."""
    base = build()
    state = STATE / name
    if state.exists():
        down(name)
    state.mkdir(parents=True)
    overlay = state / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)],
        check=True,
    )
    port = free_port()
    known = state / "known_hosts"
    known.write_text(known_hosts_lines(list((base.parent / "hostkeys").glob("*.pub")), port))
    host = TestHost(
        name=name, kind="vm", addr="127.0.0.1", port=port, user=USER, key_file=ensure_key(),
        known_hosts=known, inventory=state / "inventory.ini", state_dir=state,
    )  # fmt: skip
    argv = [
        *QEMU, "-m", str(memory_mb), "-smp", str(cpus),
        "-drive", f"file={overlay},format=qcow2,if=virtio",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        "-monitor", f"unix:{state / 'monitor.sock'},server,nowait",
    ]  # fmt: skip
    with open(state / "console.log", "ab") as console:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    host.pid = proc.pid
    save_host(host)
    log(f"booting VM {name} (TCG; SSH forwarded to 127.0.0.1:{port}; ~1 min)")
    wait_for_ssh(host, boot_timeout_s, is_alive=lambda: proc.poll() is None)
    write_inventory(host, {"provision_reboot_timeout_s": "600", **(extra_vars or {})})
    save_host(host)
    return host


def down(name: str) -> None:
    """Power the VM off (or kill the qemu we started) and delete its state."""
    stop(name, grace_s=60)
