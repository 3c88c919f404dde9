"""qemu (TCG) test hosts: a Debian 12 or 13 VM with its own kernel, GRUB and NICs, over SSH.

For what a container cannot prove: kernel headers and DKMS, initramfs, reboots through GRUB,
netplan on a real NIC. /dev/kvm on these machines cannot boot a stock kernel, so qemu runs
TCG (`-accel tcg,thread=multi -cpu max`), which also works on any CI runner without KVM.

`build(release)` makes the base image of a release (bookworm or trixie) once, cached under
CACHE/vm-<hash of the release's recipe and key>/: mmdebstrap (the suite + -updates +
-security, main contrib non-free non-free-firmware) → a chroot configuration step (trixie:
its sources rewritten as deb822 `debian.sources`) → ext4 written by `mke2fs -d` at a 1 MiB
offset in a sparse raw file with an sfdisk partition table (no loop device, no mount) → one
short TCG boot with `init=` a script that runs grub-install + update-grub and powers off →
qcow2 (40 GiB virtual).

`up(name, release=...)` boots a qcow2 overlay of it in the background with SSH forwarded from
a free port on 127.0.0.1 (user-mode networking, so the guest reaches the Debian mirror
through this machine, which gets no new addresses), waits for SSH and writes the inventory
and host.json. `nic2="netns"` adds a second NIC: a tap that qemu creates and opens, then
moved into a network namespace of our own whose end of it is 192.168.77.1/24 (nothing in the
root namespace). `lan=NAME, lan_addr=ADDR` adds a NIC on a test LAN (lan.py): a tap on the
LAN's bridge, the guest given ADDR, its name and the members' names over SSH, so VMs (and
containers) on one LAN reach each other by name. `down(name)` powers it off (else kills the
qemu we started), takes it off its LAN, deletes the namespace and the state. A
`systemctl reboot` inside comes back by itself: qemu keeps running and GRUB boots the disk
again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import lan as lan_net
from common import (
    CACHE,
    DEFAULT_RELEASE,
    GPU_STACK_OFF,
    RELEASES,
    STATE,
    SUDO_PASSWORD,
    USER,
    TestHost,
    ensure_key,
    free_port,
    known_hosts_lines,
    load_host,
    log,
    save_host,
    ssh,
    wait_for_ssh,
    write_inventory,
)

MIRROR = os.environ.get("PROVISION_TESTHOST_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "PROVISION_TESTHOST_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
COMPONENTS = "main contrib non-free non-free-firmware"


def sources(release: str) -> tuple[str, ...]:
    """The release's apt lines for mmdebstrap: the suite, -updates and -security."""
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}: use one of {', '.join(RELEASES)}")
    return (
        f"deb {MIRROR} {release} {COMPONENTS}",
        f"deb {MIRROR} {release}-updates {COMPONENTS}",
        f"deb {SECURITY_MIRROR} {release}-security {COMPONENTS}",
    )


INCLUDE = (
    "linux-image-amd64,grub-pc,initramfs-tools,zstd,systemd-sysv,systemd-resolved,udev,kmod,"
    "dbus,openssh-server,sudo,python3,ca-certificates,curl,iproute2,iputils-ping"
)
DISK_GIB = 40
PART_START = 2048  # sectors of 512 bytes: the root partition starts at 1 MiB
NIC2_SUBNET = "192.168.77"  # .1 is our end, inside the VM's own namespace only
LAN_NETWORK = "/etc/systemd/network/10-testhost-lan.network"  # sorts before 90-default-dhcp
GRUB_MARK = "TESTHOST-GRUB-OK"

