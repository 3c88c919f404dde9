"""cuda: the CUDA toolkit (nvcc and libraries) from NVIDIA's apt repository or the distribution's.

Source `nvidia` manages NVIDIA's repository for this release only (ubuntu2204, ubuntu2404 or
debian12; x86_64 or sbsa): the `cuda-keyring` 1.1-1 package (the signing key in
`/usr/share/keyrings/cuda-archive-keyring.gpg`; never apt-key, and NVIDIA keys left in the
legacy apt-key keyring are removed), our own source file at the keyring package's path
(`/etc/apt/sources.list.d/cuda-<distro>-<arch>.list`, so mirrors work) and the priority-600 pin
`/etc/apt/preferences.d/cuda-repository-pin-600`; then `cuda-toolkit-X-Y` (the versioned name
is the pin: it never moves to another release) and `/etc/profile.d/cuda.sh`. Sources of other
CUDA repositories are moved to /var/backups/provision. On Debian `contrib` is added
(`/etc/apt/sources.list.d/provision-components.sources`) when the host's sources lack it.
Source `distro` installs the distribution's `nvidia-cuda-toolkit` (Debian: contrib and non-free,
Ubuntu: multiverse). `repo_changes()` is shared with the driver step. Never reboots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from provision import compat, shell
from provision.changes import Change, Run
from provision.errors import ConfigError, ProvisionError, Skip
from provision.resources import apt_update, packages, template_file
from provision.settings import one_of, setting, url
from provision.step import Context, Step

NVIDIA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos"
KEYRING_PACKAGE = "cuda-keyring"
KEYRING_VERSION = "1.1-1"
KEYRING_DEB = f"{KEYRING_PACKAGE}_{KEYRING_VERSION}_all.deb"
KEYRING = "/usr/share/keyrings/cuda-archive-keyring.gpg"
PIN = "/etc/apt/preferences.d/cuda-repository-pin-600"
PROFILE = "/etc/profile.d/cuda.sh"
COMPONENTS_SOURCES = "/etc/apt/sources.list.d/provision-components.sources"
DOWNLOADS = "/var/lib/provision"
BACKUP_DIR = "/var/backups/provision"
APT_KEY_KEYRING = "/etc/apt/trusted.gpg"
ARCH_DIRS = {"amd64": "x86_64", "arm64": "sbsa"}
DISTRO_PACKAGE = "nvidia-cuda-toolkit"
# The toolkit each release ships as nvidia-cuda-toolkit (source "distro").
DISTRO_TOOLKITS = {"debian-12": "11.8", "ubuntu-22.04": "11.5", "ubuntu-24.04": "12.0"}
OFFICIAL_MIRRORS = {
    "debian": ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security"),
    "ubuntu": ("http://archive.ubuntu.com/ubuntu", "http://security.ubuntu.com/ubuntu"),
}
NO_TOOLKIT = "pytorch.index is cpu: no toolkit chosen; set cuda.version"


def toolkit_version(value: str) -> None:
    if value and not re.fullmatch(r"[1-9][0-9]?\.[0-9]{1,2}", value):
        raise ValueError(f"{value!r} is not a CUDA toolkit version X.Y (e.g. 12.8)")


@dataclass(frozen=True)
class Settings:
    """Settings of the cuda step (inventory keys `cuda.<field>`)."""

    enabled: bool = setting(True, "install a CUDA toolkit (nvcc) on the host")
    version: str = setting(
        "", "toolkit X.Y, e.g. 12.8 (empty: the CUDA of the chosen wheels)", toolkit_version
    )
    source: str = setting(
        "nvidia",
        "nvidia (NVIDIA's apt repo) or distro (Debian's nvidia-cuda-toolkit)",
        one_of("nvidia", "distro"),
    )
    repo_url: str = setting(NVIDIA_REPO, "base URL of NVIDIA's CUDA apt repos (mirrors)", url)


# --- NVIDIA's repository (shared with the driver step) -----------------------------------------


@dataclass(frozen=True)
class Repo:
    """NVIDIA's CUDA repository for one host: where it is and the files that name it."""

    distro: str  # ubuntu2204 | ubuntu2404 | debian12
    arch_dir: str  # x86_64 | sbsa
    url: str  # <repo_url>/<distro>/<arch_dir>/

    @property
    def list_file(self) -> str:
        return f"/etc/apt/sources.list.d/cuda-{self.distro}-{self.arch_dir}.list"

    @property
    def origin(self) -> str:
        return urlsplit(self.url).hostname or ""


