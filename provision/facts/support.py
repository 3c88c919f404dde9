"""Whether provision may work on a host, and what a person should know first: a supported
OS whose /etc/os-release agrees with its package system, and a clock close to this machine's.

Apart from the facts themselves (host.py) because these are decisions, not reads: they refuse
(ProvisionError) or warn, before any step looks at the host.
"""

from __future__ import annotations

import re

from provision.durations import human_duration
from provision.errors import ProvisionError
from provision.facts.host import SUPPORTED, Facts


def check_supported(host: str, facts: Facts) -> None:
    """Refuse an OS this tool does not know, or whose os-release contradicts its packages."""
    if (facts.os_id, facts.os_version) not in SUPPORTED:
        found = facts.os_name or f"{facts.os_id} {facts.os_version}".strip() or "unknown OS"
        raise ProvisionError(
            f"{host}: {found} is not supported",
            f"provision supports {supported_text()}",
        )
    check_consistent(host, facts)  # a supported name on another OS's packages


def supported_text() -> str:
    """The supported releases in words, from SUPPORTED ("Debian 12 and 13, Ubuntu ...")."""
    names = {"debian": "Debian", "ubuntu": "Ubuntu"}
    parts = []
    for os_id in sorted({os_id for os_id, _ in SUPPORTED}):
        versions = sorted((v for i, v in SUPPORTED if i == os_id), key=_version_key)
        listed = (
            ", ".join(versions[:-1]) + " and " + versions[-1] if len(versions) > 1 else versions[0]
        )
        parts.append(f"{names.get(os_id, os_id)} {listed}")
    return "; ".join(parts)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".") if x.isdigit())


MAX_CLOCK_SKEW_S = 120  # beyond this, apt ("not valid yet"), TLS and logs go wrong
UBUNTU_BASE_FILES = {"12": "22.04", "13": "24.04", "14": "26.04"}  # base-files NNubuntuM


def clock_warning(host: str, facts: Facts) -> str:
    """A line when the host's clock differs from this machine's by more than a couple of
    minutes ('' otherwise or when unknown)."""
    skew = facts.clock_skew_s
    if skew is None or abs(skew) <= MAX_CLOCK_SKEW_S:
        return ""
    way = "behind" if skew < 0 else "ahead of"
    return (
        f"the host's clock is {human_duration(skew)} {way} this machine's "
        '(apt refuses Release files "not valid yet" from a clock in the past, TLS fails): '
        "run `sudo timedatectl set-ntp true` on the host, or set the date "
        "(`sudo date -s @$(date +%s)` with this machine's time)"
    )


def warnings(host: str, facts: Facts) -> list[str]:
    """What a person should know about the host before anything runs (not errors)."""
    return [w for w in (clock_warning(host, facts),) if w]


def package_system_os(facts: Facts) -> tuple[str, str, str] | None:
    """(id, version or '', evidence) from the package system: the `base-files` package's
    version (Ubuntu: `13ubuntu10`, Debian: `12.4+deb12u5`), else /etc/debian_version. None
    when neither tells."""
    pkg = facts.packages.get("base-files")
    version = pkg.version if pkg and pkg.installed else ""
    if version:
        evidence = f"base-files {version}"
        ubuntu = re.match(r"(\d+)ubuntu", version)
        if ubuntu:
            return "ubuntu", UBUNTU_BASE_FILES.get(ubuntu.group(1), ""), evidence
        debian = re.match(r"(\d+)(\.\d+)*(\+deb\d+u\d+)?$", version)
        if debian:
            return "debian", debian.group(1), evidence
    dv = facts.debian_version
    if re.fullmatch(r"\d+(\.\d+)*", dv):  # Ubuntu's holds a codename ("trixie/sid")
        return "debian", dv.split(".")[0], f"/etc/debian_version {dv}"
    return None


def check_consistent(host: str, facts: Facts) -> None:
    """Refuse a host whose /etc/os-release contradicts its package system (a Debian box whose
    os-release says Ubuntu would get Ubuntu's drivers and repositories)."""
    found = package_system_os(facts)
    if found is None:
        return
    os_id, version, evidence = found
    if facts.os_id == os_id and (not version or facts.os_version == version):
        return
    says = facts.os_name or f"{facts.os_id} {facts.os_version}".strip() or "nothing"
    pkg_os = f"{'Ubuntu' if os_id == 'ubuntu' else 'Debian'} {version}".strip()
    raise ProvisionError(
        f"{host}: /etc/os-release says {says} (ID={facts.os_id} VERSION_ID={facts.os_version}), "
        f"but the package system is {pkg_os} ({evidence}); refusing to decide anything "
        "OS-specific on a contradiction",
        "restore the distribution's own /etc/os-release (a link to /usr/lib/os-release of "
        "base-files: `sudo apt-get install --reinstall base-files`)",
    )
