"""pytorch: an environment with torch, torchvision and torchaudio from the index compat chose.

Manages: a conda env `CONDA_PREFIX/envs/<env>` (when the conda step is enabled; shared with
the conda group, group-writable) or a venv `/opt/provision/envs/<env>` with the system
python3; `/opt/provision/envs/<env>` is always the way in (a link to the conda env). The
packages come with pip from `https://download.pytorch.org/whl/<tag>` (the tag compat chose)
(the tag of the host's GPU-stack decision, provision.stack) or the user's mirror / find-links,
never `-c pytorch`, first without dependencies and without
the extra index or a configured one (so no other index's build of torch can win), a pinned
version with the build's label (`torch==2.13.0+cpu`: no other build of the release matches),
and the installed build (the `+cpu`/`+cu126` tag) is checked against the chosen one before the
dependencies are fetched, and again at the end. pip's temporary files go to /var/tmp (on
disk), not /tmp (a RAM tmpfs on Debian 13). `<env>/provision-pytorch.json`
records what was asked, so a changed request reinstalls and an unchanged one does nothing.
The check reads the environment without importing torch (its distributions' metadata and
files): a no-op costs no second of `import torch`.
Restarts nothing; never reboots.
The room: the layout and the create/install commands in pytorch_install.py; the verify checks
in pytorch_verify.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from provision import compat, groupshare, shell, stack
from provision.changes import Change, Run, Upload
from provision.errors import ProvisionError
from provision.facts import pyenv
from provision.facts.pyenv import env_read
from provision.facts.reads import Read
from provision.resources import package_downloads, packages
from provision.settings import absolute_path, each, setting, url
from provision.step import Context, Download, Step
from provision.steps.pytorch_install import (  # noqa: F401 (BUILD_CHECK: re-exported)
    BUILD_CHECK,
    ENVS,
    MARKER,
    Layout,
    create_command,
    index_url,
    install_command,
    name_of,
    pinned,
    share_command,
    wheel_downloads,
)
from provision.steps.pytorch_verify import (  # noqa: F401 (NO_GPU, cuda_of_index: re-exported)
    NO_GPU,
    cuda_of_index,
    verify_cuda_available,
    verify_cuda_tag,
    verify_gpu_matmul,
    verify_import,
)

PACKAGES = ("torch", "torchvision", "torchaudio")
CONDA_PYTHON = "3.12"
REQUIREMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-\[\],]*([<>=!~]=?[A-Za-z0-9.*+!,<>=~]+)?")


def env_name(value: str) -> None:
    """A plain directory name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
        raise ValueError(f"{value!r} is not an environment name (letters, digits, _ . -)")


def python_version(value: str) -> None:
    """X.Y (empty: the default)."""
    if value and not re.fullmatch(r"3\.\d{1,2}", value):
        raise ValueError(f"{value!r} is not a Python X.Y (e.g. 3.12)")


def index_tag(value: str) -> None:
    """cpu or cuXYZ (empty: compat's)."""
    if value and not re.fullmatch(r"cpu|cu\d{3}", value):
        raise ValueError(f"{value!r} is not a wheel index tag (cpu, cu126, cu128, cu130...)")


def torch_version(value: str) -> None:
    """A release such as 2.13.0 (empty: the newest allowed)."""
    if value and not re.fullmatch(r"\d+\.\d+(\.\d+)?([ab]\d+|rc\d+|\.post\d+)?", value):
        raise ValueError(f"{value!r} is not a torch version (e.g. 2.13.0)")


def requirement(value: str) -> None:
    """A pip requirement without shell or option syntax."""
    if not REQUIREMENT_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a pip requirement (name or name==version)")


@dataclass(frozen=True)
class Settings:
    """Settings of the pytorch step (inventory keys `pytorch.<field>`)."""

    enabled: bool = setting(True, "create an environment with PyTorch")
    env: str = setting("dl", "environment name (conda env, or /opt/provision/envs/NAME)", env_name)
    python: str = setting(
        "", "Python X.Y (empty: 3.12 in conda, the system python3 in a venv)", python_version
    )
    index: str = setting(
        "", "wheel index tag: cpu, cu126, cu128, cu130... (empty: compat's)", index_tag
    )
    version: str = setting("", "torch version (empty: the newest the card supports)", torch_version)
    packages: tuple[str, ...] = setting(
        PACKAGES, "the PyTorch packages to install", each(requirement)
    )
    extra_packages: tuple[str, ...] = setting(
        (), "more pip packages (jupyterlab, ...)", each(requirement)
    )
    index_url: str = setting(
        "",
        "pip index (empty: https://download.pytorch.org/whl/<tag>); a pinned version is asked "
        "for with the tag's label (torch==V+<tag>), which PyPI never serves",
        url,
    )
    extra_index_url: str = setting("", "a second pip index (e.g. a PyPI mirror)", url)
    find_links: str = setting("", "a find-links page or folder of wheels", url)
    ca_bundle: str = setting("", "CA bundle on the host for the pip index", absolute_path)


