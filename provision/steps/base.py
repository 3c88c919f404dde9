"""base: the foundation every other step needs.

Manages: apt sources when a mirror is set (`/etc/apt/sources.list.d/provision.sources`, the
distribution's own source files moved to /var/backups/provision), essential packages, kernel
headers for the running kernel (DKMS needs them), extra CA certificates, time sync
(systemd-timesyncd), and unattended-upgrades that never touch NVIDIA/CUDA packages
(`/etc/apt/apt.conf.d/51provision-unattended-upgrades`, `52provision-periodic`).
The lab's cache (apt proxy, pip index, the cache box): provision/aptproxy.py.
Waits for cloud-init and repairs an interrupted dpkg run first. apt must read its sources:
where the GPU steps' components file is what it refuses (an older provision named the .gpg
keyring where Debian 13's debian.sources names .pgp: "Conflicting values set for option
Signed-By"), base moves that file aside (the GPU steps write it again, with the host's
Signed-By); any other broken source is an error naming apt's words. Restarts systemd-timesyncd
when its configuration changes. Never reboots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provision import aptproxy, aptsigned, shell
from provision.changes import Change, Run
from provision.cudarepo import COMPONENTS_SOURCES
from provision.errors import ProvisionError, Skip
from provision.facts.reads import Read
from provision.kernel import headers_packages
from provision.resources import (
    file_content,
    file_read,
    move_aside,
    package_downloads,
    packages,
    service,
    service_read,
    template_file,
)
from provision.settings import absolute_path, each, hostname, package_name, positive, setting, url
from provision.step import Context, Download, Step

ESSENTIALS = (
    "build-essential",
    "dkms",
    "git",
    "tmux",
    "htop",
    "curl",
    "wget",
    "rsync",
    "ca-certificates",
    "gnupg",
    "pciutils",
    "unzip",
    "jq",
    "python3-venv",
)
NVIDIA_PATTERNS = (
    "nvidia-",
    "libnvidia-",
    "cuda-",
    "libcuda",
    "libcudnn",
    "libnccl",
    "libcublas",
    "xserver-xorg-video-nvidia",
    "linux-modules-nvidia-",
    "linux-objects-nvidia-",
)
TIME_DAEMONS = ("chrony", "ntp", "ntpsec", "openntpd")
DISTRO_SOURCES = (
    "/etc/apt/sources.list.d/debian.sources",
    "/etc/apt/sources.list.d/ubuntu.sources",
)
# Which of the distribution's own source files are there (the mirror moves them aside).
DISTRO_SOURCES_READ = Read(
    " ; ".join(f"[ -e {p} ] && echo {p}" for p in DISTRO_SOURCES) + " ; true"
)
PROVISION_SOURCES = "/etc/apt/sources.list.d/provision.sources"
SOURCES_LIST = "/etc/apt/sources.list"
CA_DIR = "/usr/local/share/ca-certificates"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def pem_file(value: str) -> None:
    """A readable local PEM certificate file."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"certificate file {value!r} not found on this machine")
    if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes()[:65536]:
        raise ValueError(f"{value!r} is not a PEM certificate (no BEGIN CERTIFICATE line)")


@dataclass(frozen=True)
class Settings(aptproxy.CacheSettings):
    """Settings of the base step (inventory keys `base.<field>`)."""

    packages: tuple[str, ...] = setting(ESSENTIALS, "packages every box gets", each(package_name))
    extra_packages: tuple[str, ...] = setting((), "more packages to install", each(package_name))
    install_recommends: bool = setting(False, "let apt install Recommends too")
    kernel_headers: bool = setting(True, "headers for the running kernel and its meta package")
    apt_mirror: str = setting("", "mirror URL for the distribution (empty: keep sources)", url)
    apt_security_mirror: str = setting("", "security mirror (empty: the official one)", url)
    apt_components: tuple[str, ...] = setting(
        (), "components (empty: all of Debian's or Ubuntu's)", each(package_name)
    )
    apt_cache_max_age_s: int = setting(86400, "run apt-get update when lists are older", positive)
    apt_lock_timeout_s: int = setting(600, "wait this long for the dpkg lock", positive)
    ca_certificates: tuple[str, ...] = setting(
        (), "local PEM files the host must trust (TLS proxies)", each(pem_file)
    )
    time_sync: bool = setting(True, "keep the clock in sync with systemd-timesyncd")
    ntp_servers: tuple[str, ...] = setting(
        (), "NTP servers (empty: distro default)", each(hostname)
    )
    unattended_upgrades: bool = setting(True, "install security updates automatically")
    unattended_blocklist: tuple[str, ...] = setting(
        NVIDIA_PATTERNS,
        "package name prefixes unattended-upgrades never touches",
        each(lambda v: package_name(v.rstrip("-") or "x")),
    )
    wait_for_cloud_init: bool = setting(True, "wait until cloud-init has finished")
    backup_dir: str = setting(
        "/var/backups/provision",
        "where the distribution's own apt source files go when base.apt_mirror replaces them "
        "(every file provision rewrites keeps its previous version in /var/backups/provision)",
        absolute_path,
    )