def repo_for(os_key: str, arch: str, repo_url: str) -> Repo:
    """The repository directory that serves this release and architecture (never another's)."""
    distro = compat.cuda_repo_distro(os_key)
    arch_dir = ARCH_DIRS.get(arch)
    if not arch_dir:
        raise compat.Incompatible(
            f"NVIDIA's CUDA repository has no packages for the {arch} architecture",
            "it serves amd64 (x86_64) and arm64 (sbsa) hosts; use cuda.source = distro",
        )
    return Repo(distro, arch_dir, f"{repo_url.rstrip('/')}/{distro}/{arch_dir}/")


@dataclass(frozen=True)
class AptState:
    """What one probe tells about the host's apt configuration."""

    targets: tuple[tuple[str, str, str, str], ...]  # (repo uri, release, component, entry)
    fetched: frozenset[str]  # repo URIs whose lists apt has downloaded
    keyring_present: bool
    apt_key_nvidia: tuple[str, ...]  # fingerprints of NVIDIA keys in /etc/apt/trusted.gpg


STATE_PROBE = f"""
echo @@targets
apt-get indextargets --no-release-info \\
  --format '$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(SOURCESENTRY)' || echo @@broken
echo @@fetched
apt-get indextargets --format '$(REPO_URI)' 2>/dev/null
echo @@keyring
[ -s {KEYRING} ] && echo present
echo @@apt-key
[ -s {APT_KEY_KEYRING} ] && command -v gpg >/dev/null &&
  gpg --batch --show-keys --with-colons {APT_KEY_KEYRING} 2>/dev/null | grep -E '^(pub|fpr|uid):'
echo @@end
"""


def apt_state(ctx: Context) -> AptState:
    """One probe: configured index targets, downloaded lists, the keyring, apt-key's keys."""
    result = ctx.probe(STATE_PROBE)
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith("@@"):
            current = sections.setdefault(line[2:].strip(), [])
        else:
            current.append(line)
    if "end" not in sections or "broken" in sections:
        raise ProvisionError(
            f"{ctx.host}: apt cannot read its sources (apt-get indextargets failed)",
            f"run `apt-get update` on the host and fix the error it shows\n{result.stderr[-500:]}",
        )
    targets = []
    for line in sections.get("targets", []):
        fields = line.split("\t")
        if len(fields) == 4:
            component = "" if fields[2] == "$(COMPONENT)" else fields[2]
            targets.append((fields[0], fields[1], component, fields[3].rsplit(":", 1)[0]))
    return AptState(
        targets=tuple(targets),
        fetched=frozenset(line.strip() for line in sections.get("fetched", []) if line.strip()),
        keyring_present="present" in sections.get("keyring", []),
        apt_key_nvidia=nvidia_fingerprints(sections.get("apt-key", [])),
    )


def nvidia_fingerprints(colon_lines: list[str]) -> tuple[str, ...]:
    """Fingerprints of keys with an NVIDIA user id, from `gpg --with-colons` pub/fpr/uid lines."""
    found: list[str] = []
    fingerprint = ""
    for line in colon_lines:
        fields = line.split(":")
        if fields[0] == "pub":
            fingerprint = ""
        elif fields[0] == "fpr" and not fingerprint and len(fields) > 9:
            fingerprint = fields[9]
        elif fields[0] == "uid" and len(fields) > 9 and "nvidia" in fields[9].lower():
            found += [fingerprint] if fingerprint and fingerprint not in found else []
    return tuple(found)


