"""pytorch's environment and install commands: where the environment lives (a conda env
linked from /opt/provision/envs/<env>, or a venv there), the command that creates it, and the
pip commands that install the PyTorch packages from the chosen index only, check the build
that arrived, and share a conda env with its group.

Functions here take the pytorch step's Settings (`s`), which is not imported:
provision.steps.pytorch imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import groupshare, shell
from provision.aptproxy import trusted_host
from provision.facts.pyenv import BUILD_FUNCTION
from provision.step import Download

ENVS = "/opt/provision/envs"
MARKER = "provision-pytorch.json"
PYTORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
# pip's temporary directory for the installs. torch alone is 0.2-1 GB and a CUDA build brings
# 2-3 GB of nvidia-* wheels; pip writes each download (and unpacks each wheel) under TMPDIR
# first, and /tmp is a RAM tmpfs on Debian 13 (trixie's default) and on many other systems.
# /var/tmp is the place for large temporary files on disk (systemd's file-hierarchy(7):
# "/tmp/ ... should hence not be used for larger files. (Use /var/tmp/ for that.)"; FHS 5.15).
PIP_TMPDIR = "/var/tmp"
# The torch packages' pip call reads no pip.conf and no PIP_* source of the host: pip appends a
# configured extra-index-url / find-links to those of the command line, so another index's
# build could win. os.devnull as PIP_CONFIG_FILE loads no config file at all; an empty
# variable counts as unset. Everything that call needs (index, find-links, CA bundle, and
# trusted-host for an http one, which pip otherwise ignores) is on its command line; a proxy
# comes from https_proxy / http_proxy (pip.conf's own `proxy` does not reach this one call).
TORCH_ONLY = ("PIP_CONFIG_FILE=/dev/null", "PIP_EXTRA_INDEX_URL=", "PIP_FIND_LINKS=")

# After the torch packages' own install (before any dependency is fetched) and at the end:
# the torch now in the env must be the chosen build (argv[1]), whatever a source offered.
BUILD_CHECK = (
    BUILD_FUNCTION
    + """\
import sys
have, want = torch_build(), sys.argv[1]
if have is not None and have != want:
    sys.exit("pip installed torch %s, the %s build, but the %s build was chosen (pytorch.index): "
             "another index or find-links page served it (pytorch.index_url / extra_index_url / "
             "find_links)" % (md.version("torch"), have, want))
