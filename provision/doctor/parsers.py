"""doctor's parsers: the gather scripts' sections -> plain data (pure, tested on recorded
output of real machines in tests/data/doctor/). sshd's effective values are read by
provision.facts.sshd, as the ssh step reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from provision.facts import smi
from provision.facts import sshd as sshd_facts


@dataclass(frozen=True)
class SmiGpu:
    """One line of `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`."""

    index: int
    name: str
    bus_id: str
    memory_mib: int | None
    power_limit_w: float | None
    gen_current: int | None
    gen_max: int | None
    width_current: int | None
    width_max: int | None
    driver_version: str


@dataclass(frozen=True)
class Link:
    """A PCIe link: the card's maximum (LnkCap) and what it trained to (LnkSta)."""

    slot: str  # "0000:01:00.0"
    gen: int | None
    width: int | None
    max_gen: int | None
    max_width: int | None


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket from `ss -Hltn`."""

    address: str  # "0.0.0.0", "127.0.0.1", "::", "*"
    port: int


@dataclass(frozen=True)
class DoctorData:
    """Everything the doctor gathered beyond the standard facts."""

    smi_present: bool = False
    smi_exit: int = 0
    smi_output: str = ""  # nvidia-smi's text when it failed
    smi_gpus: tuple[SmiGpu, ...] = ()
    links: dict[str, Link] = field(default_factory=dict)  # by slot key "0000:01:00.0"
    root_free_bytes: int | None = None
    root_size_bytes: int | None = None
    threads: int = 0
    cpu_model: str = ""
    cores: int = 0  # physical cores (dmidecode, else /proc/cpuinfo), 0 when unknown
    sb_state: str = ""  # enabled | disabled | bios | "" (no mokutil)
    mok_enrolled: bool | None = None  # the DKMS signing key: None when no key on disk
    modules: tuple[str, ...] = ()
    kernel: str = ""
    headers: bool = False
    reboot_packages: tuple[str, ...] = ()
    dkms_nvidia: tuple[str, ...] = ()
    mounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # target -> (source, fs)
    default_iface: str = ""
    addresses: tuple[tuple[str, str, bool], ...] = ()  # (iface, address/prefix, dynamic)
    static_config: tuple[str, ...] = ()  # files that configure a static address
    sshd: dict[str, str] = field(default_factory=dict)  # passwordauthentication, permitrootlogin
    sshd_source: str = ""  # "sshd -T" or "config files"
    listeners: tuple[Listener, ...] = ()
    cdi_specs: tuple[str, ...] = ()  # CDI spec files that describe nvidia.com/gpu
    unlinked_nodes: tuple[str, ...] = ()  # NVIDIA device nodes with no /dev/char link
    daemon_json: str = ""  # /etc/docker/daemon.json as the login user reads it
    slurm_ping: str = ""  # `scontrol ping`'s first lines and exit=N ("" without a Slurm client)
    slurm_nodes: tuple[str, ...] = ()  # sinfo -N: NODE|STATE|REASON


GT_PER_GEN = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}


def gen_of_speed(text: str) -> int | None:
    """PCIe generation from a link speed: "8GT/s", "16.0 GT/s PCIe", "2.5 GT/s"."""
    match = re.search(r"(\d+(?:\.\d+)?)\s*GT/s", text)
    return GT_PER_GEN.get(float(match[1])) if match else None


def parse_int(text: str) -> int | None:
    """A count or size of nvidia-smi/sysfs text; None when it is not a plain number."""
    text = text.strip()
    return int(text) if text.isdigit() else None


def slot_key(slot: str) -> str:
    """A PCI address with its domain as sysfs writes it: 0000:01:00.0 (nvidia-smi: 8 digits)."""
    text = slot.strip().lower()
    parts = text.split(":")
    if len(parts) == 3:
        return f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"
    if len(parts) == 2:
        return f"0000:{text}"
    return text


def parse_nvidia_smi(text: str) -> tuple[SmiGpu, ...]:
    """The CSV lines of the query (no header, no units); other lines are ignored."""
    gpus = []
    for line in text.splitlines():
        cells = smi.cells(line)
        if len(cells) != 10 or not cells[0].isdigit():
            continue
        gpus.append(
            SmiGpu(
                index=int(cells[0]),
                name=cells[1],
                bus_id=slot_key(cells[2]),
                memory_mib=parse_int(cells[3]),
                power_limit_w=smi.number(cells[4]),
                gen_current=parse_int(cells[5]),
                gen_max=parse_int(cells[6]),
                width_current=parse_int(cells[7]),
                width_max=parse_int(cells[8]),
                driver_version=cells[9],
            )
        )
    return tuple(gpus)


def parse_lspci_links(text: str) -> dict[str, Link]:
    """LnkCap/LnkSta of each device in `lspci -vv -nn` (display controllers only)."""
    links: dict[str, Link] = {}
    slot = ""
    cap: tuple[int | None, int | None] = (None, None)
    for line in text.splitlines():
        if line and not line[0].isspace():
            slot = slot_key(line.split()[0]) if re.search(r"\[03[0-9a-f]{2}\]", line) else ""
            cap = (None, None)
            continue
        if not slot:
            continue
        body = line.strip()
        width = re.search(r"Width x(\d+)", body)
        if body.startswith("LnkCap:"):
            cap = (gen_of_speed(body), int(width[1]) if width else None)
        elif body.startswith("LnkSta:"):
            links[slot] = Link(slot, gen_of_speed(body), int(width[1]) if width else None, *cap)
    return links


def parse_sysfs_links(text: str) -> dict[str, Link]:
    """`slot|current_link_speed|current_link_width|max_link_speed|max_link_width` lines."""
    links = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        slot = slot_key(parts[0])
        gen, width = gen_of_speed(parts[1]), parse_int(parts[2])
        links[slot] = Link(slot, gen, width, gen_of_speed(parts[3]), parse_int(parts[4]))
    return links


def parse_df(text: str) -> tuple[int | None, int | None]:
    """(available, size) in bytes from `df -B1 -P /`'s last line."""
    fields = text.split()
    if len(fields) >= 6 and fields[1].isdigit() and fields[3].isdigit():
        return int(fields[3]), int(fields[1])
    return None, None