def layout(ctx: Context, s: Settings) -> Layout:
    """A conda env when the conda step is enabled, else a venv."""
    link = f"{ENVS}/{s.env}"
    c = ctx.of("conda")
    if c.enabled:
        prefix = c.prefix.rstrip("/")
        return Layout(f"{prefix}/envs/{s.env}", link, prefix, c.group, c.channels)
    return Layout(link, link, "", "", ())


def choice(ctx: Context) -> compat.Choice:
    """The host's GPU-stack decision (provision.stack)."""
    return stack.decision(ctx)


def preflight(ctx: Context) -> None:
    """Refuse an impossible driver/CUDA/wheel combination before any step installs anything."""
    if ctx.settings(Settings).enabled:
        choice(ctx)  # raises compat.Incompatible with the reason and a combination that works


def torch_requirement(s: Settings, chosen: compat.Choice) -> str:
    """torch==V when pinned, else capped below the release after compat's torch_max."""
    version = s.version or chosen.torch_version
    if version:
        return f"torch=={version}"
    if chosen.torch_max:
        major, minor = chosen.torch_max.split(".")[:2]
        return f"torch<{major}.{int(minor) + 1}"
    return "torch"


def requirements(s: Settings, chosen: compat.Choice) -> list[str]:
    """The PyTorch packages as pip requirements (torch with its version rule)."""
    return [torch_requirement(s, chosen) if p == "torch" else p for p in s.packages]


def link_read(env: Layout) -> Read:
    """The read of what /opt/provision/envs/<env> is (its kind, and a link's target)."""
    return Read(
        f"{shell.cmd('stat', '-c', '%F', '--', env.link)}; {shell.cmd('readlink', '--', env.link)}"
    )


SYSTEM_PYTHON = Read("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")


def probe_env(ctx: Context, python: str, names: list[str]) -> dict | None:
    """What the environment holds (None when there is no working python in it)."""
    return pyenv.parse_env(ctx.read(env_read(python, names).command))


def system_python(ctx: Context) -> str:
    """The system python3's X.Y."""
    out = ctx.read(SYSTEM_PYTHON.command)
    if not out.ok:
        raise ProvisionError(f"{ctx.host}: python3 does not run", out.stderr.strip()[-300:])
    return out.stdout.strip()