CONFIGURE = rf"""
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
rm -f /tmp/testhost.pub
printf 'PasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n' \
  > /etc/ssh/sshd_config.d/10-testhost.conf

echo testhost > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\ttesthost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
  > /etc/hosts
echo '/dev/vda1 / ext4 errors=remount-ro 0 1' > /etc/fstab

# DHCP on every en* NIC; netplan's 10-netplan-*.network files take precedence over this one.
printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' \
  > /etc/systemd/network/90-default-dhcp.network
systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf

# Boot fast and keep the tests deterministic: nothing waits for network-online, no first-boot
# prompts, no apt/man-db/fstrim timers that take the dpkg lock or CPU in the middle of a test.
systemctl mask systemd-networkd-wait-online.service systemd-firstboot.service
for t in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer; do
  systemctl disable $t 2>/dev/null || true
done

cat > /etc/default/grub <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
EOF
# So that a grub-pc upgrade inside the VM reinstalls to the right disk without asking.
echo 'grub-pc grub-pc/install_devices multiselect /dev/vda' | debconf-set-selections

cat > /usr/local/sbin/testhost-install-grub <<'EOF'
#!/bin/sh
# init= of the one boot during the image build: install GRUB on the disk, then power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -o remount,rw /
if grub-install --target=i386-pc /dev/vda && update-grub; then echo {GRUB_MARK}; fi
sync; mount -o remount,ro /; sync
echo o > /proc/sysrq-trigger
while :; do :; done
EOF
chmod 755 /usr/local/sbin/testhost-install-grub

# A small initramfs with only what this virtual machine needs to mount its root: unpacked
# and regenerated (DKMS, kernel upgrades) several times faster under TCG than MODULES=most.
sed -i 's/^MODULES=.*/MODULES=list/' /etc/initramfs-tools/initramfs.conf
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\ncrc32c_generic\n' >> /etc/initramfs-tools/modules
update-initramfs -u -k all

apt-get clean
# A fresh machine-id on each VM's first boot; the SSH host keys are this image's.
: > /etc/machine-id
"""

# Trixie as Debian 13 installs it (and as the issue met it): the sources in deb822 form,
# /etc/apt/sources.list.d/debian.sources, each stanza with Signed-By naming the .pgp keyring,
# instead of the one-line sources.list mmdebstrap writes. Run after CONFIGURE; bookworm's
# image (and so its recipe and cache key) does not have this step.
DEB822_SOURCES = rf"""
set -e
test -s /usr/share/keyrings/debian-archive-keyring.pgp
release=$(. /etc/os-release; echo $VERSION_CODENAME)
cat > /etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: {MIRROR}
Suites: $release $release-updates
Components: {COMPONENTS}
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp

Types: deb
URIs: {SECURITY_MIRROR}
Suites: $release-security
Components: {COMPONENTS}
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp
EOF
rm -f /etc/apt/sources.list
"""
RELEASE_CONFIGURE = {"bookworm": "", "trixie": DEB822_SOURCES}

# qemu for every boot. Device addresses are pinned, so the guest's NICs are always ens3 (SSH,
# slirp) and ens4 (nic2). cache=unsafe: dpkg's many fsyncs cost nothing; the disks are
# disposable (a guest reboot is fine: qemu keeps running and holds the data).
QEMU = (
    "qemu-system-x86_64",
    "-machine",
    "pc",
    "-accel",
    "tcg,thread=multi",
    "-cpu",
    "max",
    "-display",
    "none",
    "-vga",
    "none",
    "-monitor",
    "none",
    "-device",
    "virtio-rng-pci,addr=0x6",
)


def recipe(release: str) -> str:
    """What the release's cached image is built from (its hash names the cache folder).

    bookworm's text is the one from before releases were a parameter, so its image stays.
    """
    extra = [RELEASE_CONFIGURE[release]] if RELEASE_CONFIGURE[release] else []
    disk = f"{DISK_GIB} GiB at {PART_START}"
    return "\n".join(["vm recipe 3", *sources(release), INCLUDE, CONFIGURE, *extra, disk, *QEMU])


def _disk_args(path: Path, fmt: str) -> list[str]:
    return [
        "-drive",
        f"file={path},format={fmt},if=none,id=disk0,cache=unsafe,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=disk0,addr=0x5",
    ]


def build(release: str = DEFAULT_RELEASE) -> Path:
    """The cached base image (qcow2) of a release, built once per recipe and key; its path.

    Beside it: hostkeys/ (the guest's SSH host public keys), build.log, grub-install.log.
    An image older than PROVISION_TESTHOST_VM_MAX_AGE_DAYS (default 7; 0: never) is built
    again: the mirror drops the headers of superseded kernels, and the image's kernel must
    still have its linux-headers package there.
    """
    key = ensure_key()
    text = recipe(release) + key.with_suffix(".pub").read_text()
    final = CACHE / f"vm-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    base = final / "base.qcow2"
    if _fresh(base):
        return base
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "vm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building it right now
        if _fresh(base):
            return base
        work = final.with_name(final.name + ".building")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            _build_into(work, key, release)
        except BaseException:
            # Keep the logs for a look; drop the big pieces.
            shutil.rmtree(work / "rootfs", ignore_errors=True)
            with contextlib.suppress(OSError):
                (work / "disk.raw").unlink()
            raise
        # A stale image may still back running VMs: they keep its open file; new ones get this.
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        work.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    return base