def is_cuda_repo(uri: str, repo_url: str) -> bool:
    """NVIDIA's official repository, or a <distro>/<arch>/ directory under the mirror."""
    base = repo_url.rstrip("/") + "/"
    if "/compute/cuda/repos/" in uri:
        return True
    rest = uri[len(base) :] if uri.startswith(base) else ""
    return bool(re.fullmatch(r"(ubuntu|debian)[0-9]+/[a-z0-9_]+/", rest))


def stray_cuda_sources(state: AptState, repo: Repo, repo_url: str) -> list[str]:
    """Source files that point at a CUDA repository other than ours (another release, the
    official one next to a mirror, a second list for ours)."""
    stray = []
    for uri, _release, _component, entry in state.targets:
        if is_cuda_repo(uri, repo_url) and entry != repo.list_file and entry not in stray:
            stray.append(entry)
    return stray


def move_aside(path: str, why: str) -> Change:
    backup = f"{BACKUP_DIR}{path}"
    move = shell.and_(
        shell.cmd("mkdir", "-p", "--", str(PurePosixPath(backup).parent)),
        shell.cmd("mv", "-f", "--", path, backup),
    )
    return Change(f"move {path} to {backup} ({why})", (Run(move),))


def keyring_install(repo: Repo, downloads: str = DOWNLOADS) -> Run:
    """Download cuda-keyring, refuse (and delete) anything that is not cuda-keyring 1.1-1, and
    install it. dpkg keeps our list file (a conffile of the package) on a reinstall."""
    deb = f"{downloads}/{KEYRING_DEB}"
    url_ = repo.url + KEYRING_DEB
    wanted = f"{KEYRING_PACKAGE} {KEYRING_VERSION}"
    fields = shell.cmd("dpkg-deb", "--show", "--showformat=${Package} ${Version}", deb)
    message = "%s is not %s (it says: %s); refused and deleted it\\n"
    refuse = shell.cmd("printf", message, url_, wanted)
    check = (
        f'got=$({fields} 2>/dev/null) || got="not a .deb"; '
        f'if [ "$got" != {shell.cmd(wanted)} ]; then {shell.cmd("rm", "-f", "--", deb)}; '
        f'{refuse} "$got" >&2; exit 1; fi'
    )
    return Run(
        shell.and_(
            shell.cmd("mkdir", "-p", "--", downloads),
            shell.cmd("curl", "-fsSL", "--retry", "3", "-o", deb, url_),
            f"( {check} )",
            shell.cmd("dpkg", "--force-confdef", "--force-confold", "-i", deb),
            shell.cmd("rm", "-f", "--", deb),
        ),
        timeout_s=600,
        description=f"install {KEYRING_DEB}",
    )


def repo_changes(ctx: Context, repo_url: str, lock_timeout_s: int = 600) -> list[Change]:
    """NVIDIA's CUDA repository for this host, ready for apt: cuda-keyring, our source file,
    the pin, contrib on Debian, no stray CUDA sources or apt-key keys, lists downloaded."""
    f = ctx.facts
    repo = repo_for(f.os_key, f.arch, repo_url)
    state = apt_state(ctx)
    changes: list[Change] = []
    for fingerprint in state.apt_key_nvidia:
        delete = shell.cmd(
            "gpg", "--batch", "--yes", "--no-default-keyring", "--keyring", APT_KEY_KEYRING,
            "--delete-keys", fingerprint,
        )  # fmt: skip
        changes.append(
            Change(f"remove NVIDIA key {fingerprint[-8:]} from apt-key's keyring", (Run(delete),))
        )
    for path in stray_cuda_sources(state, repo, repo_url):
        if not path.startswith("/etc/apt/sources.list.d/"):
            raise ProvisionError(
                f"{ctx.host}: {path} names a CUDA repository other than {repo.url}",
                f"remove that line; provision keeps its CUDA source in {repo.list_file}",
            )
        changes.append(move_aside(path, f"a CUDA source other than {repo.url}"))
    if f.os_id == "debian":
        changes += components_changes(ctx, wanted_components(ctx) or ("contrib",), state)
    package = f.packages.get(KEYRING_PACKAGE)
    keyring_ok = package and package.installed and package.version == KEYRING_VERSION
    if not (keyring_ok and state.keyring_present):
        changes.append(Change(f"install {KEYRING_DEB} from {repo.url}", (keyring_install(repo),)))
    changes += template_file(
        ctx,
        "cuda/cuda.list.j2",
        repo.list_file,
        {"distro": repo.distro, "arch_dir": repo.arch_dir, "repo": repo.url, "keyring": KEYRING},
    )
    changes += template_file(ctx, "cuda/cuda-repository-pin-600.j2", PIN, {"origin": repo.origin})
    if changes or repo.url not in state.fetched:
        changes.append(
            Change(f"download the package lists of {repo.url}", (apt_update(lock_timeout_s),))
        )
    return changes


