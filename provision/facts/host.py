"""Facts: what every step needs to know about a host, gathered in one round trip.

`GATHER_SCRIPT` prints sections marked `@@name`; pure `parse_*` functions turn the text into
a frozen `Facts`. Tests feed them recorded outputs from tests/data/facts/.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from provision.errors import ProvisionError

SUPPORTED = {
    ("ubuntu", "22.04"),
    ("ubuntu", "24.04"),
    ("ubuntu", "26.04"),  # from documentation, not run (issue 19)
    ("debian", "12"),
    ("debian", "13"),
}

# Read-only, POSIX sh, no sudo: each section is best effort and may be empty.
GATHER_SCRIPT = r"""
echo @@os-release; cat /etc/os-release 2>/dev/null
echo @@kernel; uname -r
echo @@arch; dpkg --print-architecture 2>/dev/null || uname -m
echo @@packages; dpkg-query -W -f '${Package}\t${Version}\t${db:Status-Abbrev}\n' 2>/dev/null
echo @@pci; for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor" 2>/dev/null)" = 0x10de ] &&
  echo "${d##*/} $(cat "$d/device") $(cat "$d/class")"; done
echo @@lspci; command -v lspci >/dev/null 2>&1 && lspci -nn -d 10de: 2>/dev/null
echo @@nvidia; cat /proc/driver/nvidia/version 2>/dev/null
echo @@boot-id; cat /proc/sys/kernel/random/boot_id
echo @@reboot-required; [ -e /var/run/reboot-required ] && echo yes
echo @@user; id -un; id -u
echo @@sudo; if [ "$(id -u)" = 0 ]; then echo root; elif sudo -n true 2>/dev/null; then
  echo nopasswd; elif command -v sudo >/dev/null 2>&1; then echo password; else echo missing; fi
echo @@secure-boot; if [ ! -d /sys/firmware/efi ]; then echo bios; else
  v=$(od -An -tu1 -j4 -N1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-* 2>/dev/null |
     tr -d ' ')
  case "$v" in 1) echo enabled;; 0) echo disabled;; *) echo unknown;; esac; fi
echo @@meminfo; grep -E '^(MemTotal|SwapTotal):' /proc/meminfo
echo @@disks; lsblk -J -b -o NAME,SIZE,ROTA,TYPE,MOUNTPOINT 2>/dev/null
echo @@nics; for n in /sys/class/net/*; do
  echo "${n##*/} $(cat "$n/address" 2>/dev/null) $(cat "$n/operstate" 2>/dev/null)"; done
echo @@addrs; ip -o addr show 2>/dev/null
echo @@virt; systemd-detect-virt --container 2>/dev/null || echo none
echo @@cloud-init; if command -v cloud-init >/dev/null 2>&1; then
  cloud-init status 2>/dev/null | sed -n 's/^status: //p'; else echo absent; fi
echo @@dpkg-audit; { if [ "$(id -u)" = 0 ]; then dpkg --audit; else
  sudo -n dpkg --audit 2>/dev/null || dpkg --audit; fi
  ls /var/lib/dpkg/updates/ 2>/dev/null | grep -q '^[0-9]' &&
  echo "dpkg's journal has unapplied updates (dpkg was interrupted)"; } 2>/dev/null | head -n 20
echo @@apt-stamp; stat -c %Y /var/lib/provision/apt-update-stamp \
  /var/lib/apt/periodic/update-success-stamp 2>/dev/null
echo @@rollbacks; for d in /var/lib/provision/rollback/*/; do [ -d "$d" ] || continue
  t=${d%/}; t=${t##*/}; f=no; [ -e "$d/fired" ] && f=yes
  a=$(systemctl is-active "provision-rollback-$t.timer" 2>/dev/null); echo "$t $f ${a:-unknown}"
  done
echo @@pending-restarts; ls /var/lib/provision/pending-restarts 2>/dev/null
echo @@now; date +%s
echo @@debian-version; cat /etc/debian_version 2>/dev/null
echo @@apt-sources; if out=$(apt-get indextargets --format '$(SOURCESENTRY)' 2>&1 >/dev/null)
  then echo ok; else echo broken; printf '%s\n' "$out" | grep -v '^ *$' | head -n 5
  o=/etc/apt/sources.list.d/provision-components.sources
  if [ -e "$o" ] && d=$(mktemp -d 2>/dev/null); then
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] && [ "$f" != "$o" ] && ln -s "$f" "$d/"; done
    apt-get -o Dir::Etc::sourceparts="$d" indextargets >/dev/null 2>&1 && echo @own-breaks
    rm -r -- "$d"; fi; fi