def parse_cpu(text: str, dmidecode: str) -> tuple[int, str, int]:
    """(threads, model, physical cores) from nproc + /proc/cpuinfo, cores from dmidecode."""
    threads, model = 0, ""
    sockets: set[str] = set()
    per_socket = 0
    for line in text.splitlines():
        key, sep, value = (part.strip() for part in line.partition(":"))
        if not sep and key.isdigit():
            threads = int(key)
        elif key == "model name":
            model = " ".join(value.split())
        elif key == "physical id":
            sockets.add(value)
        elif key == "cpu cores" and value.isdigit():
            per_socket = int(value)  # every socket of a board has the same CPU model
    cores = per_socket * max(1, len(sockets))
    dmi_cores = [int(m) for m in re.findall(r"^\s*Core Count:\s*(\d+)", dmidecode, re.M)]
    if dmi_cores and sum(dmi_cores) > 0:
        cores = sum(dmi_cores)
    return threads, model, cores


def parse_sb_state(text: str) -> str:
    """`mokutil --sb-state`: enabled | disabled | bios (no EFI variables) | "" (unknown)."""
    low = text.lower()
    if "secureboot enabled" in low:
        return "enabled"
    if "secureboot disabled" in low:
        return "disabled"
    if "not supported" in low:
        return "bios"
    return ""


def parse_mok_key(text: str) -> bool | None:
    """`mokutil --test-key KEY`: True when enrolled, None when there was no key to test."""
    low = text.lower()
    if "already enrolled" in low:
        return True
    if "not enrolled" in low:
        return False
    return None


def parse_mounts(text: str) -> dict[str, tuple[str, str]]:
    """/proc/self/mounts -> {target: (source, fstype)}; octal escapes (\\040) decoded."""
    mounts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[1])
            mounts[target] = (parts[0], parts[2])
    return mounts


def parse_addresses(text: str) -> tuple[tuple[str, str, bool], ...]:
    """`ip -o -4 addr show scope global` -> (iface, address/prefix, dynamic i.e. DHCP)."""
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            result.append((parts[1], parts[3], "dynamic" in parts))
    return tuple(result)


def parse_default_iface(text: str) -> str:
    """The interface of the first default route (`ip -o -4 route show default`)."""
    match = re.search(r"\bdev\s+(\S+)", text)
    return match[1] if match else ""