def repo_ready(ctx: Context, repo_url: str) -> bool:
    """Whether NVIDIA's repository is set up and its lists downloaded (nothing to change)."""
    return not repo_changes(ctx, repo_url)


# --- distribution components (contrib, non-free, multiverse) ------------------------------

COMPONENT_ORDER = ("contrib", "non-free", "non-free-firmware", "multiverse")


def wanted_components(ctx: Context) -> tuple[str, ...]:
    """Every distribution component the enabled GPU steps need here: one file serves them all
    (two steps asking for different sets would rewrite it back and forth)."""
    from provision.steps import driver

    f = ctx.facts
    c: Settings = ctx.settings(Settings)
    d: driver.Settings = ctx.settings(driver.Settings)
    want: set[str] = set()
    if d.enabled and (f.gpus or not d.require_gpu):
        source = driver.choice_for(ctx).source
        if f.os_id == "debian" and source == "debian":
            want |= {"contrib", "non-free", "non-free-firmware"}
        elif f.os_id == "debian" and source == "nvidia":
            want.add("contrib")
    if c.enabled and c.source == "distro":
        want |= {"multiverse"} if f.os_id == "ubuntu" else {"contrib", "non-free"}
    elif c.enabled and f.os_id == "debian":
        want.add("contrib")
    return tuple(x for x in COMPONENT_ORDER if x in want)


def components_changes(
    ctx: Context, components: tuple[str, ...], state: AptState | None = None
) -> list[Change]:
    """The components are enabled for this release, on the host's own mirrors: our deb822 file
    adds those no other source has, and goes away again once other sources have them."""
    f = ctx.facts
    state = state or apt_state(ctx)
    family = (f.codename, f"{f.codename}-updates", f"{f.codename}-security")
    others = [t for t in state.targets if t[3] != COMPONENTS_SOURCES]
    present = {component for _uri, release, component, _entry in others if release == f.codename}
    missing = [c for c in components if c not in present]
    ours = any(t[3] == COMPONENTS_SOURCES for t in state.targets)
    if not missing:
        return [move_aside(COMPONENTS_SOURCES, "other sources have its components")] if ours else []
    entries: dict[str, list[str]] = {}
    for uri, release, component, _entry in others:
        if component == "main" and release in family and release not in entries.get(uri, []):
            entries.setdefault(uri, []).append(release)
    if not entries:
        mirror, security = OFFICIAL_MIRRORS[f.os_id]
        entries = {mirror: list(family[:2]), security: [family[2]]}
    variables = {
        "entries": [{"uri": uri, "suites": suites} for uri, suites in entries.items()],
        "components": missing,
        "keyring": f"/usr/share/keyrings/{f.os_id}-archive-keyring.gpg",
    }
    return template_file(ctx, "cuda/components.sources.j2", COMPONENTS_SOURCES, variables)


# --- the step ----------------------------------------------------------------------------------