def _fresh(base: Path) -> bool:
    max_age_days = float(os.environ.get("PROVISION_TESTHOST_VM_MAX_AGE_DAYS", "7"))
    try:
        age = time.time() - base.stat().st_mtime
    except OSError:
        return False
    return max_age_days <= 0 or age < max_age_days * 86400


def _build_into(work: Path, key: Path, release: str) -> None:
    started = time.monotonic()
    rootfs = work / "rootfs"
    log(
        f"building VM image {work.name} ({release}: mmdebstrap, mke2fs, one TCG boot for GRUB:"
        " ~3 min)"
    )
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=important",
            f"--include={INCLUDE}",
            release,
            str(rootfs),
            *sources(release),
        ],
        check=True,
    )
    shutil.copy(key.with_suffix(".pub"), rootfs / "tmp" / "testhost.pub")
    subprocess.run(["chroot", str(rootfs), "sh", "-c", CONFIGURE], check=True)
    if RELEASE_CONFIGURE[release]:
        subprocess.run(["chroot", str(rootfs), "sh", "-c", RELEASE_CONFIGURE[release]], check=True)
    (work / "recipe.txt").write_text(recipe(release))
    hostkeys = work / "hostkeys"
    hostkeys.mkdir()
    for pub in (rootfs / "etc/ssh").glob("ssh_host_*_key.pub"):
        shutil.copy(pub, hostkeys / pub.name)
    shutil.copy(sorted((rootfs / "boot").glob("vmlinuz-*"))[-1], work / "vmlinuz")
    shutil.copy(sorted((rootfs / "boot").glob("initrd.img-*"))[-1], work / "initrd.img")
    t_rootfs = time.monotonic() - started

    raw = work / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(DISK_GIB << 30)
    subprocess.run(
        ["sfdisk", "-q", str(raw)],
        input=f"label: dos\nstart={PART_START}, type=83, bootable\n",
        text=True,
        check=True,
    )
    offset = PART_START * 512
    part_mib = (DISK_GIB << 10) - offset // (1 << 20)
    subprocess.run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "testhost-root",
            "-d",
            str(rootfs),
            "-E",
            f"offset={offset}",
            str(raw),
            f"{part_mib}M",
        ],
        check=True,
    )
    shutil.rmtree(rootfs)
    t_mkfs = time.monotonic() - started

    log("installing GRUB with one short TCG boot (about 1 min)")
    serial = work / "grub-install.log"
    argv = [
        *QEMU,
        "-m",
        "2048",
        "-smp",
        "2",
        "-no-reboot",
        "-serial",
        f"file:{serial}",
        *_disk_args(raw, "raw"),
        "-kernel",
        str(work / "vmlinuz"),
        "-initrd",
        str(work / "initrd.img"),
        "-append",
        "root=/dev/vda1 rw console=ttyS0 panic=1 init=/usr/local/sbin/testhost-install-grub",
    ]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"GRUB install boot timed out; see {serial}") from None
    text = serial.read_text(errors="replace") if serial.exists() else ""
    if GRUB_MARK not in text:
        raise RuntimeError(
            f"GRUB install boot failed (qemu rc {proc.returncode}: {out.decode()[-500:]}); "
            f"see {serial}"
        )
    fsck = subprocess.run(
        ["e2fsck", "-f", "-n", f"{raw}?offset={offset}"], capture_output=True, text=True
    )
    if fsck.returncode != 0:
        raise RuntimeError(f"the root fs is not clean after the GRUB boot:\n{fsck.stdout}")
    t_grub = time.monotonic() - started
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")], check=True
    )
    for name in ("disk.raw", "vmlinuz", "initrd.img"):
        (work / name).unlink()
    (work / "base.qcow2").chmod(0o444)  # overlays read it; nothing may write it
    total = time.monotonic() - started
    summary = (
        f"mmdebstrap+configure {t_rootfs:.0f}s, mke2fs {t_mkfs - t_rootfs:.0f}s, "
        f"GRUB boot+fsck {t_grub - t_mkfs:.0f}s, convert {total - t_grub:.0f}s, "
        f"total {total:.0f}s"
    )
    (work / "build.log").write_text(summary + "\n")
    log(f"VM image built: {summary}")