def default_components(os_id: str) -> tuple[str, ...]:
    if os_id == "ubuntu":
        return ("main", "restricted", "universe", "multiverse")
    return ("main", "contrib", "non-free", "non-free-firmware")


def sources_changes(ctx: Context, s: Settings) -> list[Change]:
    """Our deb822 source file, and the distribution's own files moved out of the way."""
    f = ctx.facts
    official_security = (
        "http://security.ubuntu.com/ubuntu"
        if f.os_id == "ubuntu"
        else "http://security.debian.org/debian-security"
    )
    keyring = f"/usr/share/keyrings/{f.os_id}-archive-keyring.gpg"
    suites = [f.codename, f"{f.codename}-updates"] + (
        [f"{f.codename}-backports"] if f.os_id == "ubuntu" else []
    )
    variables = {
        "mirror": s.apt_mirror,
        "security_mirror": s.apt_security_mirror or official_security,
        "suites": suites,
        "security_suite": f"{f.codename}-security",
        "components": s.apt_components or default_components(f.os_id),
        "keyring": keyring,
    }
    changes = template_file(ctx, "base/provision.sources.j2", PROVISION_SOURCES, variables)
    changes += template_file(ctx, "base/sources.list.j2", SOURCES_LIST, {})
    present = ctx.read(DISTRO_SOURCES_READ.command)
    for path in present.stdout.split():
        changes.append(move_aside(path, "the mirror replaces it", s.backup_dir))
    return changes


TIMESYNCD_CONF = "/etc/systemd/timesyncd.conf.d/provision.conf"
UNATTENDED_CONF = "/etc/apt/apt.conf.d/51provision-unattended-upgrades"
PERIODIC_CONF = "/etc/apt/apt.conf.d/52provision-periodic"


def ca_dest(path: str) -> str:
    """Where a local CA certificate goes on the host."""
    return f"{CA_DIR}/provision-{Path(path).expanduser().stem}.crt"


def bundle_read(s: Settings) -> Read:
    """Whether the system CA bundle holds every extra certificate (exit 0: it does)."""
    tests = []
    for path in s.ca_certificates:
        body = Path(path).expanduser().read_text().split("-----BEGIN CERTIFICATE-----")[1]
        lines = body.split("-----END CERTIFICATE-----")[0].split()
        # a line of the signature (the end of the DER): unique to this certificate, whereas
        # the first lines share the ASN.1 header with others
        marker = lines[-2] if len(lines) > 1 else lines[0]
        tests.append(f"grep -qF -e {shell.cmd(marker)} {CA_BUNDLE}")
    return Read(" && ".join(tests))