"""
)


@dataclass(frozen=True)
class Layout:
    """Where the environment lives and how it is made."""

    path: str  # the environment itself
    link: str  # /opt/provision/envs/<env>: the path itself for a venv, a link to a conda env
    conda_prefix: str  # "" for a venv
    group: str  # the conda group that shares the env ("" for a venv)
    channels: tuple[str, ...]

    @property
    def python(self) -> str:
        return f"{self.path}/bin/python"


def name_of(req: str) -> str:
    """The distribution name of a requirement ("torch<2.15" → "torch")."""
    return re.split(r"[<>=!~\[]", req)[0]


def pinned(reqs: list[str], tag: str, arch: str) -> list[str]:
    """The requirements as pip gets them: `torch==V` becomes `torch==V+<tag>` where the chosen
    index labels its builds, so that no other build of release V can match (PEP 440: a local
    label in `==` is compared strictly; without one, any label matches). PyPI refuses local
    versions, so its CUDA build of V never satisfies `==V+cpu`. Left as is on arm64 with the
    cpu index, whose wheels carry no label (pytorch/pytorch#110791, malfet: "ARM binaries do
    not have `+cpu` suffix"), and for a range (no specifier can ask for a label)."""
    if arch in ("arm64", "aarch64") and tag == "cpu":
        return list(reqs)
    return [f"{r}+{tag}" if re.fullmatch(r"torch==[0-9][0-9a-z.]*", r) else r for r in reqs]


def pip_env(*, torch_only: bool = False) -> str:
    """The variables a pip install runs with: its temporary directory on disk, and for the
    torch packages no configured extra source (TORCH_ONLY)."""
    return " ".join([f"TMPDIR={PIP_TMPDIR}", *(TORCH_ONLY if torch_only else ())])


def index_url(s, tag: str) -> str:
    """The pip index for the PyTorch packages."""
    return s.index_url or PYTORCH_INDEX.format(tag=tag)


def pip_options(s, index: str, *, extra: bool = True) -> list[str]:
    """Source options shared by the pip calls (index, mirrors, CA bundle); `extra=False`
    leaves out the extra index (the torch packages come from the chosen index only)."""
    options = ["--index-url", index] if index else []
    if s.extra_index_url and extra:
        options += ["--extra-index-url", s.extra_index_url]
    if s.find_links:
        options += ["--find-links", s.find_links]
    # The system bundle by default: pip's own (certifi) lacks the CAs base.ca_certificates adds.
    return [*options, "--cert", s.ca_bundle or SYSTEM_CA]


def install_command(s, env: Layout, tag: str, reqs: list[str], *, uninstall_first: bool) -> str:
    """pip install of the PyTorch packages, then the extra packages (torch kept as it is)."""
    pip = [env.python, "-m", "pip"]
    quiet = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    steps = []
    if env.conda_prefix:
        steps.append("umask 0002")  # group-writable files in the shared env
    if uninstall_first:
        names = [name_of(r) for r in s.packages]
        steps.append(shell.cmd(*pip, "uninstall", "-y", *quiet[:2], *names))
    index = index_url(s, tag)
    check = shell.cmd(env.python, "-c", BUILD_CHECK, tag)  # fails loudly on another build
    # The PyTorch packages from the chosen index (and find-links) only, without dependencies:
    # an extra index may serve another build of the same release (PyPI's CUDA torch for a cpu
    # request), and pip takes whichever sorts highest; `reqs` pins the build's label where
    # they name a version (pinned). The build is checked before any dependency is fetched (a
    # CUDA build's are gigabytes). Then the dependencies from every source: the torch
    # packages, satisfied, stay as installed (no --upgrade).
    no_deps = ["--no-deps", *pip_options(s, index, extra=False)]
    for host in dict.fromkeys(trusted_host(u) for u in (index, s.find_links) if u):
        no_deps += ["--trusted-host", host] if host else []
    steps.append(
        f"{pip_env(torch_only=True)} {shell.cmd(*pip, 'install', *quiet, *no_deps, *reqs)}"
    )
    steps.append(check)
    steps.append(f"{pip_env()} {shell.cmd(*pip, 'install', *quiet, *pip_options(s, index), *reqs)}")
    if s.extra_packages:
        # Extras come from the user's index (or pip's default, PyPI); the torch requirement is
        # repeated so that an extra cannot swap the build for another index's torch.
        extra = [r for r in reqs if r.startswith("torch")]
        options = pip_options(s, s.index_url)
        install = shell.cmd(*pip, "install", *quiet, *options, *s.extra_packages, *extra)
        steps.append(f"{pip_env()} {install}")
    steps.append(check)
    if env.conda_prefix:
        steps.append(share_command(env))
    return shell.and_(*steps)


def wheel_downloads(s, env: Layout, tag: str, reqs: list[str], python: str) -> list[Download]:
    """install_command's pip installs as pip downloads for the background fetcher: the PyTorch
    packages without dependencies from the chosen index, then the dependencies of the very
    wheels it fetched (as the install resolves those of the torch it installed), then the
    extras. `python`: the env's X.Y ("" for a venv of the system python3). The fetcher adds
    its folder as --find-links to every `<env>/bin/python -m pip install` (prefetch.before)."""
    index = index_url(s, tag)
    conda = f"{env.conda_prefix}/bin/python" if env.conda_prefix else ""
    pip = shell.cmd(env.python, "-m", "pip", "install")

    def call(options: list[str], names, fetched: bool = False) -> Download:
        return Download("wheels", tuple(names), dest=pip, options=tuple(options), python=python,
                        interpreter=conda, with_fetched=fetched)  # fmt: skip

    calls = [call(["--no-deps", *pip_options(s, index, extra=False)], reqs)]
    calls.append(call(pip_options(s, index), (), True))
    if s.extra_packages:
        calls.append(call(pip_options(s, s.index_url), s.extra_packages, True))
    return calls


def share_command(env: Layout) -> str:
    """The env owned by the conda group, group-writable, directories setgid."""
    return groupshare.share_command(env.path, env.group)


def create_command(s, env: Layout, python: str, link_kind: str) -> str:
    """A fresh conda env (conda-forge's python, never -c pytorch) or a venv."""
    steps = []
    if env.conda_prefix:
        channels = [a for ch in env.channels for a in ("-c", ch)]
        conda_bin = f"{env.conda_prefix}/bin/conda"
        missing = f"no conda in {env.conda_prefix}: run the conda step first"
        steps += [
            f"{{ {shell.cmd('test', '-x', conda_bin)} || "
            f"{{ {shell.cmd('echo', missing)} >&2; exit 1; }}; }}",
            "umask 0002",
            shell.cmd("rm", "-rf", "--", env.path),
            shell.cmd(
                conda_bin, "create", "-y", "-p", env.path,
                f"python={python}", "--override-channels", *channels,
            ),
        ]  # fmt: skip
    else:
        steps.append(shell.cmd("mkdir", "-p", "--", ENVS))
        if link_kind == "symbolic link":  # left by a conda env: never clear through it
            steps.append(shell.cmd("rm", "-f", "--", env.link))
        else:
            steps.append(shell.cmd("rm", "-rf", "--", env.path))
        steps.append(shell.cmd("python3", "-m", "venv", env.path))
    return shell.and_(*steps)