def check(ctx: Context) -> list[Change]:
    """What pytorch would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    chosen = choice(ctx)
    tag = chosen.torch_index
    env = layout(ctx, s)
    changes: list[Change] = []
    if env.conda_prefix:
        python = s.python or CONDA_PYTHON
    else:
        python = system_python(ctx)
        if s.python and s.python != python:
            raise ProvisionError(
                f"{ctx.host}: pytorch.python = {s.python}, but a venv uses the system python3, "
                f"which is {python}",
                f"leave pytorch.python empty (or set it to {python}), or enable the conda step "
                "for another Python",
            )
        changes += packages(ctx, ["python3-venv"])
    link = ctx.read(link_read(env).command)
    link_kind, _, target = link.stdout.partition("\n")
    link_kind, target = link_kind.strip(), target.strip()
    reqs = requirements(s, chosen)
    names = [name_of(r) for r in [*reqs, *s.extra_packages]]
    state = probe_env(ctx, env.python, names)
    if not env.conda_prefix and link_kind == "symbolic link":
        state = None  # the link leads to a conda env: a venv is wanted here now
    create = state is None or state.get("python") != python
    if create:
        kind = "conda env" if env.conda_prefix else "venv"
        verb = "create" if state is None else f"recreate (has Python {state.get('python')})"
        changes.append(
            Change(
                f"{verb} {kind} {env.path} with Python {python}",
                (Run(create_command(s, env, python, link_kind), timeout_s=1800,
                     description=f"create {kind} {env.path}"),),
            )
        )  # fmt: skip
    if env.conda_prefix and target != env.path:
        replace = link_kind == "directory"
        changes.append(
            Change(
                ("replace the venv at " if replace else "link ") + f"{env.link} → {env.path}",
                (
                    Run(
                        shell.and_(
                            shell.cmd("mkdir", "-p", "--", ENVS),
                            shell.cmd("rm", "-rf", "--", env.link),
                            shell.cmd("ln", "-s", "--", env.path, env.link),
                        )
                    ),
                ),
            )
        )
    request = {"index": tag, "requirements": reqs, "extra_packages": list(s.extra_packages)}
    marker = (state or {}).get("marker") or {}
    have = {k: marker.get(k) for k in request}
    versions = (state or {}).get("versions") or {}
    missing = [n for n in names if not versions.get(n)]
    broken = (state or {}).get("error", "")
    build = (state or {}).get("build")
    wrong_build = bool(versions.get("torch")) and build is not None and build != tag
    if create or have != request or missing or broken or wrong_build:
        if create:
            reason = "new environment"
        elif wrong_build:
            reason = f"torch {versions['torch']} is the {build} build, the {tag} index is chosen"
        elif broken:
            reason = f"torch is incomplete: {broken[:80]}"
        elif missing:
            reason = f"missing {', '.join(missing)}"
        elif marker:
            reason = "the request changed: " + ", ".join(
                f"{k} {have[k]} → {request[k]}" for k in request if have[k] != request[k]
            )
        else:
            reason = f"no {MARKER} yet"
        torch_there = bool(versions.get("torch")) and not create
        pip_reqs = pinned(reqs, tag, ctx.facts.arch)  # the marker keeps the request as asked
        actions = (
            Run(
                install_command(
                    s,
                    env,
                    tag,
                    pip_reqs,
                    uninstall_first=torch_there and (marker.get("index") != tag or wrong_build),
                ),
                timeout_s=3600,
                description=f"pip install {' '.join(pip_reqs)} ({tag})",
            ),
            Upload(
                f"{env.path}/{MARKER}",
                (json.dumps(request, indent=1, sort_keys=True) + "\n").encode(),
                mode="0664" if env.group else "0644",
                group=env.group or "root",
            ),
        )
        what = " ".join([*reqs, *s.extra_packages])
        changes.append(
            Change(f"install {what} from {index_url(s, tag)} into {env.path} ({reason})", actions)
        )
    elif env.conda_prefix:
        share = groupshare.unshared_read(env.path, env.group)
        stray = ctx.read(share.command, sudo=share.sudo).stdout.strip()
        if stray:
            changes.append(
                Change(
                    f"share {env.path} with group {env.group} ({stray} is not)",
                    (Run(share_command(env), timeout_s=900),),
                )
            )
    return changes


def reads(ctx: Context) -> list[Read]:
    """Everything check reads: the system python (venv), the way in, the environment."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    env = layout(ctx, s)
    found = [] if env.conda_prefix else [SYSTEM_PYTHON]
    found.append(link_read(env))
    chosen = stack.try_decision(ctx)
    if chosen is None:
        return found  # compat refuses: preflight and check say why
    reqs = requirements(s, chosen)
    found.append(env_read(env.python, [name_of(r) for r in [*reqs, *s.extra_packages]]))
    if env.conda_prefix:
        found.append(groupshare.unshared_read(env.path, env.group))
    return found


def downloads(ctx: Context) -> list[Download]:
    """python3-venv and the wheels when check installs them, for the background fetcher."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    env = layout(ctx, s)
    found = [] if env.conda_prefix else package_downloads(ctx, ["python3-venv"])
    try:  # whether check's changes run pip install: exactly its own decision
        runs = [a for c in check(ctx) for a in c.actions if isinstance(a, Run)]
    except ProvisionError:
        return found  # check says why when the step runs
    if any(a.description.startswith("pip install") for a in runs):
        chosen = choice(ctx)
        python = (s.python or CONDA_PYTHON) if env.conda_prefix else ""
        reqs = pinned(requirements(s, chosen), chosen.torch_index, ctx.facts.arch)
        found += wheel_downloads(s, env, chosen.torch_index, reqs, python)
    return found


STEP = Step(
    name="pytorch",
    summary="PyTorch environment (conda env or venv) from the wheel index compat chose",
    settings=Settings,
    check=check,
    verify=(verify_import, verify_cuda_tag, verify_cuda_available, verify_gpu_matmul),
    preflight=preflight,
    reads=reads,
    downloads=downloads,
)