def chosen_version(ctx: Context, s: Settings) -> str:
    """The toolkit X.Y: cuda.version, else the CUDA of the wheels compat chose ("" for cpu)."""
    if s.version:
        return s.version
    from provision.steps import driver, pytorch

    d: driver.Settings = ctx.settings(driver.Settings)
    p: pytorch.Settings = ctx.settings(pytorch.Settings)
    request = compat.Request(
        branch=d.branch,
        flavour=d.flavour,
        source=d.source,
        cuda=s.version,
        torch_index=p.index,
        torch_version=p.version,
    )
    gpus = compat.gpus_from_facts(ctx.facts)[0]
    return compat.choose(gpus, ctx.facts.os_key, request).cuda


def package_for(version: str) -> str:
    return "cuda-toolkit-" + version.replace(".", "-")


def preflight(ctx: Context) -> None:
    """Refuse what cannot work before anything changes: no repo for this OS or architecture,
    a version the distribution does not ship."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return
    f = ctx.facts
    if s.source == "nvidia":
        repo_for(f.os_key, f.arch, s.repo_url)
        return
    shipped = DISTRO_TOOLKITS.get(f.os_key, "")
    if s.version and s.version != shipped:
        raise ConfigError(
            f"{ctx.host}: {f.os_key}'s {DISTRO_PACKAGE} is CUDA {shipped or 'unknown'}, "
            f"not {s.version}",
            "set cuda.source = nvidia for another version, or leave cuda.version empty",
        )


def check(ctx: Context) -> list[Change]:
    """What cuda would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    from provision.steps import base

    b: base.Settings = ctx.settings(base.Settings)
    if s.source == "distro":
        changes = components_changes(ctx, wanted_components(ctx))
        if changes:
            changes.append(
                Change("download the new package lists", (apt_update(b.apt_lock_timeout_s),))
            )
        return changes + packages(
            ctx,
            [DISTRO_PACKAGE],
            lock_timeout_s=b.apt_lock_timeout_s,
            cache_max_age_s=b.apt_cache_max_age_s if not changes else 1 << 40,
        )
    version = chosen_version(ctx, s)
    if not version:
        return []  # the cpu wheels: nothing to compile for; verify says so
    changes = packages(ctx, ["curl", "ca-certificates"], lock_timeout_s=b.apt_lock_timeout_s)
    repo = repo_changes(ctx, s.repo_url, b.apt_lock_timeout_s)
    changes += repo
    changes += packages(
        ctx,
        [package_for(version)],
        lock_timeout_s=b.apt_lock_timeout_s,
        cache_max_age_s=1 << 40 if repo else b.apt_cache_max_age_s,
    )
    changes += template_file(
        ctx,
        "cuda/cuda.sh.j2",
        PROFILE,
        {"version": version, "bin_dir": f"/usr/local/cuda-{version}/bin"},
    )
    return changes


# --- verify: behaviour, through testinfra ----------------------------------------------------


def host_repo(host, s: Settings) -> Repo:
    os_key = host.check_output('. /etc/os-release && echo "$ID-$VERSION_ID"')
    return repo_for(os_key, host.check_output("dpkg --print-architecture"), s.repo_url)


def host_version(host, s: Settings) -> str:
    """cuda.version, else the version the profile file provision wrote names."""
    if s.version:
        return s.version
    profile = host.file(PROFILE)
    found = re.search(r"/usr/local/cuda-(\d+\.\d+)/bin", profile.content_string or "")
    if not profile.exists or not found:
        raise Skip(f"{NO_TOOLKIT} (cuda.version is empty and {PROFILE} names no toolkit)")
    return found[1]


def nvidia_only(host, s: Settings) -> str:
    """The toolkit version, or Skip when NVIDIA's repository is not in use here."""
    if not s.enabled:
        raise Skip("cuda.enabled is off")
    if s.source != "nvidia":
        raise Skip("cuda.source is distro: NVIDIA's repository is not used")
    return host_version(host, s)