echo @@end
"""


@dataclass(frozen=True)
class Package:
    """An installed (or known) package from dpkg-query."""

    version: str
    status: str  # db:Status-Abbrev, e.g. "ii " installed, "hi " held, "rc " config only

    @property
    def installed(self) -> bool:
        return len(self.status) > 1 and self.status[1] == "i"

    @property
    def held(self) -> bool:
        return self.status[:1] == "h"


@dataclass(frozen=True)
class PciDevice:
    """An NVIDIA PCI function: slot, device id (hex, lower case) and class."""

    slot: str
    device_id: str
    pci_class: str
    name: str = ""

    @property
    def is_gpu(self) -> bool:
        return self.pci_class.startswith("0x03")  # display controllers; 0x0403 is HDMI audio


@dataclass(frozen=True)
class Disk:
    """A block device from lsblk."""

    name: str
    size_bytes: int
    rotational: bool
    type: str
    mountpoint: str


@dataclass(frozen=True)
class Nic:
    """A network interface with its MAC, state and addresses."""

    name: str
    mac: str
    state: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    """Everything gathered in one round trip. Frozen: re-gathered, never edited."""

    os_id: str
    os_version: str
    codename: str
    os_name: str
    kernel: str
    arch: str
    packages: dict[str, Package] = field(repr=False)
    nvidia_pci: tuple[PciDevice, ...]
    nvidia_driver: str  # contents of /proc/driver/nvidia/version, "" when not loaded
    boot_id: str
    reboot_required: bool
    user: str
    uid: int
    sudo: str  # root | nopasswd | password | missing
    secure_boot: str  # enabled | disabled | bios | unknown
    mem_total_kb: int
    swap_total_kb: int
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    container: str  # "none" or the container type (systemd-nspawn, docker, lxc, ...)
    cloud_init: str  # absent | done | running | error | ...
    dpkg_audit: str
    apt_stamp: int | None  # newest successful apt-get update (epoch s), if known
    now: int
    # Guarded changes of an interrupted run, not confirmed: (token, fired, timer state)
    rollbacks: tuple[tuple[str, bool, str], ...] = ()
    # Units an interrupted run changed but did not restart (`unit`, or `unit~try`: try-restart)
    pending_restarts: tuple[str, ...] = ()
    local_now: int = 0  # this machine's clock when the facts arrived (epoch s; 0: unknown)
    debian_version: str = ""  # /etc/debian_version ("12.8"; "trixie/sid" on Ubuntu)
    # Whether apt reads its sources: "ok", or "broken", apt's error lines and `@own-breaks`
    # where apt reads the others without the GPU steps' components file ("": not gathered)
    apt_sources: str = ""
    # Decisions made from exactly these facts (the GPU stack: provision.stack), made once and
    # shared by every step that needs them; new facts start with an empty one.
    memo: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def installed(self, name: str) -> bool:
        """Whether the package is installed."""
        pkg = self.packages.get(name.split("=")[0])
        return bool(pkg and pkg.installed)

    @property
    def in_container(self) -> bool:
        return self.container not in ("", "none")

    @property
    def gpus(self) -> tuple[PciDevice, ...]:
        return tuple(d for d in self.nvidia_pci if d.is_gpu)

    @property
    def os_key(self) -> str:
        return f"{self.os_id}-{self.os_version}"

    @property
    def clock_skew_s(self) -> int | None:
        """The host's clock minus this machine's (negative: the host is behind), if known."""
        return self.now - self.local_now if self.now and self.local_now else None

    @property
    def apt_cache_age_s(self) -> int | None:
        return None if self.apt_stamp is None else max(0, self.now - self.apt_stamp)

    def summary(self) -> dict[str, object]:
        """A JSON-friendly view for `provision facts`."""
        return {
            "os": self.os_key,
            "os_name": self.os_name,
            "codename": self.codename,
            "kernel": self.kernel,
            "arch": self.arch,
            "packages_installed": sum(p.installed for p in self.packages.values()),
            "packages_held": sorted(n for n, p in self.packages.items() if p.held),
            "nvidia_pci": [d.__dict__ for d in self.nvidia_pci],
            "nvidia_driver": self.nvidia_driver.splitlines()[0] if self.nvidia_driver else "",
            "boot_id": self.boot_id,
            "reboot_required": self.reboot_required,
            "user": self.user,
            "sudo": self.sudo,
            "secure_boot": self.secure_boot,
            "mem_total_kb": self.mem_total_kb,
            "swap_total_kb": self.swap_total_kb,
            "disks": [d.__dict__ for d in self.disks],
            "nics": [{**n.__dict__, "addresses": list(n.addresses)} for n in self.nics],
            "container": self.container,
            "cloud_init": self.cloud_init,
            "dpkg_interrupted": bool(self.dpkg_audit.strip()),
            "apt_cache_age_s": self.apt_cache_age_s,
            "clock_skew_s": self.clock_skew_s,
        }


def split_sections(text: str) -> dict[str, str]:
    """Split the gather script's output at its @@markers."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = sections.setdefault(line[2:].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines, values unquoted."""
    result = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip().strip('"').strip("'")
    return result


def parse_packages(text: str) -> dict[str, Package]:
    """dpkg-query lines `name<TAB>version<TAB>status`; multi-arch duplicates keep the first."""
    packages: dict[str, Package] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0]:
            name = parts[0].split(":")[0]
            pkg = Package(parts[1], parts[2])
            if name not in packages or (pkg.installed and not packages[name].installed):
                packages[name] = pkg
    return packages