def _netns(name: str) -> tuple[str, str]:
    """The namespace and tap names of VM `name` (an interface name has 15 characters at most)."""
    return f"th-{name}", f"thtap{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _lan_nic(name: str) -> tuple[str, str]:
    """The LAN tap's name and the guest NIC's MAC: one per VM name (a bridge needs MACs apart);
    52:... is locally administered, unicast."""
    digest = hashlib.sha256(f"lan {name}".encode()).hexdigest()
    return f"thlan{digest[:8]}", "52:54:00:" + ":".join(digest[i : i + 2] for i in (8, 10, 12))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _netns_exists(netns: str) -> bool:
    return Path("/run/netns", netns).exists()


def _is_our_qemu(pid: int | None, state: Path) -> bool:
    """Is `pid` alive (not a zombie) and the qemu of this state dir (guards PID reuse)?"""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and str(state / "disk.qcow2") in cmdline


def qmp(state: Path, command: str, timeout: float = 10) -> dict:
    """Send one QMP command (no arguments) to the VM of `state`; return its reply."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(state / "qmp.sock"))
        reader = sock.makefile("r")
        json.loads(reader.readline())  # the greeting
        for cmd in ("qmp_capabilities", command):
            sock.sendall(json.dumps({"execute": cmd}).encode() + b"\n")
            while "event" in (reply := json.loads(reader.readline() or "{}")):
                pass
        return reply


def up(
    name: str,
    extra_vars: dict[str, str] | None = None,
    boot_timeout_s: float = 300,
    memory_mb: int = 4096,
    cpus: int = 2,
    nic2: str | None = None,
    release: str = DEFAULT_RELEASE,
    lan: str | None = None,
    lan_addr: str | None = None,
) -> TestHost:
    """Boot a fresh overlay of the image; wait for SSH; write the inventory and host.json.

    nic2="netns": a second NIC (ens4 in the guest, MAC 52:54:00:77:00:10, unconfigured
    apart from the default DHCP attempt), a tap whose other end is 192.168.77.1/24 in the
    namespace host.extras["netns"]; reach the guest from there with `ip netns exec NS ...`.
    release: the Debian suite (bookworm or trixie) of the image it boots.
    lan, lan_addr: also on that LAN (made if missing: lan.create) at that address, through a
    NIC of its own (ens7, MAC from the name); SSH, the inventory and the default route stay
    the user-mode NIC's. host.extras["lan"]: lan, addr, lan_netns, tap, mac, iface.
    On failure the VM is stopped and the error carries the end of its console log.
    """
    if nic2 not in (None, "netns"):
        raise ValueError(f"nic2 must be None or 'netns', not {nic2!r}")
    if bool(lan) != bool(lan_addr):
        raise ValueError("lan and lan_addr go together")
    base = build(release)
    state = STATE / name
    down(name, graceful=False)  # whatever an earlier host of this name left behind
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
        name=name,
        kind="vm",
        addr="127.0.0.1",
        port=port,
        user=USER,
        key_file=ensure_key(),
        known_hosts=known,
        inventory=state / "inventory.ini",
        state_dir=state,
        extras={"image": str(base), "qmp": str(state / "qmp.sock"), "release": release},
    )
    argv = [
        *QEMU,
        "-name",
        f"testhost-{name}",
        "-m",
        str(memory_mb),
        "-smp",
        str(cpus),
        "-serial",
        f"file:{state / 'console.log'}",
        "-qmp",
        f"unix:{state / 'qmp.sock'},server=on,wait=off",
        *_disk_args(overlay, "qcow2"),
        "-netdev",
        f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0,addr=0x3,mac=52:54:00:12:34:56",
    ]
    if nic2:
        netns, tap = _netns(name)
        argv += [
            "-netdev",
            f"tap,id=n1,ifname={tap},script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=n1,addr=0x4,mac=52:54:00:77:00:10",
        ]
        host.extras.update(netns=netns, tap=tap, nic2_host_addr=f"{NIC2_SUBNET}.1/24")
    if lan:
        try:
            argv += _enlist(host, lan, lan_addr)
        except BaseException:
            down(name, graceful=False)
            raise
    started = time.monotonic()
    with open(state / "qemu.log", "ab") as qlog:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=qlog,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host.pid = proc.pid
    save_host(host)
    try:
        if nic2:
            _move_tap(host, proc)
        if lan:
            _bridge_tap(host, proc)
        log(f"booting VM {name} (TCG; SSH on 127.0.0.1:{port}; about 1 min)")
        wait_for_ssh(host, boot_timeout_s, is_alive=lambda: proc.poll() is None)
        host.extras["boot_to_ssh_s"] = round(time.monotonic() - started, 1)
        log(f"VM {name}: SSH after {host.extras['boot_to_ssh_s']}s")
        if lan:
            _configure_lan(host)
        defaults = {"provision_reboot_timeout_s": "600", **GPU_STACK_OFF}
        write_inventory(host, {**defaults, **(extra_vars or {})})
        save_host(host)
    except BaseException as exc:
        tail = _tail(state / "console.log") + _tail(state / "qemu.log")
        down(name, graceful=False)
        if isinstance(exc, Exception):
            raise RuntimeError(f"VM {name} did not come up: {exc}\n{tail}") from exc
        raise
    return host


def _wait_for_tap(tap: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not Path(f"/sys/class/net/{tap}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"qemu did not create the tap {tap}")
        time.sleep(0.1)


def _move_tap(host: TestHost, proc: subprocess.Popen) -> None:
    """Move the tap qemu created (and holds open) into our namespace; address our end."""
    netns, tap = host.extras["netns"], host.extras["tap"]
    _wait_for_tap(tap, proc)
    _ip("netns", "add", netns)
    _ip("link", "set", tap, "netns", netns)
    _ip("-n", netns, "link", "set", "lo", "up")
    _ip("-n", netns, "addr", "add", f"{NIC2_SUBNET}.1/24", "dev", tap)
    _ip("-n", netns, "link", "set", tap, "up")


def _enlist(host: TestHost, lan: str, addr: str) -> list[str]:
    """Reserve ADDR on the LAN (recorded in state/lan.json first, so down() undoes it); the
    qemu arguments of the LAN NIC."""
    record = lan_net.create(lan)
    tap, mac = _lan_nic(host.name)
    mine = {"lan": lan, "addr": addr, "lan_netns": record["netns"], "tap": tap, "mac": mac}
    host.extras["lan"] = mine
    (host.state_dir / "lan.json").write_text(json.dumps(mine))
    lan_net.enlist(lan, host.name, addr)
    return [
        "-netdev",
        f"tap,id=n2,ifname={tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n2,addr=0x7,mac={mac}",
    ]


def _bridge_tap(host: TestHost, proc: subprocess.Popen) -> None:
    """Move the LAN tap (qemu holds it open; it goes when qemu does) onto the LAN's bridge."""
    mine = host.extras["lan"]
    _wait_for_tap(mine["tap"], proc)
    _ip("link", "set", mine["tap"], "netns", mine["lan_netns"])
    _ip("-n", mine["lan_netns"], "link", "set", mine["tap"], "master", "br0", "up")


