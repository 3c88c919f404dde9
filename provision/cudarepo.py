"""NVIDIA's CUDA apt repository, and the distribution components the GPU steps need: shared by
the driver step (its `nvidia` and `debian` paths) and the cuda step.

The repository for this release only (compat names the directory: ubuntu2204, debian13, ...;
x86_64 or sbsa where NVIDIA builds it): the `cuda-keyring` 1.1-1 package (its key in
`/usr/share/keyrings/cuda-archive-keyring.gpg`, checked by fingerprint against the key that
signs this directory, `REPO_KEYS`: every release's package is 1.1-1, so the version alone does
not tell a debian12 keyring on a Debian 13 host; never apt-key, and NVIDIA keys left in
apt-key's legacy keyring are removed), our own source file at
the keyring package's path (`/etc/apt/sources.list.d/cuda-<distro>-<arch>.list`, so mirrors
work), the priority-600 pin, and no source of another CUDA repository (moved to
/var/backups/provision). The components (contrib, non-free, non-free-firmware, multiverse)
live in one file for every GPU step, `/etc/apt/sources.list.d/provision-components.sources`:
two steps asking for different sets would rewrite it back and forth.

What apt is configured with is one read (`STATE_PROBE`); each helper here has a `*_reads`
function giving the reads a step declares for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from provision import aptsigned, compat, resources, shell, stack
from provision.changes import Change, Run
from provision.errors import ProvisionError
from provision.facts import split_sections
from provision.facts.reads import Read
from provision.resources import apt_update, move_aside, template_file
from provision.step import Context

NVIDIA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos"
KEYRING_PACKAGE = "cuda-keyring"
KEYRING_VERSION = "1.1-1"
KEYRING_DEB = f"{KEYRING_PACKAGE}_{KEYRING_VERSION}_all.deb"
KEYRING = "/usr/share/keyrings/cuda-archive-keyring.gpg"
PIN = "/etc/apt/preferences.d/cuda-repository-pin-600"
COMPONENTS_SOURCES = "/etc/apt/sources.list.d/provision-components.sources"
DOWNLOADS = "/var/lib/provision"
APT_KEY_KEYRING = "/etc/apt/trusted.gpg"
ARCH_DIRS = {"amd64": "x86_64", "arm64": "sbsa"}
OFFICIAL_MIRRORS = {
    "debian": ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security"),
    "ubuntu": ("http://archive.ubuntu.com/ubuntu", "http://security.ubuntu.com/ubuntu"),
}
COMPONENT_ORDER = ("contrib", "non-free", "non-free-firmware", "multiverse")

# The key each repository directory is signed with (the primary key's fingerprint) [confidence].
# 3BF863CC, "cudatools": its full fingerprint is in the sqv refusals quoted in
# NVIDIA/cuda-repo-management issues #30 and #34 [H]. Issue #39 (kmittman, NVIDIA, 2026-02-02):
# NVIDIA keeps 3BF863CC for existing repositories and gave only Debian 13 a new key, 8793F200
# [H]. Its full fingerprint ("Kitmaker (Debian 13 Trixie)") and ubuntu2604's own key 60DF8A40
# ("Kitmaker (Ubuntu 26.04)", rsa4096 2025-11-24) are from public configuration that pins them
# after reading the live repositories (a Chef recipe, Pardus' nvidia tool, install notes): [M],
# NVIDIA's own key table (cuda-repo-management PR #36) was not readable here. The sources, in
# full: tests/data/facts/nvidia-cuda-repo-keys.txt.
OLD_KEY = "EB693B3035CD5710E231E123A4B469963BF863CC"
REPO_KEYS = {
    "ubuntu2204": OLD_KEY,
    "ubuntu2404": OLD_KEY,
    "debian12": OLD_KEY,
    "debian13": "02182E60104FCDC26EAE1B8597A5D4CB8793F200",
    "ubuntu2604": "14BAFBC7562AD710CA04E69905FBB6DA60DF8A40",
}


@dataclass(frozen=True)
class Repo:
    """NVIDIA's CUDA repository for one host: where it is and the files that name it."""

    distro: str  # ubuntu2204 | ubuntu2404 | ubuntu2604 | debian12 | debian13
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
    arch_dir = repo_arch_dir(distro, arch)
    return Repo(distro, arch_dir, f"{repo_url.rstrip('/')}/{distro}/{arch_dir}/")