def reads(ctx: Context) -> list[Read]:
    """Every read base's check makes, from the facts and settings alone. The CA bundle is read
    even when check does not look at it (a certificate file is to be written anyway): check
    decides that from another read's answer."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    files = [ca_dest(p) for p in s.ca_certificates]
    wanted: list[Read] = []
    if s.ca_certificates:
        wanted.append(bundle_read(s))
    if s.apt_mirror:
        files += [PROVISION_SOURCES, SOURCES_LIST]
        wanted.append(DISTRO_SOURCES_READ)
    if uses_timesyncd(f, s):
        files.append(TIMESYNCD_CONF)
        if f.installed("systemd-timesyncd"):
            wanted.append(service_read("systemd-timesyncd"))
    files += [UNATTENDED_CONF, PERIODIC_CONF]
    wanted += aptproxy.reads(ctx, s)
    return [file_read(ctx, dest) for dest in files] + wanted


def apt_health_changes(ctx: Context) -> list[Change]:
    """Nothing while apt reads its sources; our components file moved aside where it is what
    apt refuses; an error (with apt's words) for any other broken source."""
    ok, error, own = aptsigned.health(ctx.facts.apt_sources)
    if ok:
        return []
    if own:
        first = error.splitlines()[0].removeprefix("E: ") if error else ""
        return [move_aside(COMPONENTS_SOURCES, f"apt refuses it: {first}".rstrip(": "))]
    raise ProvisionError(
        f"{ctx.host}: apt cannot read its sources: {error}",
        "fix the source file apt names under /etc/apt/sources.list.d/ (`sudo apt-get update` "
        "shows the error); entries for one URI and suite must name the same Signed-By",
    )


def ca_changes(ctx: Context, s: Settings) -> list[Change]:
    changes: list[Change] = []
    for path in s.ca_certificates:
        local = Path(path).expanduser()
        dest = ca_dest(path)
        changes += file_content(ctx, dest, local.read_bytes(), summary=f"trust {local.name}")
    # Right files are not enough: the bundle may have been rebuilt without them (verify reads
    # the bundle, and so do apt and pip).
    if changes or (s.ca_certificates and not ctx.read(bundle_read(s).command).ok):
        refresh = "if command -v update-ca-certificates >/dev/null; then update-ca-certificates; fi"
        changes.append(Change("update the CA bundle", (Run(refresh),)))
    return changes


def uses_timesyncd(f, s: Settings) -> bool:
    """Whether base manages systemd-timesyncd (not when another time daemon is in charge:
    installing timesyncd would remove it)."""
    return s.time_sync and not any(f.installed(d) for d in TIME_DAEMONS)


def time_changes(ctx: Context, s: Settings) -> list[Change]:
    f = ctx.facts
    if not uses_timesyncd(f, s):
        return []
    changes = template_file(
        ctx,
        "base/timesyncd.conf.j2",
        TIMESYNCD_CONF,
        {"ntp_servers": s.ntp_servers},
        restart="systemd-timesyncd",
    )
    if f.installed("systemd-timesyncd"):
        # A container may not set the clock: timesyncd's ConditionVirtualization skips it.
        changes += service(ctx, "systemd-timesyncd", running=not f.in_container)
    return changes


def check(ctx: Context) -> list[Change]:
    """What base would change on this host."""
    s: Settings = ctx.settings(Settings)
    f = ctx.facts
    changes: list[Change] = []
    if s.wait_for_cloud_init and f.cloud_init in ("running", "not started", "not run"):
        wait = Run("cloud-init status --wait >/dev/null || true", timeout_s=3600)
        changes.append(Change("wait for cloud-init to finish", (wait,)))
    if f.dpkg_audit.strip():
        repair = shell.cmd("dpkg", "--configure", "-a")
        changes.append(
            Change(
                "repair an interrupted dpkg run",
                (Run(f"env DEBIAN_FRONTEND=noninteractive {repair}", timeout_s=3600),),
            )
        )
    changes += apt_health_changes(ctx)
    # The lab's cache before the first apt-get update: base's own packages come through it.
    changes += aptproxy.changes(ctx, s, s.backup_dir)
    changes += ca_changes(ctx, s)
    sources = sources_changes(ctx, s) if s.apt_mirror else []
    changes += sources
    wanted = list(s.packages) + list(s.extra_packages) + aptproxy.server_packages(s)
    if s.unattended_upgrades:
        wanted.append("unattended-upgrades")
    if uses_timesyncd(f, s):
        wanted.append("systemd-timesyncd")
    if s.kernel_headers and not f.in_container:  # a container runs the host's kernel
        wanted += headers_packages(f.kernel, f.os_id, f.os_version)
    installs = packages(
        ctx,
        wanted,
        lock_timeout_s=s.apt_lock_timeout_s,
        cache_max_age_s=s.apt_cache_max_age_s,
        sources_changed=bool(sources),
        recommends=s.install_recommends,
    )
    changes += aptproxy.through_proxy(installs, s)  # each apt run checks the proxy first
    changes += time_changes(ctx, s)
    changes += aptproxy.server_changes(ctx, s)
    changes += template_file(
        ctx,
        "base/51provision-unattended-upgrades.j2",
        UNATTENDED_CONF,
        {"blocklist": s.unattended_blocklist},
    )
    changes += template_file(
        ctx,
        "base/52provision-periodic.j2",
        PERIODIC_CONF,
        {"enabled": s.unattended_upgrades},
    )
    return changes


# --- verify: behaviour, through testinfra ----------------------------------------------------


def verify_essentials(host, s: Settings) -> None:
    """essential packages installed and the compiler works"""
    missing = [p for p in (*s.packages, *s.extra_packages) if not host.package(p).is_installed]
    assert not missing, f"not installed: {', '.join(missing)}"
    if "build-essential" in s.packages:
        out = host.run("printf 'int main(void){return 0;}' | gcc -x c -o /dev/null -")
        assert out.rc == 0, f"gcc cannot compile: {out.stderr.strip()}"


def verify_dpkg(host, s: Settings) -> None:
    """dpkg has no interrupted or half-installed packages"""
    audit = host.run("dpkg --audit")
    assert audit.rc == 0 and not audit.stdout.strip(), audit.stdout.strip()


def verify_apt_sources(host, s: Settings) -> None:
    """apt reads its sources (no conflicting Signed-By or broken entry)"""
    out = host.run("apt-get indextargets --format '$(SOURCESENTRY)'")
    errors = [x for x in out.stderr.splitlines() if x.startswith("E:")] or [out.stderr.strip()]
    errors = list(dict.fromkeys(errors))  # apt repeats them, once per pass over the sources
    assert out.rc == 0, f"apt cannot read its sources: {' '.join(errors)[:400]}"


def verify_headers(host, s: Settings) -> None:
    """headers for the running kernel (DKMS can build modules)"""
    if not s.kernel_headers:
        raise Skip("base.kernel_headers is off")
    if host.run("systemd-detect-virt --container").rc == 0:
        raise Skip("in a container: the kernel is the host's")
    kernel = host.check_output("uname -r")
    assert host.file(f"/lib/modules/{kernel}/build/Makefile").exists, f"no headers for {kernel}"


def verify_time_sync(host, s: Settings) -> None:
    """the clock is kept in sync (NTP on)"""
    if not s.time_sync:
        raise Skip("base.time_sync is off")
    if host.run("systemd-detect-virt --container").rc == 0:
        raise Skip("in a container: the host's clock is used")
    ntp = host.check_output("timedatectl show -p NTP --value")
    assert ntp == "yes", f"timedatectl says NTP={ntp}"


def verify_unattended(host, s: Settings) -> None:
    """apt's unattended-upgrades never touches NVIDIA/CUDA packages"""
    dump = host.check_output("apt-config dump Unattended-Upgrade::Package-Blacklist")
    missing = [p for p in s.unattended_blocklist if f'"{p}"' not in dump]
    assert not missing, f"not in Unattended-Upgrade::Package-Blacklist: {missing}"
    periodic = host.check_output("apt-config dump APT::Periodic::Unattended-Upgrade")
    want = "1" if s.unattended_upgrades else "0"
    assert f'"{want}"' in periodic, f"APT::Periodic::Unattended-Upgrade is not {want}"


def verify_mirror(host, s: Settings) -> None:
    """apt fetches from the configured mirror only"""
    if not s.apt_mirror:
        raise Skip("no base.apt_mirror set")
    uris = set(host.check_output("apt-get indextargets --format '$(REPO_URI)'").split())
    allowed = {s.apt_mirror.rstrip("/") + "/"}
    if s.apt_security_mirror:
        allowed.add(s.apt_security_mirror.rstrip("/") + "/")
    assert s.apt_mirror.rstrip("/") + "/" in uris, f"apt does not use {s.apt_mirror}: {uris}"
    if s.apt_security_mirror:
        assert uris <= allowed, f"apt also uses {sorted(uris - allowed)}"


def verify_ca_certificates(host, s: Settings) -> None:
    """the extra CA certificates are in the system bundle"""
    if not s.ca_certificates:
        raise Skip("no base.ca_certificates set")
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    for path in s.ca_certificates:
        body = Path(path).expanduser().read_text().split("-----BEGIN CERTIFICATE-----")[1]
        first_line = body.strip().splitlines()[0]
        assert first_line in bundle, f"{path} is not in /etc/ssl/certs/ca-certificates.crt"


def downloads(ctx: Context) -> list[Download]:
    """The packages check installs, for the background fetcher (none through a new mirror:
    the fetcher would still use the sources it replaces)."""
    s, f = ctx.settings(Settings), ctx.facts
    wanted = [*s.packages, *s.extra_packages, *(["unattended-upgrades"] * s.unattended_upgrades)]
    wanted += ["systemd-timesyncd"] if uses_timesyncd(f, s) else []
    if s.kernel_headers and not f.in_container:
        wanted += headers_packages(f.kernel, f.os_id, f.os_version)
    return [] if s.apt_mirror else package_downloads(ctx, wanted)


STEP = Step(
    name="base",
    summary="apt sources/mirror, essentials, kernel headers, CA certs, time sync, safe "
    "unattended-upgrades",
    settings=Settings,
    check=check,
    reads=reads,
    downloads=downloads,
    verify=(
        verify_essentials,
        verify_dpkg,
        verify_apt_sources,
        verify_headers,
        verify_time_sync,
        verify_unattended,
        verify_mirror,
        verify_ca_certificates,
        aptproxy.verify_lab_cache,
    ),
)