def verify_repository(host, s: Settings) -> None:
    """NVIDIA's repository for this release only, signed-by cuda-keyring's key"""
    nvidia_only(host, s)
    repo = host_repo(host, s)
    listed = host.file(repo.list_file)
    assert listed.exists, f"{repo.list_file} is missing"
    entry = f"deb [signed-by={KEYRING}] {repo.url} /"
    assert entry in listed.content_string.splitlines(), f"{repo.list_file} lacks `{entry}`"
    uris = host.check_output("apt-get indextargets --no-release-info --format '$(REPO_URI)'")
    cuda = {u for u in uris.split() if is_cuda_repo(u, s.repo_url)}
    assert cuda == {repo.url}, f"apt uses CUDA repositories {sorted(cuda)}, want {repo.url} only"


def verify_keyring(host, s: Settings) -> None:
    """cuda-keyring 1.1-1 is installed and its key file is present"""
    nvidia_only(host, s)
    package = host.package(KEYRING_PACKAGE)
    assert package.is_installed, f"{KEYRING_PACKAGE} is not installed"
    assert package.version == KEYRING_VERSION, f"{KEYRING_PACKAGE} is {package.version}"
    assert host.file(KEYRING).size > 0, f"{KEYRING} is missing or empty"


def verify_no_apt_key(host, s: Settings) -> None:
    """no NVIDIA key in apt-key's legacy keyring (trusted for every source)"""
    nvidia_only(host, s)
    keyring = host.file(APT_KEY_KEYRING)
    # Empty holds no key (gpg --delete-keys of the last key leaves it so; check reads it so too).
    if not keyring.exists or keyring.size == 0:
        return
    out = host.run(f"gpg --batch --show-keys --with-colons {APT_KEY_KEYRING}")
    assert out.rc == 0, f"cannot read {APT_KEY_KEYRING}: {out.stderr.strip()}"
    keys = nvidia_fingerprints(out.stdout.splitlines())
    assert not keys, f"NVIDIA keys in {APT_KEY_KEYRING}: {', '.join(keys)}"


def verify_pin(host, s: Settings) -> None:
    """the toolkit comes from NVIDIA's repository at priority 600"""
    version = nvidia_only(host, s)
    repo = host_repo(host, s)
    policy = host.check_output(f"apt-cache policy {package_for(version)}")
    assert re.search(rf"^\s+600 {re.escape(repo.url.rstrip('/'))}/?\s", policy, re.M), (
        f"{repo.url} is not at priority 600:\n{policy}"
    )


def verify_nvcc(host, s: Settings) -> None:
    """nvcc runs and reports the toolkit's version"""
    if not s.enabled:
        raise Skip("cuda.enabled is off")
    if s.source == "distro":
        version, nvcc = s.version, "/usr/bin/nvcc"
    else:
        version = host_version(host, s)
        nvcc = f"/usr/local/cuda-{version}/bin/nvcc"
    out = host.run(f"{nvcc} --version")
    assert out.rc == 0, f"{nvcc} --version failed: {(out.stderr or out.stdout).strip()[-300:]}"
    if version:
        assert f"release {version}," in out.stdout, f"{nvcc} is not CUDA {version}: {out.stdout}"


def verify_login_path(host, s: Settings) -> None:
    """a login shell finds this toolkit's nvcc first (/etc/profile.d/cuda.sh)"""
    version = nvidia_only(host, s)
    found = host.run("bash -lc 'command -v nvcc'").stdout.strip()
    assert found == f"/usr/local/cuda-{version}/bin/nvcc", f"a login shell finds nvcc at {found!r}"


STEP = Step(
    name="cuda",
    summary="CUDA toolkit from NVIDIA's repo (cuda-keyring, pinned) or the distribution",
    settings=Settings,
    check=check,
    verify=(
        verify_repository,
        verify_keyring,
        verify_no_apt_key,
        verify_pin,
        verify_nvcc,
        verify_login_path,
    ),
    preflight=preflight,
)
