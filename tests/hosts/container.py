"""systemd-nspawn test hosts: Debian 12 or 13 with systemd as PID 1, sshd on a loopback port.

The container shares this machine's network (sshd binds 127.0.0.1:PORT only), so nothing
that reconfigures interfaces may run inside it. A wrapper restarts nspawn when it exits
with 133 (`systemctl reboot` inside), which gives real reboot cycles. The kernel is this
machine's: kernel modules, DKMS, initramfs and GRUB belong to the VM tier (vm.py).
With up(lan=, lan_addr=) a host gets a network of its own instead, on a LAN with the other
hosts given the same lan (lan.py): sshd on ADDR:22 there, reached through a relay on
127.0.0.1:PORT.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import delay
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
INCLUDE = "systemd-sysv,dbus,openssh-server,sudo,python3,iproute2,ca-certificates"
# Users, sudoers, keys, sshd drop-in, hostname. vm.py runs this too (and hashes it): keep it
# shared; what only a container needs goes in CONTAINER_CONFIGURE.
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
# Container-only: no ifupdown on the shared network namespace, no apt timers racing the
# tests for the dpkg lock, and `apt` (not only apt-get) keeps downloaded .debs, which `down`
# hands to the shared download cache.
CONTAINER_CONFIGURE = """
set -e
systemctl mask networking.service apt-daily.timer apt-daily-upgrade.timer
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/10-testhost-keep-debs
: > /etc/machine-id
visudo -c -q
"""


def mmdebstrap_argv(release: str) -> list[str]:
    """mmdebstrap's command line for one release's rootfs (ROOT: the target folder)."""
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}: use one of {', '.join(RELEASES)}")
    return [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--variant=important",
        f"--include={INCLUDE}",
        release,
        "ROOT",
        MIRROR,
    ]


NSPAWN = [
    "systemd-nspawn",
    "--quiet",
    "--boot",
    "--register=no",  # this machine's PID 1 is not systemd: no machined, no scope units
    "--keep-unit",
    "--link-journal=no",
]


def recipe(release: str) -> str:
    """What the cached rootfs is built from (its hash names the cache folder)."""
    argv = " ".join(mmdebstrap_argv(release))
    return "\n".join(["container recipe 2", argv, CONFIGURE, CONTAINER_CONFIGURE])


APT_CACHE = CACHE / "apt-archives"  # .deb files shared by all container hosts
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
REBOOT_RC = 133  # systemd-nspawn's exit status when the container asked for a reboot
# The wrapper: run nspawn again after a reboot inside, like a real machine's firmware would.
WRAPPER = (
    f'while :; do "$@"; rc=$?; [ $rc -eq {REBOOT_RC} ] || exit $rc; echo "[wrapper] reboot"; done'
)

_procs: dict[str, subprocess.Popen] = {}  # wrappers this process started, by host name


def build(release: str = DEFAULT_RELEASE) -> Path:
    """The cached base rootfs of a release, CACHE/container-HASH/rootfs (rebuilt when the
    recipe changes).

    Built in a `.building` folder and renamed when complete, under a lock, so a crashed or
    concurrent build is never taken for a finished one.
    """
    key = ensure_key()
    text = recipe(release) + key.with_suffix(".pub").read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    final = CACHE / f"container-{digest}"
    if (final / "rootfs").is_dir():
        return final / "rootfs"
    with open(CACHE / "container.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building it right now
        if (final / "rootfs").is_dir():
            return final / "rootfs"
        work = final.with_name(final.name + ".building")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        rootfs = work / "rootfs"
        started = time.monotonic()
        log(f"building container rootfs {final.name} ({release}) with mmdebstrap (about 40 s)")
        argv = mmdebstrap_argv(release)
        subprocess.run([str(rootfs) if a == "ROOT" else a for a in argv], check=True)
        shutil.copy(key.with_suffix(".pub"), rootfs / "tmp" / "testhost.pub")
        subprocess.run(["chroot", str(rootfs), "sh", "-c", CONFIGURE], check=True)
        subprocess.run(["chroot", str(rootfs), "sh", "-c", CONTAINER_CONFIGURE], check=True)
        (work / "recipe.txt").write_text(text)
        work.rename(final)
        log(f"container rootfs built in {time.monotonic() - started:.0f}s")
    return final / "rootfs"


def up(
    name: str,
    extra_vars: dict[str, str] | None = None,
    boot_timeout_s: float = 90,
    seed_apt: bool = True,
    release: str = DEFAULT_RELEASE,
    lan: str | None = None,
    lan_addr: str | None = None,
) -> TestHost:
    """Mount the rootfs (an overlay of the cached one), boot it, wait for SSH and systemd;
    returns the host (inventory written).

    A host of the same name that is still there is taken down first. If it does not come up,
    it is taken down again (set PROVISION_TESTHOST_KEEP=1 to keep it for a look).
    seed_apt=False: the host is not given the cached .debs (apt really downloads).
    release: the Debian suite (bookworm or trixie).
    lan, lan_addr: boot it on that LAN (made if missing: lan.create) at that address, in a
    network namespace of its own; PORT is then a relay's (lan.relay), the inventory's
    ssh.port stays 22 and base.apt_proxy is the LAN's proxy.
    """
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"bad test host name {name!r}: use [a-z0-9-], at most 31 characters")
    if bool(lan) != bool(lan_addr):
        raise ValueError("lan and lan_addr go together")
    base = build(release)
    state = STATE / name
    if state.exists():
        down(name)
    state.mkdir(parents=True)
    started = time.monotonic()
    try:
        host = _prepare(name, base, state, seed_apt, release, lan, lan_addr)
    except BaseException:
        down(name)  # a half-made LAN membership too (lan.leave)
        raise
    rootfs, port = Path(host.extras["rootfs"]), host.port
    argv = [*NSPAWN, f"--directory={rootfs}", f"--machine={name}"]
    if lan:
        netns = lan_net.NETNS / host.extras["lan"]["netns"]
        argv += [f"--network-namespace-path={netns}", "--resolv-conf=off"]  # lan.RESOLV_CONF
    with open(state / "console.log", "ab") as console:
        proc = subprocess.Popen(
            ["sh", "-c", WRAPPER, "testhost-wrapper", *argv],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `down` signals exactly that
        )
    _procs[name] = proc
    host.pid = proc.pid
    save_host(host)
    try:
        where = f"{lan_addr}:22 on LAN {lan}, relay" if lan else "sshd on"
        log(f"booting container {name} ({where} 127.0.0.1:{port})")
        wait_for_ssh(host, boot_timeout_s, is_alive=lambda: proc.poll() is None)
        left = max(10.0, boot_timeout_s - (time.monotonic() - started))
        host.extras["system"] = wait_for_system(host, left)
        # Shared network: sshd listens on PORT and the ssh step must keep it there (on a LAN:
        # on 22, its own). TensorBoard too: a fixed 6006 would collide between containers.
        defaults = {
            "ssh.port": str(lan_net.SSH_PORT if lan else port),
            "tensorboard.port": str(free_port()),
            **GPU_STACK_OFF,
        }
        if lan:
            defaults["base.apt_proxy"] = lan_net.info(lan)["proxy"]
        write_inventory(host, {**defaults, **(extra_vars or {})})
        host.extras["up_s"] = round(time.monotonic() - started, 1)
        save_host(host)
    except BaseException:
        log(f"container {name} did not come up; console: {state / 'console.log'}")
        if not os.environ.get("PROVISION_TESTHOST_KEEP"):
            down(name)
        raise
    log(f"container {name} up in {host.extras['up_s']}s")
    return host


def _prepare(name, base, state, seed_apt, release, lan, lan_addr) -> TestHost:
    """Everything before the boot: the overlay, the apt seed, sshd's port (or the LAN: netns,
    veth, names, relay), known_hosts; the host record (not saved yet)."""
    rootfs = _overlay(base, state)
    if seed_apt:
        _seed_apt_cache(rootfs)
    extras = {"rootfs": str(rootfs), "console": str(state / "console.log"), "release": release}
    if lan:
        lan_net.create(lan)
        extras["lan"] = lan_net.join(lan, name, lan_addr, state, rootfs)
        port = lan_net.relay(state)  # ssh sees [127.0.0.1]:PORT, as for any other host
    else:
        port = free_port()
        conf = rootfs / "etc/ssh/sshd_config.d/10-testhost.conf"
        conf.write_text(conf.read_text() + f"Port {port}\n")
    known = state / "known_hosts"
    known.write_text(known_hosts_lines(list((rootfs / "etc/ssh").glob("ssh_host_*_key.pub")), port))
    return TestHost(
        name=name,
        kind="container",
        addr="127.0.0.1",
        port=port,
        user=USER,
        key_file=ensure_key(),
        known_hosts=known,
        inventory=state / "inventory.ini",
        state_dir=state,
        extras=extras,
    )


def wait_for_system(host: TestHost, timeout_s: float) -> str:
    """Wait for `systemctl is-system-running --wait`; returns running or degraded."""
    proc = ssh(host, "systemctl is-system-running --wait", check=False, timeout=timeout_s + 5)
    state = proc.stdout.strip()
    if state == "degraded":
        failed = ssh(host, "systemctl --failed --no-legend --plain", check=False).stdout
        log(f"{host.name}: system degraded; failed units:\n{failed.rstrip()}")
    elif state != "running":
        raise RuntimeError(f"{host.name}: systemd state {state!r} ({proc.stderr.strip()})")
    return state


def down(name: str) -> None:
    """Power the container off (or signal what `up` started) and delete its state. Idempotent."""
    state = STATE / name
    if not state.exists():
        return
    delay.detach(state)  # the delay line in front of it, if `up --rtt-ms` started one
    try:
        host = load_host(name)
    except (OSError, ValueError, TypeError):
        host = None
    pid = host.pid if host and _is_our_wrapper(name, host.pid) else None
    if host and pid:
        try:
            proc = ssh(host, "systemctl poweroff", check=False, timeout=10)
            # rc 255 without "closed": ssh never got in (sshd down), so don't wait for it
            asked = proc.returncode != 255 or "closed" in proc.stderr
        except subprocess.TimeoutExpired:
            asked = True
        _wait_group_gone(name, pid, 15 if asked else 0)
    if pid and not _wait_group_gone(name, pid, 0):
        # SIGTERM makes nspawn shut the container down cleanly. Repeated: a systemd that is
        # still starting (just after a reboot, say) ignores the first. SIGKILL if that hangs.
        for sig, wait_s in [(signal.SIGTERM, 2)] * 5 + [(signal.SIGKILL, 5)]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            if _wait_group_gone(name, pid, wait_s):
                break
    _kill_leftovers(state / "rootfs")
    lan_net.leave(state)  # its relay, veth and netns, if it was on a LAN
    _harvest_apt_cache(state / "rootfs")
    _procs.pop(name, None)
    _unmount(state / "rootfs")
    _delete_in_background(state)


def _delete_in_background(state: Path) -> None:
    """Move the state aside (the name is free at once) and delete it in a process of its own:
    a host that installed torch leaves a gigabyte of small files, a minute of `rm` that no
    test needs to wait for. --one-file-system: nothing still mounted inside is followed."""
    trash = state.with_name(f".trash-{state.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        state.rename(trash)
    except OSError:
        shutil.rmtree(state, ignore_errors=True)
        return
    subprocess.Popen(
        ["rm", "-rf", "--one-file-system", "--", str(trash)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _overlay(base: Path, state: Path) -> Path:
    """The host's root: an overlayfs of the cached rootfs (read-only below) and the host's own
    changes (state/upper). Nothing is copied, so booting and removing a host costs what it
    changed, not the whole image (ext4 has no reflinks: `cp -a` copied 400 MB per host)."""
    rootfs, upper, work = state / "rootfs", state / "upper", state / "overlay-work"
    for folder in (rootfs, upper, work):
        folder.mkdir()
    options = f"lowerdir={base},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(rootfs)], check=True)
    return rootfs


def _unmount(rootfs: Path) -> None:
    """Unmount the overlay (and anything a test mounted inside it) before the state is deleted:
    deleting through the mount would only hide the image's files, one whiteout at a time."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    inside = sorted((m for m in mounts if m == str(rootfs) or m.startswith(f"{rootfs}/")),
                    key=len, reverse=True)  # fmt: skip
    for mount in inside:
        if subprocess.run(["umount", mount], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mount], capture_output=True)


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat fields from the state on: [state, ppid, pgrp, ...] ([] if gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def _is_our_wrapper(name: str, pid: int | None) -> bool:
    """Whether PID is still the wrapper `up` started for this host (PIDs get reused)."""
    if not pid:
        return False
    proc = _procs.get(name)
    if proc is not None and proc.pid == pid:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    rootfs = f"--directory={STATE / name / 'rootfs'}\0".encode()
    return b"testhost-wrapper" in cmdline and rootfs in cmdline


def _wait_group_gone(name: str, pgid: int, timeout_s: float) -> bool:
    """Wait until no live process is left in the wrapper's process group (wrapper + nspawn)."""
    deadline = time.monotonic() + timeout_s
    while True:
        proc = _procs.get(name)
        if proc is not None:
            proc.poll()  # reap our own child
        group = [p for p in _pids() if (st := _stat(p)) and st[2] == str(pgid) and st[0] != "Z"]
        if not group:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.3)


