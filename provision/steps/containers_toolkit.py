"""containers, NVIDIA's part: the NVIDIA Container Toolkit, so containers get the GPUs.

`containers.nvidia = true`: `nvidia-container-toolkit` from NVIDIA's repository (the install
guide's: key from `<repo>/gpgkey` into /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg,
`deb [signed-by=...] <repo>/stable/deb/$(ARCH) /`; provision/signedrepo.py checks the key's
fingerprint and pins the toolkit's packages to that origin; `containers.toolkit_repo_url` for a
mirror). Sources of NVIDIA's deprecated repositories (nvidia-docker, nvidia-container-runtime)
are moved aside.

How Docker gets the GPUs, chosen from the engine's version (the installed one, else apt's
candidate) and said in the plan:
- Docker >= 25: CDI. `features.cdi` in daemon.json (Docker 25 added CDI devices behind that
  flag: docker/cli docs "CDI"), and the spec `nvidia-ctk cdi generate` writes to
  /etc/cdi/nvidia.yaml where there is a GPU; containers ask with `--device nvidia.com/gpu=all`.
- Older Docker (Debian 12's 20.10): the `nvidia` runtime in daemon.json, the entry
  `nvidia-ctk runtime configure --runtime=docker` writes (`path: nvidia-container-runtime`,
  `args: []`), merged like every key this step owns; `--gpus all` or `--runtime nvidia`.
  `containers.nvidia_default_runtime` makes it Docker's default-runtime.

NVIDIA's mitigation for containers that lose their GPUs at `systemctl daemon-reload` ("Failed to
initialize NVML: Unknown Error": runc finds no /dev/char link for NVIDIA's device nodes;
NVIDIA/nvidia-docker#1730, #1671): the udev rule NVIDIA gives, which runs `nvidia-ctk system
create-dev-char-symlinks --create-all` when the driver binds, and one run of it now where a
device node has no link.
"""

from __future__ import annotations

import re

from provision import dockerjson, shell, signedrepo, stack
from provision.changes import Change, Run
from provision.errors import Skip
from provision.facts.reads import Read
from provision.resources import file_read, packages, template_file
from provision.signedrepo import SignedRepo
from provision.step import Context

# NVIDIA's repository and the key that signs it: C95B321B…F796ECB0 ("NVIDIA CORPORATION (Open
# Source Projects) <cudatools@nvidia.com>") is the fingerprint public configurations pin after
# reading https://nvidia.github.io/libnvidia-container/gpgkey (several, independently, e.g.
# Puppet's apt::key for the nvidia-docker repository, which uses the same key) [M: NVIDIA's page
# is not reachable from here; `containers.toolkit_repo_key` overrides it].
TOOLKIT_REPO = "https://nvidia.github.io/libnvidia-container"
TOOLKIT_KEY = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
LIST_FILE = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"  # the guide's own path
PIN_FILE = "/etc/apt/preferences.d/nvidia-container-toolkit-pin-600"
PACKAGES = ("nvidia-container-toolkit",)
# the toolkit and what it depends on (NVIDIA's packaging since 1.6: one repository)
PINNED = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
DEPRECATED = (
    "https://nvidia.github.io/nvidia-docker/",
    "https://nvidia.github.io/nvidia-container-runtime/",
)
CDI_SPEC = "/etc/cdi/nvidia.yaml"
CDI_SPECS = (CDI_SPEC, "/var/run/cdi/nvidia.yaml")  # the second: nvidia-cdi-refresh's (1.18)
UDEV_RULE = "/etc/udev/rules.d/71-nvidia-dev-char.rules"
FIRST_CDI_DOCKER = (25, 0)
RUNTIME = {"path": "nvidia-container-runtime", "args": []}


def engine_version_read(package: str = "docker.io") -> Read:
    """The engine package's installed version, then apt's candidate."""
    name = shell.cmd(package)
    return Read(
        f"dpkg-query -W -f='${{db:Status-Abbrev}} ${{Version}}\\n' {name} 2>/dev/null | "
        "sed -n 's/^ii  *//p'; echo @@candidate; "
        f"apt-cache policy {name} 2>/dev/null | sed -n 's/^ *Candidate: *//p'"
    )