def repo_arch_dir(distro: str, arch: str) -> str:
    """x86_64 or sbsa: the architecture directory of NVIDIA's repository for this dpkg
    architecture (else Incompatible: NVIDIA builds none for it there)."""
    arch_dir = ARCH_DIRS.get(arch)
    if not arch_dir:
        raise compat.Incompatible(
            f"NVIDIA's CUDA repository has no packages for the {arch} architecture",
            "it serves amd64 (x86_64) and arm64 (sbsa) hosts; use cuda.source = distro",
        )
    # compat's table of the directories built for fewer architectures (debian13: amd64 only).
    built = compat.NVIDIA_REPO_ARCHES.get(distro, tuple(ARCH_DIRS))
    if arch not in built:
        dirs = ", ".join(ARCH_DIRS[a] for a in built)
        raise compat.Incompatible(
            f"NVIDIA's {distro} CUDA repository has no {arch_dir} ({arch}) packages: it is "
            f"built for {dirs} only",
            "use cuda.source = distro (the distribution's toolkit)",
        )
    return arch_dir


def repo_key(distro: str, setting: str = "") -> str:
    """The fingerprint the keyring must hold: cuda.repo_key, else the key NVIDIA signs this
    repository directory with."""
    return setting.upper() or REPO_KEYS.get(distro, OLD_KEY)


# --- OpenPGP keyrings: the primary keys' fingerprints, read here (the host may lack gpg) ------


def key_fingerprints(data: bytes) -> tuple[str, ...]:
    """Fingerprints of the primary keys in an OpenPGP keyring, binary or ASCII-armored
    (RFC 4880 §12.2 v4: SHA-1 of 0x99, the 2-octet length and the key packet's body;
    RFC 9580 v6: SHA-256 with 0x9B and a 4-octet length). A malformed rest is ignored."""
    if b"-----BEGIN PGP" in data:
        data = dearmor(data)
    found: list[str] = []
    at = 0
    while at < len(data):
        packet = _next_packet(data, at)
        if packet is None:
            break
        tag, body, at = packet
        if tag != 6 or not body:  # 6: public key (not a subkey, user id or signature)
            continue
        if body[0] == 4:
            digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body)
        elif body[0] == 6:
            digest = hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body)
        else:
            continue
        found.append(digest.hexdigest().upper())
    return tuple(found)


def dearmor(data: bytes) -> bytes:
    """The packets of an ASCII-armored block (RFC 4880 §6.2): base64 after the headers."""
    lines = data.decode("ascii", "replace").splitlines()
    body: list[str] = []
    state = "before"
    for line in lines:
        line = line.strip()
        if state == "before" and line.startswith("-----BEGIN PGP"):
            state = "headers"
        elif state == "headers" and not line:
            state = "body"
        elif state == "headers" and ":" not in line:
            state, body = "body", [line]
        elif state == "body":
            if line.startswith("-----END") or line.startswith("="):
                break
            body.append(line)
    try:
        return base64.b64decode("".join(body))
    except (binascii.Error, ValueError):
        return b""


def _next_packet(data: bytes, at: int) -> tuple[int, bytes, int] | None:
    """(tag, body, next offset) of the packet at `at` (RFC 4880 §4.2), None if malformed."""
    first = data[at]
    if not first & 0x80:
        return None
    if first & 0x40:  # new format
        tag, at = first & 0x3F, at + 1
        if at >= len(data):
            return None
        o1 = data[at]
        if o1 < 192:
            length, at = o1, at + 1
        elif o1 < 224 and at + 1 < len(data):
            length, at = ((o1 - 192) << 8) + data[at + 1] + 192, at + 2
        elif o1 == 255 and at + 4 < len(data):
            length, at = int.from_bytes(data[at + 1 : at + 5], "big"), at + 5
        else:
            return None  # partial lengths: never used for key material
    else:  # old format
        tag, kind, at = (first >> 2) & 0x0F, first & 0x03, at + 1
        if kind == 3:
            length = len(data) - at
        else:
            size = (1, 2, 4)[kind]
            length, at = int.from_bytes(data[at : at + size], "big"), at + size
    if at + length > len(data):
        return None
    return tag, data[at : at + length], at + length