def parse_pci(sysfs: str, lspci: str) -> tuple[PciDevice, ...]:
    """NVIDIA functions from sysfs, named from `lspci -nn` where it was available."""
    names = {}
    for line in lspci.splitlines():
        slot, _, rest = line.partition(" ")
        names[slot.lower()] = rest.strip()
    devices = []
    for line in sysfs.splitlines():
        parts = line.split()
        if len(parts) == 3:
            slot = parts[0].lower()
            short = slot.split(":", 1)[1] if slot.count(":") == 2 else slot
            name = names.get(short, names.get(slot, ""))
            devices.append(PciDevice(slot, parts[1].lower().removeprefix("0x"), parts[2], name))
    return tuple(devices)


def parse_meminfo(text: str) -> tuple[int, int]:
    """(MemTotal, SwapTotal) in kB."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key] = int(fields[0])
    return values.get("MemTotal", 0), values.get("SwapTotal", 0)


def parse_disks(text: str) -> tuple[Disk, ...]:
    """lsblk -J -b output, flattened (children included)."""
    if not text.strip():
        return ()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return ()
    disks: list[Disk] = []

    def walk(items: list[dict]) -> None:
        for d in items:
            rota = d.get("rota")
            disks.append(
                Disk(
                    name=str(d.get("name", "")),
                    size_bytes=int(d.get("size") or 0),
                    rotational=rota in (True, "1", 1),
                    type=str(d.get("type", "")),
                    mountpoint=str(d.get("mountpoint") or ""),
                )
            )
            walk(d.get("children", []))

    walk(data.get("blockdevices", []))
    return tuple(disks)


def parse_nics(links: str, addrs: str) -> tuple[Nic, ...]:
    """Interfaces from /sys/class/net, with addresses from `ip -o addr show`."""
    by_nic: dict[str, list[str]] = {}
    for line in addrs.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
            by_nic.setdefault(parts[1], []).append(parts[3])
    nics = []
    for line in links.splitlines():
        parts = line.split()
        if parts:
            name = parts[0]
            mac = parts[1] if len(parts) > 1 else ""
            state = parts[2] if len(parts) > 2 else ""
            nics.append(Nic(name, mac, state, tuple(by_nic.get(name, []))))
    return tuple(nics)


def parse_facts(text: str, local_now: float | None = None) -> Facts:
    """Turn the gather script's output into Facts (`local_now`: this machine's clock when the
    output arrived, default now)."""
    s = split_sections(text)
    if "end" not in s:
        raise ProvisionError("fact gathering output was cut short", "run again; check the host")
    osr = parse_os_release(s.get("os-release", ""))
    user_lines = [*s.get("user", "").splitlines(), "", ""]
    mem, swap = parse_meminfo(s.get("meminfo", ""))
    stamps = [int(x) for x in s.get("apt-stamp", "").split() if x.isdigit()]
    now_text = s.get("now", "0").strip()
    return Facts(
        os_id=osr.get("ID", ""),
        os_version=osr.get("VERSION_ID", ""),
        codename=osr.get("VERSION_CODENAME", ""),
        os_name=osr.get("PRETTY_NAME", ""),
        kernel=s.get("kernel", "").strip(),
        arch=s.get("arch", "").strip(),
        packages=parse_packages(s.get("packages", "")),
        nvidia_pci=parse_pci(s.get("pci", ""), s.get("lspci", "")),
        nvidia_driver=s.get("nvidia", "").strip(),
        boot_id=s.get("boot-id", "").strip(),
        reboot_required=s.get("reboot-required", "").strip() == "yes",
        user=user_lines[0].strip(),
        uid=int(user_lines[1]) if user_lines[1].strip().isdigit() else -1,
        sudo=s.get("sudo", "").strip() or "missing",
        secure_boot=s.get("secure-boot", "").strip() or "unknown",
        mem_total_kb=mem,
        swap_total_kb=swap,
        disks=parse_disks(s.get("disks", "")),
        nics=parse_nics(s.get("nics", ""), s.get("addrs", "")),
        container=s.get("virt", "").strip().splitlines()[-1] if s.get("virt") else "none",
        cloud_init=s.get("cloud-init", "").strip() or "unknown",
        dpkg_audit=s.get("dpkg-audit", ""),
        apt_stamp=max(stamps) if stamps else None,
        now=int(now_text) if now_text.isdigit() else 0,
        rollbacks=parse_rollbacks(s.get("rollbacks", "")),
        pending_restarts=tuple(
            n
            for n in s.get("pending-restarts", "").split()
            if all(c.isalnum() or c in "-_.@~" for c in n)
        ),
        local_now=int(time.time() if local_now is None else local_now),
        debian_version=s.get("debian-version", "").strip(),
        apt_sources=s.get("apt-sources", "").strip(),
    )


def parse_rollbacks(text: str) -> tuple[tuple[str, bool, str], ...]:
    """`<token> yes|no <timer state>` lines: the guard's folders left by an interrupted run."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].isalnum():
            found.append((fields[0], fields[1] == "yes", fields[2]))
    return tuple(found)
