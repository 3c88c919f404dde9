"""pytorch: an environment with torch, torchvision and torchaudio from the index compat chose.

Manages: a conda env `CONDA_PREFIX/envs/<env>` (when the conda step is enabled; shared with
the conda group, group-writable) or a venv `/opt/provision/envs/<env>` with the system
python3; `/opt/provision/envs/<env>` is always the way in (a link to the conda env). The
packages come with pip from `https://download.pytorch.org/whl/<tag>` (the tag compat chose)
or the user's mirror / find-links, never `-c pytorch`, first without dependencies and without
the extra index (so no other index's build of torch can win), and the installed build (the
`+cpu`/`+cu126` tag) is checked against the chosen one. `<env>/provision-pytorch.json`
records what was asked, so a changed request reinstalls and an unchanged one does nothing.
Restarts nothing; never reboots.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from provision import compat, shell
from provision.changes import Change, Run, Upload
from provision.errors import ProvisionError, Skip
from provision.resources import packages
from provision.settings import absolute_path, each, setting, url
from provision.step import Context, Step
from provision.steps import conda, driver

PACKAGES = ("torch", "torchvision", "torchaudio")
ENVS = "/opt/provision/envs"
MARKER = "provision-pytorch.json"
PYTORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
CONDA_PYTHON = "3.12"
REQUIREMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-\[\],]*([<>=!~]=?[A-Za-z0-9.*+!,<>=~]+)?")
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
NO_GPU = "no NVIDIA GPU on this host (no PCI display device of vendor 10de)"

# The build of the installed torch, read without importing it: the local version tag of its
# metadata (2.13.0+cpu -> cpu, +cu126 -> cu126), else the CUDA version its torch/version.py
# was built with (wheels without a tag: PyPI's, aarch64 CPU ones). None when neither tells.
BUILD_FUNCTION = """\
import importlib.metadata as md, re
def torch_build():
    try:
        version = md.version("torch")
    except md.PackageNotFoundError:
        return None
    if "+" in version:
        return version.split("+", 1)[1]
    try:
        text = md.distribution("torch").locate_file("torch/version.py").read_text()
    except Exception:
        return None
    m = re.search(r"^cuda\\b[^=\\n]*=\\s*(?:['\\"]([0-9.]+)['\\"]|None)", text, re.M)
    if not m:
        return None
    return "cu" + m.group(1).replace(".", "") if m.group(1) else "cpu"
"""
# One probe of an environment: its Python, the versions of the packages (importlib.metadata),
# torch's build (BUILD_FUNCTION) and whether it imports, and the marker the last install wrote.
# Prints one JSON object.
PROBE = (
    BUILD_FUNCTION
    + """\
import json, os, sys
out = {"python": "%d.%d" % sys.version_info[:2], "versions": {}, "cuda": None, "error": ""}
for name in sys.argv[1:]:
    try:
        out["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        out["versions"][name] = None
out["build"] = torch_build()
if out["versions"].get("torch"):
    try:
        import torch
        out["cuda"] = torch.version.cuda
    except Exception as exc:
        out["error"] = repr(exc)[:300]
try:
    with open(os.path.join(sys.prefix, "provision-pytorch.json")) as marker:
        out["marker"] = json.load(marker)
except (OSError, ValueError):
    out["marker"] = None
print(json.dumps(out))
"""
)
# After an install: the torch now in the env must be the chosen index's build (argv[1]),
# whatever another index or find-links page offered.
BUILD_CHECK = (
    BUILD_FUNCTION
    + """\
import sys
have, want = torch_build(), sys.argv[1]
if have is not None and have != want:
    sys.exit("pip installed torch %s, the %s build, but the %s index was chosen: another index "
             "or find-links page served it (pytorch.extra_index_url / find_links)"
             % (md.version("torch"), have, want))
"""
)
GPU_CHECK = """\
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
x = torch.randn(512, 512, device="cuda")
y = (x @ x).sum().item()
torch.cuda.synchronize()
print(torch.cuda.get_device_name(0), y == y)
"""


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
    index_url: str = setting("", "pip index (empty: https://download.pytorch.org/whl/<tag>)", url)
    extra_index_url: str = setting("", "a second pip index (e.g. a PyPI mirror)", url)
    find_links: str = setting("", "a find-links page or folder of wheels", url)
    ca_bundle: str = setting("", "CA bundle on the host for the pip index", absolute_path)


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


def layout(ctx: Context, s: Settings) -> Layout:
    """A conda env when the conda step is enabled, else a venv."""
    link = f"{ENVS}/{s.env}"
    c: conda.Settings = ctx.settings(conda.Settings)
    if c.enabled:
        prefix = c.prefix.rstrip("/")
        return Layout(f"{prefix}/envs/{s.env}", link, prefix, c.group, c.channels)
    return Layout(link, link, "", "", ())


def choice(ctx: Context) -> compat.Choice:
    """compat's decision for this host and the user's explicit requests."""
    return driver.choice_for(ctx)


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


def cuda_of_index(tag: str) -> str | None:
    """torch.version.cuda that wheels from this index report: cpu → None, cu126 → 12.6."""
    if tag == "cpu":
        return None
    digits = tag[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def index_url(s: Settings, tag: str) -> str:
    """The pip index for the PyTorch packages."""
    return s.index_url or PYTORCH_INDEX.format(tag=tag)


def pip_options(s: Settings, index: str, *, extra: bool = True) -> list[str]:
    """Source options shared by the pip calls (index, mirrors, CA bundle); `extra=False`
    leaves out the extra index (the torch packages come from the chosen index only)."""
    options = ["--index-url", index] if index else []
    if s.extra_index_url and extra:
        options += ["--extra-index-url", s.extra_index_url]
    if s.find_links:
        options += ["--find-links", s.find_links]
    # The system bundle by default: pip's own (certifi) lacks the CAs base.ca_certificates adds.
    return [*options, "--cert", s.ca_bundle or SYSTEM_CA]


def install_command(
    s: Settings, env: Layout, tag: str, reqs: list[str], *, uninstall_first: bool
) -> str:
    """pip install of the PyTorch packages, then the extra packages (torch kept as it is)."""
    pip = [env.python, "-m", "pip"]
    quiet = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    steps = []
    if env.conda_prefix:
        steps.append("umask 0002")  # group-writable files in the shared env
    if uninstall_first:
        names = [re.split(r"[<>=!~\[]", r)[0] for r in s.packages]
        steps.append(shell.cmd(*pip, "uninstall", "-y", *quiet[:2], *names))
    index = index_url(s, tag)
    # The PyTorch packages from the chosen index (and find-links) only, without dependencies:
    # an extra index may serve another build of the same release (PyPI's CUDA torch for a cpu
    # request), and pip takes whichever sorts highest. Then the dependencies from every
    # source: the torch packages, satisfied, stay as installed (no --upgrade).
    no_deps = ["--no-deps", *pip_options(s, index, extra=False)]
    steps.append(shell.cmd(*pip, "install", *quiet, *no_deps, *reqs))
    steps.append(shell.cmd(*pip, "install", *quiet, *pip_options(s, index), *reqs))
    if s.extra_packages:
        # Extras come from the user's index (or pip's default, PyPI); the torch requirement is
        # repeated so that an extra cannot swap the build for another index's torch.
        extra = [r for r in reqs if r.startswith("torch")]
        options = pip_options(s, s.index_url)
        steps.append(shell.cmd(*pip, "install", *quiet, *options, *s.extra_packages, *extra))
    steps.append(shell.cmd(env.python, "-c", BUILD_CHECK, tag))  # fails loudly on another build
    if env.conda_prefix:
        steps.append(share_command(env))
    return shell.and_(*steps)


def share_command(env: Layout) -> str:
    """The env owned by the conda group, group-writable, directories setgid."""
    return conda.share_command(env.path, env.group)


def create_command(s: Settings, env: Layout, python: str, link_kind: str) -> str:
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


def probe_env(ctx: Context, python: str, names: list[str]) -> dict | None:
    """What the environment holds (None when there is no working python in it)."""
    out = ctx.probe(shell.cmd(python, "-c", PROBE, *names))
    if not out.ok:
        return None
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def system_python(ctx: Context) -> str:
    """The system python3's X.Y."""
    out = ctx.probe("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    if not out.ok:
        raise ProvisionError(f"{ctx.host}: python3 does not run", out.stderr.strip()[-300:])
    return out.stdout.strip()


def name_of(req: str) -> str:
    """The distribution name of a requirement ("torch<2.15" → "torch")."""
    return re.split(r"[<>=!~\[]", req)[0]


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
    link = ctx.probe(
        f"{shell.cmd('stat', '-c', '%F', '--', env.link)}; {shell.cmd('readlink', '--', env.link)}"
    )
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
            reason = f"torch does not import: {broken[:80]}"
        elif missing:
            reason = f"missing {', '.join(missing)}"
        elif marker:
            reason = "the request changed: " + ", ".join(
                f"{k} {have[k]} → {request[k]}" for k in request if have[k] != request[k]
            )
        else:
            reason = f"no {MARKER} yet"
        torch_there = bool(versions.get("torch")) and not create
        actions = (
            Run(
                install_command(
                    s,
                    env,
                    tag,
                    reqs,
                    uninstall_first=torch_there and (marker.get("index") != tag or wrong_build),
                ),
                timeout_s=3600,
                description=f"pip install {' '.join(reqs)} ({tag})",
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
        stray = ctx.probe(conda.unshared_probe(env.path, env.group), sudo=True).stdout.strip()
        if stray:
            changes.append(
                Change(
                    f"share {env.path} with group {env.group} ({stray} is not)",
                    (Run(share_command(env), timeout_s=900),),
                )
            )
    return changes


# --- verify ---------------------------------------------------------------------------------


def _python(s: Settings) -> str:
    if not s.enabled:
        raise Skip("pytorch.enabled is off")
    return f"{ENVS}/{s.env}/bin/python"


def _marker(host, s: Settings) -> dict:
    out = host.run(shell.cmd("cat", "--", f"{ENVS}/{s.env}/{MARKER}"))
    assert out.rc == 0, f"{ENVS}/{s.env}/{MARKER} is missing: the pytorch step has not run"
    return json.loads(out.stdout)


def _gpu(host) -> None:
    """Skip without a GPU; fail when nvidia-smi is there but cannot list the GPUs."""
    if not driver.has_gpu(host):
        raise Skip(NO_GPU)
    out = host.run("nvidia-smi -L")
    assert out.rc == 0 and "GPU" in out.stdout, (
        f"nvidia-smi -L failed (driver not loaded, or a reboot is needed): "
        f"{(out.stdout + out.stderr).strip()[-300:]}"
    )


def verify_import(host, s: Settings) -> None:
    """`import torch` works in the environment"""
    python = _python(s)
    out = host.run(shell.cmd(python, "-c", "import torch; print(torch.__version__)"))
    assert out.rc == 0, f"import torch failed: {out.stderr.strip()[-400:]}"


def verify_cuda_tag(host, s: Settings) -> None:
    """torch's CUDA build matches the planned wheel index"""
    python = _python(s)
    tag = _marker(host, s)["index"]
    out = host.run(shell.cmd(python, "-c", "import torch; print(torch.version.cuda)"))
    assert out.rc == 0, f"import torch failed: {out.stderr.strip()[-400:]}"
    want = cuda_of_index(tag)
    have = out.stdout.strip()
    assert have == str(want), f"torch.version.cuda is {have}, the {tag} index means {want}"


def _gpu_python(host, s: Settings) -> str:
    python = _python(s)
    _gpu(host)
    if _marker(host, s)["index"] == "cpu":
        raise Skip("the environment holds CPU-only wheels (pytorch index cpu)")
    return python


def verify_cuda_available(host, s: Settings) -> None:
    """torch.cuda.is_available() on the GPU host"""
    python = _gpu_python(host, s)
    out = host.run(shell.cmd(python, "-c", "import torch; print(torch.cuda.is_available())"))
    assert out.stdout.strip() == "True", (
        f"torch.cuda.is_available() is not True: {(out.stdout + out.stderr).strip()[-400:]}"
    )


def verify_gpu_matmul(host, s: Settings) -> None:
    """a small matmul runs on the GPU"""
    python = _gpu_python(host, s)
    out = host.run(shell.cmd(python, "-c", GPU_CHECK))
    assert out.rc == 0, f"GPU matmul failed: {(out.stdout + out.stderr).strip()[-400:]}"
    assert out.stdout.strip().endswith("True"), f"GPU matmul gave NaN: {out.stdout.strip()}"


STEP = Step(
    name="pytorch",
    summary="PyTorch environment (conda env or venv) from the wheel index compat chose",
    settings=Settings,
    check=check,
    verify=(verify_import, verify_cuda_tag, verify_cuda_available, verify_gpu_matmul),
    preflight=preflight,
)