def keyring_fingerprints(lines: list[str]) -> tuple[str, ...]:
    """The keys in the keyring file, from the probe's `base64` lines (wrapped or not)."""
    try:
        data = base64.b64decode("".join(line.strip() for line in lines))
    except (binascii.Error, ValueError):
        return ()
    return key_fingerprints(data)


@dataclass(frozen=True)
class AptState:
    """What one read tells about the host's apt configuration."""

    targets: tuple[tuple[str, str, str, str], ...]  # (repo uri, release, component, entry)
    fetched: frozenset[str]  # repo URIs whose lists apt has downloaded
    keyring_present: bool
    keyring_keys: tuple[str, ...]  # primary key fingerprints in KEYRING
    apt_key_nvidia: tuple[str, ...]  # fingerprints of NVIDIA keys in /etc/apt/trusted.gpg
    # apt refused its sources and reads them without our components file: targets exclude it
    own_breaks: bool = False


# When apt refuses its sources and reads them without our components file (an older
# provision's .gpg entry beside Debian 13's .pgp one: provision/aptsigned.py), the targets are
# read without it, as they are once base has moved it aside (base plans that move from the
# facts' same test: provision/facts/host.py), so a plan shows what the run will do; entries are
# named by their real paths. `@@own-breaks` says so; any other refusal is `@@broken`.
STATE_PROBE = f"""
o={COMPONENTS_SOURCES}; parts=/etc/apt/sources.list.d; opt=; d=; own=
targets() {{ apt-get indextargets $opt --no-release-info \
  --format '$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(SOURCESENTRY)'; }}
if ! t=$(targets 2>/dev/null); then t=
  if [ -e "$o" ] && d=$(mktemp -d 2>/dev/null); then
    for f in "$parts"/*.list "$parts"/*.sources; do
      [ -e "$f" ] && [ "$f" != "$o" ] && ln -s "$f" "$d/"; done
    opt="-o Dir::Etc::sourceparts=$d"; t=$(targets 2>/dev/null) && own=yes || opt=; fi
fi
echo @@targets
if [ -n "$own" ]; then printf '%s\\n' "$t" | sed "s|^\\(.*\t\\)$d/|\\1$parts/|"
elif [ -n "$t" ]; then printf '%s\\n' "$t"; else targets || echo @@broken; fi
if [ -n "$own" ]; then echo @@own-breaks; fi
echo @@fetched
apt-get indextargets $opt --format '$(REPO_URI)' 2>/dev/null
if [ -n "$d" ]; then rm -r -- "$d"; fi
echo @@keyring
[ -s {KEYRING} ] && echo present
echo @@keyring-data
[ -s {KEYRING} ] && base64 < {KEYRING}
echo @@apt-key
[ -s {APT_KEY_KEYRING} ] && command -v gpg >/dev/null &&
  gpg --batch --show-keys --with-colons {APT_KEY_KEYRING} 2>/dev/null | grep -E '^(pub|fpr|uid):'
{aptsigned.FILES_PROBE}
echo @@end
"""
STATE_READ = Read(STATE_PROBE)


def apt_state(ctx: Context) -> AptState:
    """One read: configured index targets, downloaded lists, the keyring, apt-key's keys."""
    result = ctx.read(STATE_READ.command, sudo=STATE_READ.sudo)
    sections = {k: v.splitlines() for k, v in split_sections(result.stdout).items()}
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
        keyring_keys=keyring_fingerprints(sections.get("keyring-data", [])),
        apt_key_nvidia=nvidia_fingerprints(sections.get("apt-key", [])),
        own_breaks="own-breaks" in sections,
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