def _sudo(host: TestHost, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A script as root through the test user's NOPASSWD sudo (root's own SSH login may be
    off once provision's ssh step ran)."""
    return ssh(host, f"sudo sh -c {shlex.quote(script)}", user=USER, check=False, timeout=timeout)


def _configure_lan(host: TestHost) -> None:
    """Once SSH works: the LAN NIC (found by its MAC) gets ADDR from a networkd file (it
    survives reboots and netplan's networkd restarts), the guest its name, /etc/hosts every
    member; then the others get this one (lan.announce, under the LAN's lock)."""
    mine = host.extras["lan"]
    prefix = lan_net.info(mine["lan"])["subnet"].split("/")[1]
    mac, addr = mine["mac"], mine["addr"]
    network = ["[Match]", f"MACAddress={mac}", "", "[Network]", f"Address={addr}/{prefix}"]
    network += ["LinkLocalAddressing=no", "IPv6AcceptRA=no"]  # no default route: DHCP NIC's

    def configure(members: list[tuple[str, str]]) -> None:
        names = " ".join(h for _a, h in members)
        lines = " ".join(shlex.quote(f"{a} {h}") for a, h in members)
        script = f"""
set -e
dev=
for d in /sys/class/net/*; do
  if [ "$(cat "$d/address")" = {mac} ]; then dev=${{d##*/}}; fi
done
if [ -z "$dev" ]; then echo "no NIC with MAC {mac}" >&2; exit 1; fi
printf '%s\\n' {" ".join(shlex.quote(x) for x in network)} > {LAN_NETWORK}
networkctl reload
networkctl reconfigure "$dev"
i=0
until ip -o -4 addr show dev "$dev" | grep -q " {addr}/"; do
  i=$((i + 1)); [ $i -le 120 ] || {{ echo "networkd gave $dev no {addr}" >&2; exit 1; }}
  sleep 0.5
done
echo {host.name} > /etc/hostname
hostname {host.name}
# No 127.0.1.1 line: a cluster daemon must find its own name at its LAN address (as lan.join).
awk -v names=' {names} ' '$1 != "127.0.1.1" && index(names, " " $2 " ") == 0' /etc/hosts \\
  > /etc/hosts.testhost
printf '%s\\n' {lines} >> /etc/hosts.testhost
mv /etc/hosts.testhost /etc/hosts
echo "$dev"
"""
        proc = _sudo(host, script)
        if proc.returncode:
            raise RuntimeError(f"LAN setup in {host.name} failed: {proc.stderr.strip()}")
        mine.update(iface=proc.stdout.split()[-1], configured=True)
        (host.state_dir / "lan.json").write_text(json.dumps(mine))  # edit_hosts may reach it

    lan_net.announce(mine["lan"], host.name, configure)
    log(f"VM {host.name}: {mine['addr']} on LAN {mine['lan']} ({mine['iface']})")


def edit_hosts(name: str, host: str, line: str | None) -> None:
    """lan.py's news for a VM member: drop HOST's line from its /etc/hosts, add `line` (if
    any), over SSH. Skipped before the VM configured its LAN NIC: it reads every member then."""
    try:
        mine = json.loads((STATE / name / "lan.json").read_text())
        vm = load_host(name)
    except (OSError, ValueError, TypeError, KeyError):
        return
    if not mine.get("configured"):
        return
    add = f"printf '%s\\n' {shlex.quote(line)} >> /etc/hosts.testhost\n" if line else ""
    script = (
        f"set -e\nawk -v h={shlex.quote(host)} '$2 != h' /etc/hosts > /etc/hosts.testhost\n"
        f"{add}mv /etc/hosts.testhost /etc/hosts\n"
    )
    try:
        proc = _sudo(vm, script, timeout=30)
    except subprocess.TimeoutExpired:
        proc = None
    if not proc or proc.returncode:
        log(f"VM {name}: /etc/hosts not updated for {host} ({proc and proc.stderr.strip()})")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"--- {path.name} (last {len(text)} lines) ---\n" + "\n".join(text) + "\n"


def down(name: str, graceful: bool = True, timeout_s: float = 60) -> None:
    """Stop VM `name` and delete its namespace and state; idempotent.

    graceful: `systemctl poweroff` over SSH (else ACPI power-off through QMP), wait up to
    timeout_s; then QMP `quit`; then SIGKILL to the process group of the qemu we started.
    """
    state = STATE / name
    host = None
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        host = load_host(name)
    pid = host.pid if host else None
    if _is_our_qemu(pid, state):
        if graceful and host:
            try:
                ok = ssh(host, "systemctl poweroff", check=False, timeout=15).returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if not ok:
                with contextlib.suppress(OSError, ValueError):
                    qmp(state, "system_powerdown")
            deadline = time.monotonic() + timeout_s
            while _is_our_qemu(pid, state) and time.monotonic() < deadline:
                time.sleep(0.5)
        if _is_our_qemu(pid, state):
            with contextlib.suppress(OSError, ValueError):
                qmp(state, "quit", timeout=5)
            deadline = time.monotonic() + 5
            while _is_our_qemu(pid, state) and time.monotonic() < deadline:
                time.sleep(0.2)
        if _is_our_qemu(pid, state):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
    if pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is this process's child
    netns, tap = _netns(name)
    if _netns_exists(netns):
        _ip("-n", netns, "link", "del", tap, check=False)
        _ip("netns", "del", netns, check=False)
    with contextlib.suppress(OSError, ValueError, KeyError):
        mine = json.loads((state / "lan.json").read_text())
        if _netns_exists(mine["lan_netns"]):  # gone with qemu already, unless qemu is stuck
            _ip("-n", mine["lan_netns"], "link", "del", mine["tap"], check=False)
        lan_net.forget(mine["lan"], name)
    shutil.rmtree(state, ignore_errors=True)