def unlinked_script(dev: str = "/dev") -> str:
    """The NVIDIA device nodes with no DEV/char/MAJOR:MINOR link (stat prints them in hex)."""
    d = shell.cmd(dev)
    return (
        f'for n in {d}/nvidia*; do [ -c "$n" ] || continue; set -- $(stat -c \'%t %T\' "$n"); '
        f'[ -e {d}"/char/$((0x$1)):$((0x$2))" ] || printf \'%s\\n\' "$n"; done; true'
    )


UNLINKED_READ = Read(unlinked_script())
SPEC_READ = Read(shell.or_(*(f"[ -s {shell.cmd(p)} ]" for p in CDI_SPECS)))


def repo(repo_url: str, repo_key: str) -> SignedRepo:
    base = repo_url.rstrip("/")
    return SignedRepo(
        name="NVIDIA's container toolkit repository",
        key_url=f"{base}/gpgkey",
        fingerprint=(repo_key or TOOLKIT_KEY).upper(),
        keyring=KEYRING,
        list_file=LIST_FILE,
        uri=f"{base}/stable/deb/$(ARCH)",
        suite="/",
        pin_file=PIN_FILE,
        pin_packages=PINNED,
        stray=(*DEPRECATED, f"{TOOLKIT_REPO}/"),
        list_template="containers/nvidia-container-toolkit.list.j2",
        pin_template="containers/nvidia-container-toolkit.pin.j2",
    )


def engine_version(text: str) -> tuple[int, int] | None:
    """Docker's major.minor from engine_version_read (installed first, else the candidate);
    Debian's versions read `20.10.24+dfsg1-1+deb12u1`, `26.1.5+dfsg1-9+b1`, Docker's own
    `5:27.3.1-1~debian.12~bookworm` (an epoch)."""
    installed, _, candidate = text.partition("@@candidate")
    for value in (installed.strip(), candidate.strip()):
        m = re.match(r"(?:[0-9]+:)?([0-9]+)\.([0-9]+)", value)
        if m:
            return int(m[1]), int(m[2])
    return None


def mode_for(version: tuple[int, int] | None) -> str:
    """cdi from Docker 25 on, else the nvidia runtime (which every version has)."""
    return "cdi" if version and version >= FIRST_CDI_DOCKER else "runtime"


def mode(s, version: tuple[int, int] | None) -> str:
    """How this host's engine gets the GPUs: Podman always through CDI (podman(1) --device)."""
    return "cdi" if s.engine == "podman" else mode_for(version)


def why(version: tuple[int, int] | None) -> str:
    shown = f"Docker {version[0]}.{version[1]}" if version else "Docker of unknown version"
    if mode_for(version) == "cdi":
        return f"CDI, {shown} has CDI devices (25 and later)"
    return f"the nvidia runtime, {shown} has no CDI (it came in 25)"


def owned_keys(s, version: tuple[int, int] | None) -> dict:
    """The daemon.json keys the toolkit needs, for this engine."""
    if not s.nvidia:
        return {}
    if mode_for(version) == "cdi":
        return {"features": {"cdi": True}}
    wanted: dict = {"runtimes": {"nvidia": dict(RUNTIME)}}
    if s.nvidia_default_runtime:
        wanted["default-runtime"] = "nvidia"
    return wanted


def read_version(ctx: Context, package: str = "docker.io") -> tuple[int, int] | None:
    return engine_version(ctx.read(engine_version_read(package).command).stdout)


def reads(ctx: Context, s, engine_package: str = "docker.io") -> list[Read]:
    """What the toolkit's part reads; ENGINE_PACKAGE is the Docker package in use."""
    if not s.nvidia:
        return []
    wanted = [
        *([engine_version_read(engine_package)] if s.engine == "docker" else []),
        *signedrepo.reads(ctx, repo(s.toolkit_repo_url, s.toolkit_repo_key)),
    ]
    wanted.append(file_read(ctx, UDEV_RULE))
    if ctx.facts.gpus:
        wanted += [UNLINKED_READ, SPEC_READ]
    return wanted