def repo_reads(ctx: Context, repo_url: str) -> list[Read]:
    """The reads repo_changes makes (none where this host has no repository: it refuses)."""
    f = ctx.facts
    try:
        repo = repo_for(f.os_key, f.arch, repo_url)
    except ProvisionError:
        return []  # preflight and check say why
    reads = [STATE_READ, resources.file_read(ctx, repo.list_file), resources.file_read(ctx, PIN)]
    if f.os_id == "debian":
        reads += components_reads(ctx)
    return reads


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
    key = repo_key(repo.distro, ctx.of("cuda").repo_key)
    if not (keyring_ok and state.keyring_present):
        changes.append(Change(f"install {KEYRING_DEB} from {repo.url}", (keyring_install(repo),)))
    elif key not in state.keyring_keys:
        held = ", ".join(k[-8:] for k in state.keyring_keys) or "no readable key"
        summary = (
            f"replace {KEYRING} (it holds {held}, not {key[-8:]}, the key of {repo.distro}): "
            f"install {KEYRING_DEB} from {repo.url}"
        )
        changes.append(Change(summary, (keyring_install(repo),)))
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


# --- distribution components (contrib, non-free, multiverse) ------------------------------


def wanted_components(ctx: Context) -> tuple[str, ...]:
    """Every distribution component the enabled GPU steps need here: one file serves them all
    (two steps asking for different sets would rewrite it back and forth)."""
    f = ctx.facts
    c, d = ctx.of("cuda"), ctx.of("driver")
    want: set[str] = set()
    if d.enabled and (f.gpus or not d.require_gpu):
        source = stack.decision(ctx).source
        if f.os_id == "debian" and source == "debian":
            want |= {"contrib", "non-free", "non-free-firmware"}
        elif f.os_id == "debian" and source == "nvidia":
            want.add("contrib")
    if c.enabled and c.source == "distro":
        want |= {"multiverse"} if f.os_id == "ubuntu" else {"contrib", "non-free"}
    elif c.enabled and f.os_id == "debian":
        want.add("contrib")
    return tuple(x for x in COMPONENT_ORDER if x in want)


def components_reads(ctx: Context) -> list[Read]:
    """The reads components_changes makes: apt's state (with the host's source files: their
    Signed-By) and our components file."""
    return [STATE_READ, resources.file_read(ctx, COMPONENTS_SOURCES)]


def components_changes(
    ctx: Context, components: tuple[str, ...], state: AptState | None = None
) -> list[Change]:
    """The components are enabled for this release, on the host's own mirrors: our deb822 file
    adds those no other source has, and goes away again once other sources have them. Each
    entry names the Signed-By the host's own entry for that URI and suite names (apt refuses
    every source when two differ: provision/aptsigned.py); where the host's names none, the
    distribution's keyring that exists on the host."""
    f = ctx.facts
    state = state or apt_state(ctx)
    family = (f.codename, f"{f.codename}-updates", f"{f.codename}-security")
    others = [t for t in state.targets if t[3] != COMPONENTS_SOURCES]
    present = {component for _uri, release, component, _entry in others if release == f.codename}
    missing = [c for c in components if c not in present]
    ours = any(t[3] == COMPONENTS_SOURCES for t in state.targets)
    if not missing:
        return [move_aside(COMPONENTS_SOURCES, "other sources have its components")] if ours else []
    sources = aptsigned.parse_sources(ctx.read(STATE_READ.command, sudo=STATE_READ.sudo).stdout)
    fallback = sources.keyring(f.os_id)
    suites: dict[tuple[str, str], list[str]] = {}  # (uri, signed-by) -> suites
    for uri, release, component, _entry in others:
        if component != "main" or release not in family:
            continue
        signed_by = sources.signed_by_for(uri, release) or fallback
        listed = suites.setdefault((uri, signed_by), [])
        if release not in listed:
            listed.append(release)
    if not suites:
        mirror, security = OFFICIAL_MIRRORS[f.os_id]
        suites = {(mirror, fallback): list(family[:2]), (security, fallback): [family[2]]}
    variables = {
        "entries": [
            {"uri": uri, "suites": found, "signed_by": aptsigned.deb822_value(signed_by)}
            for (uri, signed_by), found in suites.items()
        ],
        "components": missing,
    }
    return template_file(ctx, "cuda/components.sources.j2", COMPONENTS_SOURCES, variables)