def _kill_leftovers(rootfs: Path) -> None:
    """SIGKILL processes still running with this container's rootfs as their root.

    Only if the nspawn we started was killed hard can any be left (its systemd and services,
    reparented). /proc/PID/root of a process inside is the rootfs itself (same inode), even
    where its path cannot be read from here.
    """
    try:
        root = os.stat(rootfs)
    except OSError:
        return
    for _ in range(10):
        left = []
        for p in _pids():
            with contextlib.suppress(OSError):
                st = os.stat(f"/proc/{p}/root")
                if (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino) and _stat(p)[:1] != ["Z"]:
                    left.append(p)
        if not left:
            return
        log(f"killing {len(left)} processes left running in {rootfs}")
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.5)


def _link_debs(src: Path, dest: Path) -> None:
    """Hard-link (or copy, across filesystems) the .deb files in src that dest lacks."""
    if not src.is_dir():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for deb in src.glob("*.deb"):
        target = dest / deb.name
        if target.exists() or deb.is_symlink() or not deb.is_file():
            continue
        try:
            os.link(deb, target)
        except FileExistsError:
            pass
        except OSError:
            tmp = dest / f".{deb.name}.tmp{os.getpid()}"
            shutil.copy2(deb, tmp)
            tmp.rename(target)


def _seed_apt_cache(rootfs: Path) -> None:
    # Not a bind mount of one shared archives folder: apt takes a non-waiting lock on
    # archives/lock, so two hosts downloading at once would fail. Each host gets links instead.
    _link_debs(APT_CACHE, rootfs / "var/cache/apt/archives")


def _harvest_apt_cache(rootfs: Path) -> None:
    _link_debs(rootfs / "var/cache/apt/archives", APT_CACHE)