def package_changes(ctx: Context, s, lock_timeout_s: int) -> list[Change]:
    """The toolkit's repository and package (before daemon.json names its runtime)."""
    if not s.nvidia:
        return []
    changes = packages(ctx, ["curl", "ca-certificates", "gpg"], lock_timeout_s=lock_timeout_s)
    repo_changes = signedrepo.changes(
        ctx, repo(s.toolkit_repo_url, s.toolkit_repo_key), lock_timeout_s
    )
    changes += repo_changes
    changes += packages(
        ctx, PACKAGES, lock_timeout_s=lock_timeout_s, sources_changed=bool(repo_changes)
    )
    return changes


def device_changes(ctx: Context, s, version: tuple[int, int] | None) -> list[Change]:
    """The daemon-reload mitigation, and the CDI spec where there is a GPU to describe."""
    if not s.nvidia:
        return []
    changes = template_file(ctx, "containers/71-nvidia-dev-char.rules.j2", UDEV_RULE, {})
    if not ctx.facts.gpus:
        return changes  # no device nodes to link or describe (verify says so)
    unlinked = ctx.read(UNLINKED_READ.command).stdout.split()
    if unlinked:
        changes.append(
            Change(
                f"link {len(unlinked)} NVIDIA device node(s) under /dev/char (NVIDIA's mitigation "
                "for containers losing their GPUs at systemctl daemon-reload)",
                (
                    Run(
                        shell.cmd(
                            "nvidia-ctk", "system", "create-dev-char-symlinks", "--create-all"
                        )
                    ),
                ),
            )
        )
    if mode(s, version) == "cdi" and not ctx.read(SPEC_READ.command).ok:
        generate = shell.cmd("nvidia-ctk", "cdi", "generate", f"--output={CDI_SPEC}")
        changes.append(
            Change(
                f"describe the GPUs for CDI in {CDI_SPEC} (nvidia-ctk cdi generate)",
                (Run(generate, description="nvidia-ctk cdi generate"),),
            )
        )
    return changes


# --- verify ----------------------------------------------------------------------------------


def host_version(host) -> tuple[int, int] | None:
    out = host.run("docker version --format '{{.Server.Version}}'").stdout
    return engine_version(out)


def verify_toolkit(host, s) -> None:
    """the NVIDIA Container Toolkit is installed and the engine knows how to give containers GPUs"""
    if not s.enabled or not s.nvidia:
        raise Skip("containers.nvidia is off" if s.enabled else "containers.enabled is off")
    out = host.run("nvidia-ctk --version")
    assert out.rc == 0, f"nvidia-ctk does not run (exit {out.rc}): {out.stderr[-300:]}"
    version = host_version(host) if s.engine == "docker" else None
    cdi = mode(s, version) == "cdi"
    if s.engine == "docker" and cdi:
        dirs = host.run("docker info --format '{{json .CDISpecDirs}}'").stdout.strip()
        assert dirs not in ("", "null", "[]"), (
            f"Docker {version} reports no CDI spec directories: features.cdi is not on "
            f"({dockerjson.PATH})"
        )
    elif s.engine == "docker":
        runtimes = host.run("docker info --format '{{json .Runtimes}}'").stdout
        assert '"nvidia"' in runtimes, (
            f"Docker has no nvidia runtime (docker info: {runtimes.strip()[:200]}): "
            f"{dockerjson.PATH} lacks runtimes.nvidia"
        )
    if cdi and stack.has_gpu(host):
        assert any(host.file(p).exists for p in CDI_SPECS), (
            f"no CDI spec describes the GPUs ({', '.join(CDI_SPECS)}): sudo nvidia-ctk cdi "
            f"generate --output={CDI_SPEC}"
        )
    rule = host.file(UDEV_RULE)
    assert rule.exists and "create-dev-char-symlinks" in rule.content_string, (
        f"{UDEV_RULE} is missing (the daemon-reload mitigation)"
    )