# The two sshd keywords doctor judges (lower case, as `sshd -T` prints them).
SSHD_KEYS = ("passwordauthentication", "permitrootlogin")


def parse_sshd_t(text: str) -> dict[str, str]:
    """The judged keywords from `sshd -T` output (provision.facts.sshd reads it)."""
    values = sshd_facts.effective(text)
    return {key: values[key].lower() for key in SSHD_KEYS if values.get(key)}


SSHD_MAIN = "/etc/ssh/sshd_config"
SSHD_DIR = "/etc/ssh"  # where sshd looks for an Include's relative path (sshd_config(5))
SSHD_MAX_DEPTH = 16  # sshd's include depth limit (READCONF_MAX_DEPTH): deeper is an error
# OpenSSH's compiled-in values of the judged keywords (sshd_config(5)), where no line sets them.
SSHD_DEFAULTS = {"passwordauthentication": "yes", "permitrootlogin": "prohibit-password"}


class _Unknown(Exception):
    """sshd reads a file (or a folder) here that the login user could not."""


def _sshd_files(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]], set[str]]:
    """The @@sshd-config section (gather.SSHD_CONFIG_READ): ({file: lines},
    {Include pattern: its matches}, {paths not readable})."""
    files: dict[str, list[str]] = {}
    globs: dict[str, list[str]] = {}
    unreadable: set[str] = set()
    current: list[str] | None = None
    pattern = ""
    for line in text.splitlines():
        tag, sep, rest = line.partition(": ")
        if sep and tag in ("# file", "# unreadable", "# glob", "# match"):
            current = None
            if tag == "# file":
                current = files.setdefault(rest, [])
            elif tag == "# unreadable":
                unreadable.add(rest)
            elif tag == "# glob":
                pattern = rest
                globs.setdefault(rest, [])
            elif pattern in globs and rest not in globs[pattern]:  # a glob may show twice
                globs[pattern].append(rest)
        elif current is not None:
            current.append(line)
    return files, globs, unreadable


def _words(line: str) -> tuple[str, list[str]]:
    """(keyword, its arguments) of a config line, as sshd splits it: a word starting with
    `#` ends the line, double quotes are dropped."""
    key, value = sshd_facts.split_line(line)
    words = []
    for word in value.split():
        if word.startswith("#"):
            break
        words.append(word.replace('"', ""))
    return key, words


def parse_sshd_config(text: str) -> dict[str, str]:
    """The judged keywords as sshd reads its files (the fallback when `sshd -T` needs root):
    from sshd_config, each Include expanded where it stands (its matches in lexical order, a
    relative path in /etc/ssh), the first value wins; the lines of a Match block (other than
    `Match all`) are not the global view, and a block ends at the next Match or its file's end.
    A keyword no line sets has OpenSSH's default. Where sshd would read a file the login user
    cannot, the keywords not set before it are left out (unknown)."""
    files, globs, unreadable = _sshd_files(text)
    values: dict[str, str] = {}

    def read(path: str, depth: int) -> None:
        if path not in files or depth > SSHD_MAX_DEPTH:
            raise _Unknown(path)
        in_match = False
        for line in files[path]:
            key, words = _words(line)
            if not words:
                continue
            if key == "match":
                in_match = words[0].lower() != "all"
            elif in_match:
                continue  # an Include here is conditional too: not the global view
            elif key == "include":
                for word in words:
                    pattern = word if word.startswith("/") else f"{SSHD_DIR}/{word}"
                    folder = pattern.rsplit("/", 1)[0] + "/"
                    if pattern not in globs or folder in unreadable:
                        raise _Unknown(pattern)
                    for match in sorted(globs[pattern]):
                        read(match, depth + 1)
            elif key in SSHD_KEYS:
                values.setdefault(key, words[0].lower())

    try:
        read(SSHD_MAIN, 0)
    except _Unknown:
        return values
    return {**SSHD_DEFAULTS, **values}


def parse_listeners(text: str) -> tuple[Listener, ...]:
    """`ss -Hltn` lines: State Recv-Q Send-Q Local:Port Peer:Port."""
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3] if parts[0] == "LISTEN" else parts[2]
        address, _, port = local.rpartition(":")
        if port.isdigit():
            address = address.strip("[]").split("%", 1)[0]
            result.append(Listener(address, int(port)))
    return tuple(result)
