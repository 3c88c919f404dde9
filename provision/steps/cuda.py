"""cuda: the CUDA toolkit (nvcc and libraries) from NVIDIA's apt repository or the distribution's.

Source `nvidia` manages NVIDIA's repository for this release only (provision.cudarepo, shared
with the driver step: `cuda-keyring` 1.1-1 holding the key of this release's repository
(cuda.repo_key, else NVIDIA's key for the directory), our source file at the keyring
package's path, the priority-600 pin `/etc/apt/preferences.d/cuda-repository-pin-600`, no
other CUDA source, no NVIDIA key in apt-key's legacy keyring), then `cuda-toolkit-X-Y` (the
versioned name is the pin: it never moves to another release) and `/etc/profile.d/cuda.sh`.
The version is cuda.version, else the CUDA of the wheels the GPU-stack decision chose
(provision.stack). On Debian `contrib` is added
(`/etc/apt/sources.list.d/provision-components.sources`) when the host's sources lack it.
Source `distro` installs the release's own toolkit package (`DISTRO_TOOLKITS`:
`nvidia-cuda-toolkit` on Debian (contrib and non-free) and Ubuntu up to 24.04, `cuda-toolkit`
on Ubuntu 26.04; multiverse on Ubuntu). Never reboots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import resources, stack
from provision.changes import Change
from provision.cudarepo import (
    APT_KEY_KEYRING,
    KEYRING,
    KEYRING_PACKAGE,
    KEYRING_VERSION,
    NVIDIA_REPO,
    Repo,
    components_changes,
    components_reads,
    is_cuda_repo,
    keyring_fingerprints,
    nvidia_fingerprints,
    repo_changes,
    repo_for,
    repo_key,
    repo_reads,
    wanted_components,
)
from provision.errors import ConfigError, ProvisionError, Skip
from provision.facts.reads import Read
from provision.resources import apt_update, packages, template_file
from provision.settings import fingerprint, one_of, setting, url
from provision.step import Context, Download, Step

PROFILE = "/etc/profile.d/cuda.sh"
DISTRO_PACKAGE = "nvidia-cuda-toolkit"


@dataclass(frozen=True)
class DistroToolkit:
    """The toolkit a release ships itself (source "distro"): package, CUDA X.Y, its nvcc."""

    version: str
    package: str = DISTRO_PACKAGE
    nvcc: str = "/usr/bin/nvcc"
    source: str = ""


# Debian 13: apt-cache against deb.debian.org trixie non-free, 2026-12-01: nvidia-cuda-toolkit
# 12.4.131~12.4.1-2 (tests/data/facts/debian-13-apt-cuda-toolkit.txt) [H]. Ubuntu 26.04: the
# archive carries NVIDIA's CUDA as `cuda-toolkit` (multiverse, amd64 and arm64; source package
# cuda-meta-13-1), ros/rosdistro PR #53982 (2026-09-15) citing packages.ubuntu.com [M]; its
# nvcc path is NVIDIA's layout, /usr/local/cuda-13.1/bin [L: from documentation, not run]
# (tests/data/facts/nvidia-cuda-repo-keys.txt).
DISTRO_TOOLKITS = {
    "debian-12": DistroToolkit("11.8"),
    "debian-13": DistroToolkit("12.4", source="tests/data/facts/debian-13-apt-cuda-toolkit.txt"),
    "ubuntu-22.04": DistroToolkit("11.5"),
    "ubuntu-24.04": DistroToolkit("12.0"),
    "ubuntu-26.04": DistroToolkit(
        "13.1", "cuda-toolkit", "/usr/local/cuda-13.1/bin/nvcc", "ros/rosdistro PR #53982"
    ),
}
NO_TOOLKIT = "pytorch.index is cpu: no toolkit chosen; set cuda.version"


def toolkit_version(value: str) -> None:
    if value and not re.fullmatch(r"[1-9][0-9]?\.[0-9]{1,2}", value):
        raise ValueError(f"{value!r} is not a CUDA toolkit version X.Y (e.g. 12.8)")


def distro_toolkit(os_key: str) -> DistroToolkit | None:
    """The toolkit this release ships itself (None: not known here)."""
    return DISTRO_TOOLKITS.get(os_key)


@dataclass(frozen=True)
class Settings:
    """Settings of the cuda step (inventory keys `cuda.<field>`)."""

    enabled: bool = setting(True, "install a CUDA toolkit (nvcc) on the host")
    version: str = setting(
        "", "toolkit X.Y, e.g. 12.8 (empty: the CUDA of the chosen wheels)", toolkit_version
    )
    source: str = setting(
        "nvidia",
        "nvidia (NVIDIA's apt repo) or distro (the release's own toolkit package)",
        one_of("nvidia", "distro"),
    )
    repo_url: str = setting(NVIDIA_REPO, "base URL of NVIDIA's CUDA apt repos (mirrors)", url)
    repo_key: str = setting(
        "",
        "fingerprint of the key that signs the repo (empty: NVIDIA's key for this release)",
        fingerprint,
    )


# --- the step ----------------------------------------------------------------------------------


def chosen_version(ctx: Context, s: Settings) -> str:
    """The toolkit X.Y: cuda.version, else the CUDA of the wheels compat chose ("" for cpu)."""
    return s.version or stack.decision(ctx).cuda


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
    toolkit = distro_toolkit(f.os_key)
    if s.version and (toolkit is None or s.version != toolkit.version):
        package = toolkit.package if toolkit else DISTRO_PACKAGE
        raise ConfigError(
            f"{ctx.host}: {f.os_key}'s {package} is CUDA "
            f"{toolkit.version if toolkit else 'unknown'}, not {s.version}",
            "set cuda.source = nvidia for another version, or leave cuda.version empty",
        )


def check(ctx: Context) -> list[Change]:
    """What cuda would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    b = ctx.of("base")
    if s.source == "distro":
        changes = components_changes(ctx, wanted_components(ctx))
        if changes:
            changes.append(
                Change("download the new package lists", (apt_update(b.apt_lock_timeout_s),))
            )
        return changes + packages(
            ctx,
            [distro_package(ctx)],
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


def distro_package(ctx: Context) -> str:
    """The package of the distribution's toolkit on this host."""
    toolkit = distro_toolkit(ctx.facts.os_key)
    return toolkit.package if toolkit else DISTRO_PACKAGE


def reads(ctx: Context) -> list[Read]:
    """Everything check reads: apt's state and the files it manages, for the chosen source."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    if s.source == "distro":
        return components_reads(ctx)
    try:
        version = chosen_version(ctx, s)
    except ProvisionError:
        return []  # compat refuses: preflight and check say why
    if not version:
        return []
    return [*repo_reads(ctx, s.repo_url), resources.file_read(ctx, PROFILE)]


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
    """cuda-keyring 1.1-1 is installed and its key file holds the key of this release's repo"""
    nvidia_only(host, s)
    package = host.package(KEYRING_PACKAGE)
    assert package.is_installed, f"{KEYRING_PACKAGE} is not installed"
    assert package.version == KEYRING_VERSION, f"{KEYRING_PACKAGE} is {package.version}"
    keyring = host.file(KEYRING)
    assert keyring.exists and keyring.size > 0, f"{KEYRING} is missing or empty"
    repo = host_repo(host, s)
    want = repo_key(repo.distro, s.repo_key)
    # base64, as check's probe reads it: the file is binary and a command's output is text.
    held = keyring_fingerprints(host.check_output(f"base64 < {KEYRING}").splitlines())
    assert want in held, (
        f"{KEYRING} holds {', '.join(held) or 'no readable key'}, not {want} "
        f"(the key of NVIDIA's {repo.distro} repository)"
    )


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
        os_key = host.check_output('. /etc/os-release && echo "$ID-$VERSION_ID"')
        toolkit = distro_toolkit(os_key)
        version, nvcc = s.version, toolkit.nvcc if toolkit else "/usr/bin/nvcc"
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


def downloads(ctx: Context) -> list[Download]:
    """The distribution's toolkit (and the components file that enables it), for the
    background fetcher; NVIDIA's repository needs its keyring first: left to apt-get."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled or s.source != "distro":
        return []
    found = resources.package_downloads(ctx, [distro_package(ctx)])
    sources = resources.apt_sources(components_changes(ctx, wanted_components(ctx)))
    return sources + found if found else []


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
    reads=reads,
    downloads=downloads,
)
