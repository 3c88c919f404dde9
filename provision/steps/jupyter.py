"""jupyter: JupyterLab for one person (`jupyter.mode = lab`) on 127.0.0.1, token made on the box;
JupyterHub for a shared box (`jupyter.mode = hub`: provision/steps/jupyter_hub.py).

Manages: a venv with a pinned JupyterLab (`/opt/provision/jupyter`), the notebook directory, the
token `/var/lib/provision/jupyter/token` (0600, the user's; read only by the service through
JUPYTER_TOKEN_FILE and by `provision jupyter-url`), ipykernel in the pytorch step's environment
and its kernelspec under `/usr/local/share/jupyter/kernels` (with a manifest verify checks the
server against), and `/etc/systemd/system/provision-jupyter.service`, enabled at boot.
Restarts the unit when it, the install or the token changes; never reboots. One mode runs at a
time: the other mode's service is stopped and disabled. `jupyter.bind_all` (needs TLS) is
refused: not built yet. Verify checks: jupyter_verify.py (lab), jupyter_hub_verify.py (hub).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from provision import resources, shell
from provision.changes import Change, Restart, Run
from provision.errors import ProvisionError
from provision.facts.reads import Read
from provision.resources import packages, service, template_file
from provision.settings import absolute_path, each, setting, unix_name, url
from provision.step import Context, Download, Step
from provision.steps import jupyter_hub
from provision.steps.jupyter_hub import HUB_UNIT
from provision.steps.jupyter_hub_verify import HUB_CHECKS
from provision.steps.jupyter_verify import (
    MANIFEST,
    TOKEN_DIR,
    TOKEN_FILE,
    UNIT,
    UNIT_FILE,
    verify_kernels,
    verify_local_only,
    verify_login,
    verify_running,
    verify_token_private,
)

VENV = "/opt/provision/jupyter"
# Outside the venv, which a new version recreates: a kernelspec in jupyter's system path
# (jupyter_core.paths: /usr/local/share/jupyter); the manifest is beside the token.
KERNELS = "/usr/local/share/jupyter/kernels"
ENVS = "/opt/provision/envs"  # the pytorch step's way in to its environment (a venv or a link)
DIR_MARK = "@@notebook_dir"
KERNELS_MARK = "@@kernels"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
PIP_INSTALL = f"{VENV}/bin/pip install"
# pip's temporary files on disk, not a RAM /tmp (as the pytorch step does).
PIP_TMPDIR = "TMPDIR=/var/tmp"
# The installed version, if the own venv has JupyterLab (exit 1 when it has not).
VERSION_READ = Read(f"{VENV}/bin/python -c 'import jupyterlab; print(jupyterlab.__version__)'")
# What the token file is (as root: the file is the user's alone): mode, owner, group, size.
TOKEN_READ = Read(shell.cmd("stat", "-c", "%a %U %G %s", "--", TOKEN_FILE), sudo=True)
# The kernels registered in that directory, one name a line.
KERNELS_READ = Read(f"ls -1 -- {KERNELS}")
# A 256-bit token from the box's own CSPRNG, written without a newline: JupyterLab reads
# JUPYTER_TOKEN_FILE as it is (jupyter_server's IdentityProvider: token_file.read()).
TOKEN_PROGRAM = "import secrets, sys; sys.stdout.write(secrets.token_hex(32))"
# The newest release on PyPI on 2026-12-01 (`pip index versions jupyterlab`); it and its
# jupyter_server 2.21 require Python >= 3.10: every supported release's python3 (3.10-3.13).
JUPYTERLAB_VERSION = "4.6.6"


def port_number(value: int) -> None:
    if not 1024 <= value <= 65533:
        raise ValueError(
            f"{value} is not an unprivileged TCP port with two free above it (1024-65533: "
            "hub mode also uses the next two, for the proxy's API and the hub)"
        )


def pip_version(value: str) -> None:
    if value and not re.fullmatch(r"[0-9][0-9A-Za-z.]*", value):
        raise ValueError(f"{value!r} is not a version (e.g. 4.6.6)")


def pinned(key: str, what: str, example: str):
    """A version that must be set (pinned): empty is refused naming the key."""

    def check(value: str) -> None:
        if not value:
            raise ValueError(f"{key} is empty: pin a {what} release (e.g. {example})")
        pip_version(value)

    return check


lab_version = pinned("jupyter.version", "JupyterLab", JUPYTERLAB_VERSION)


def mode_name(value: str) -> None:
    """lab (one user's JupyterLab) or hub (JupyterHub for the box's accounts)."""
    if value not in ("lab", "hub"):
        raise ValueError(
            f"{value!r} is not a jupyter mode (lab: JupyterLab for one user; hub: JupyterHub "
            "for the box's accounts)"
        )


def memory_size(value: str) -> None:
    """Empty (no limit) or a size as JupyterHub's mem_limit takes it: 512M, 8G, 1T."""
    if value and not re.fullmatch(r"[1-9][0-9]*[KMGT]?", value):
        raise ValueError(f"{value!r} is not a memory size (e.g. 8G; K, M, G or T)")


def cpu_count(value: float) -> None:
    if value < 0:
        raise ValueError(f"{value} is not a CPU count (0 for no limit, e.g. 2 or 1.5)")


def no_bind_all(value: bool) -> None:
    """Listening beyond loopback needs TLS, which is not built yet."""
    if value:
        raise ValueError(
            "jupyter.bind_all = true is not built yet: a notebook server on the network needs "
            "TLS (a certificate); reach it through `provision tunnel` instead"
        )


def notebook_path(value: str) -> None:
    absolute_path(value)
    if value and (value != value.strip() or "%" in value):
        raise ValueError(f"{value!r} has surrounding whitespace or a % (systemd reads both)")


@dataclass(frozen=True)
class Settings:
    """Settings of the jupyter step (inventory keys `jupyter.<field>`)."""

    enabled: bool = setting(False, "run JupyterLab as a service")
    mode: str = setting(
        "lab", "lab: JupyterLab for one user; hub: JupyterHub, PAM logins", mode_name
    )
    user: str = setting(
        "", "the account it runs as (empty: the login user)", lambda v: v and unix_name(v)
    )
    notebook_dir: str = setting(
        "", "the notebook directory (empty: ~USER/notebooks)", notebook_path
    )
    port: int = setting(8888, "the TCP port on 127.0.0.1", port_number)
    bind_all: bool = setting(
        False, "listen on every address (not built yet: needs TLS)", no_bind_all
    )
    version: str = setting(JUPYTERLAB_VERSION, "JupyterLab version (pinned)", lab_version)
    pytorch_kernel: bool = setting(
        True, "register the pytorch step's environment as a kernel (when that step is on)"
    )
    ipykernel_version: str = setting(
        "", "ipykernel for the PyTorch kernel (empty: newest, kept once there)", pip_version
    )
    pip_index_url: str = setting("", "pip index mirror (empty: PyPI)", url)
    hub_version: str = setting(
        jupyter_hub.JUPYTERHUB_VERSION, "hub: JupyterHub version (pinned)",
        pinned("jupyter.hub_version", "JupyterHub", jupyter_hub.JUPYTERHUB_VERSION),
    )  # fmt: skip
    spawner_version: str = setting(
        jupyter_hub.SPAWNER_VERSION, "hub: jupyterhub-systemdspawner version (pinned)",
        pinned("jupyter.spawner_version", "jupyterhub-systemdspawner", jupyter_hub.SPAWNER_VERSION),
    )  # fmt: skip
    allowed_users: tuple[str, ...] = setting(
        (), "hub: accounts that may log in (empty: users.accounts and the login user)",
        each(unix_name),
    )  # fmt: skip
    admin_users: tuple[str, ...] = setting(
        (), "hub: JupyterHub admins (empty: the login user)", each(unix_name)
    )
    hub_mem_limit: str = setting("", "hub: memory per user server (e.g. 8G; empty: none)",
                                 memory_size)  # fmt: skip
    hub_cpu_limit: float = setting(0.0, "hub: CPUs per user server (e.g. 2; 0: none)", cpu_count)


@dataclass(frozen=True)
class Kernel:
    """A Python environment registered as a kernel."""

    name: str  # the kernelspec's directory name (provision-<env>)
    python: str  # the environment's python
    display_name: str
    shared_group: str  # the conda group the environment is shared with ("" for a venv)

    @property
    def spec(self) -> str:
        return f"{KERNELS}/{self.name}/kernel.json"


def kernels(ctx: Context, s: Settings) -> list[Kernel]:
    """The kernels provision registers: the pytorch step's environment when it is on."""
    torch = ctx.of("pytorch")
    if not (s.pytorch_kernel and torch.enabled):
        return []
    conda = ctx.of("conda")
    group = conda.group if conda.enabled else ""
    return [Kernel(f"provision-{torch.env}", f"{ENVS}/{torch.env}/bin/python",
                   f"PyTorch ({torch.env})", group)]  # fmt: skip


def ipykernel_read(kernel: Kernel) -> Read:
    """The ipykernel version in the kernel's environment (exit 1 when it has none)."""
    program = 'import importlib.metadata as m; print(m.version("ipykernel"))'
    return Read(f"{shell.cmd(kernel.python, '-c', program)} 2>/dev/null")


def account_read(ctx: Context, s: Settings) -> Read:
    """One read: the passwd line and primary group of the account it runs as, then (after
    DIR_MARK) the owner and group of the notebook directory (by default in that account's
    home, which the host finds itself), then (after KERNELS_MARK) the registered kernels."""
    name = shell.cmd(s.user or ctx.facts.user)
    home = f'"$(getent passwd {name} | cut -d: -f6)/notebooks"'
    where = shell.cmd(s.notebook_dir) if s.notebook_dir else home
    return Read(
        f"getent passwd {name} && id -gn {name}; echo {DIR_MARK}; stat -c '%U %G' -- {where}; "
        f"echo {KERNELS_MARK}; {KERNELS_READ.command}"
    )


def account(ctx: Context, s: Settings) -> tuple[str, str, str, list[str], list[str]]:
    """(user, group, home) it runs as, the notebook directory's owner and group, and the
    kernel directories registered in the venv."""
    name = s.user or ctx.facts.user
    out = ctx.read(account_read(ctx, s).command).stdout.splitlines()
    # Each mark is the last line of its kind: a passwd line has no line break to fake one.
    kmark = max((i for i, line in enumerate(out) if line == KERNELS_MARK), default=len(out))
    dmark = max((i for i, line in enumerate(out[:kmark]) if line == DIR_MARK), default=kmark)
    lines = [x for x in out[:dmark] if x.strip()]
    owner = " ".join(out[dmark + 1 : kmark]).split()
    registered = [x.strip() for x in out[kmark + 1 :] if x.strip()]
    fields = lines[0].split(":") if lines else []
    if len(fields) < 7:
        raise ProvisionError(
            f"{ctx.host}: no user {name!r} for JupyterLab",
            "create it with the users step, or set jupyter.user",
        )
    group = (lines[1].strip() if len(lines) > 1 else "") or name
    return name, group, fields[5], owner, registered


def pip_options(s: Settings) -> list[str]:
    """The pip installs' sources (the background fetcher's pip download uses the same)."""
    return ["--cert", SYSTEM_CA, *(["--index-url", s.pip_index_url] if s.pip_index_url else [])]


def requirements(s: Settings) -> list[str]:
    """What the own venv gets (after pip itself)."""
    return [f"jupyterlab=={s.version}"]


def install_command(s: Settings) -> str:
    """A fresh venv with the pinned JupyterLab (and its own python3 kernel, ipykernel)."""
    pip = [*PIP_INSTALL.split(), "-q", *pip_options(s)]
    return shell.and_(
        shell.cmd("mkdir", "-p", "--", "/opt/provision"),
        shell.cmd("python3", "-m", "venv", "--clear", VENV),
        f"{PIP_TMPDIR} {shell.cmd(*pip, '--upgrade', 'pip')}",
        f"{PIP_TMPDIR} {shell.cmd(*pip, *requirements(s))}",
    )


def ipykernel_command(s: Settings, kernel: Kernel) -> str:
    """ipykernel into the kernel's environment; a conda env stays group-writable (umask)."""
    req = f"ipykernel=={s.ipykernel_version}" if s.ipykernel_version else "ipykernel"
    pip = [kernel.python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    install = f"{PIP_TMPDIR} {shell.cmd(*pip, *pip_options(s), req)}"
    there = shell.cmd("echo", f"no {kernel.python}: run the pytorch step first (provision pytorch)")
    guard = f"{{ {shell.cmd('test', '-x', kernel.python)} || {{ {there} >&2; false; }}; }}"
    return shell.and_(guard, *(["umask 0002"] if kernel.shared_group else []), install)


def token_command(user: str, group: str) -> str:
    """Generate the token on the box into a 0600 file of the user's. Never replaces a token
    that is there (a stale plan must not log the user out); nothing of it is printed."""
    new = f"{TOKEN_FILE}.new"
    keep = shell.cmd("echo", f"{TOKEN_FILE} exists: provision never replaces the token")
    return shell.and_(
        shell.cmd("install", "-d", "-m", "0755", "--", TOKEN_DIR),
        f"{{ {shell.cmd('test', '!', '-s', TOKEN_FILE)} || {{ {keep} >&2; false; }}; }}",
        f"( umask 077 && {shell.cmd('python3', '-c', TOKEN_PROGRAM)} > {shell.cmd(new)} )",
        shell.cmd("chown", f"{user}:{group}", "--", new),
        shell.cmd("chmod", "0600", "--", new),
        shell.cmd("mv", "-f", "--", new, TOKEN_FILE),
    )


def token_changes(ctx: Context, user: str, group: str) -> list[Change]:
    """The token file exists, is not empty, is the user's and 0600."""
    answer = ctx.read(TOKEN_READ.command, sudo=True)
    fields = answer.stdout.split() if answer.ok else []
    if len(fields) < 4 or fields[3] == "0":
        return [
            Change(
                f"generate a JupyterLab token on the box into {TOKEN_FILE}",
                (Run(token_command(user, group), description="generate the token"),
                 Restart(UNIT)),
            )
        ]  # fmt: skip
    if fields[:3] != ["600", user, group]:
        fix = shell.and_(
            shell.cmd("chown", f"{user}:{group}", "--", TOKEN_FILE),
            shell.cmd("chmod", "0600", "--", TOKEN_FILE),
        )
        return [
            Change(
                f"make {TOKEN_FILE} {user}'s alone (0600; it is {' '.join(fields[:3])})",
                (Run(fix), Restart(UNIT)),
            )
        ]
    return []


def installs(ctx: Context, s: Settings) -> str:
    """Why check installs JupyterLab into the own venv ('' when it is the pinned version)."""
    have = ctx.read(VERSION_READ.command)
    version = have.stdout.strip() if have.ok else ""
    if not version:
        return "new"
    return f"has {version}" if version != s.version else ""


def kernel_changes(ctx: Context, s: Settings, registered: list[str]) -> list[Change]:
    """ipykernel in each kernel's environment, its kernel.json, the stale ones removed, and
    the manifest of what is registered (verify checks the server against it)."""
    changes: list[Change] = []
    wanted = kernels(ctx, s)
    for kernel in wanted:
        have = ctx.read(ipykernel_read(kernel).command)
        version = have.stdout.strip() if have.ok else ""
        if not version or (s.ipykernel_version and version != s.ipykernel_version):
            what = (
                f"ipykernel {s.ipykernel_version}".strip() if s.ipykernel_version else "ipykernel"
            )
            changes.append(
                Change(
                    f"install {what} into {kernel.python.removesuffix('/bin/python')} "
                    f"(the {kernel.display_name} kernel)",
                    (Run(ipykernel_command(s, kernel), timeout_s=1800,
                         description="pip install ipykernel"),),
                )
            )  # fmt: skip
        variables = {"python": kernel.python, "display_name": kernel.display_name}
        changes += template_file(ctx, "jupyter/kernel.json.j2", kernel.spec, variables)
    names = {k.name for k in wanted}
    for stale in sorted(x for x in registered if x.startswith("provision-") and x not in names):
        gone = shell.cmd("rm", "-rf", "--", f"{KERNELS}/{stale}")
        changes.append(Change(f"remove the kernel {stale} (no longer wanted)", (Run(gone),)))
    manifest = {"kernels": sorted(names), "version": s.version}
    content = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    changes += resources.file_content(ctx, MANIFEST, content)
    return changes


def reads(ctx: Context) -> list[Read]:
    """What check reads, from the settings and facts alone."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    wanted = [account_read(ctx, s)]
    for kernel in kernels(ctx, s):
        wanted += [ipykernel_read(kernel), resources.file_read(ctx, kernel.spec)]
    wanted.append(resources.file_read(ctx, MANIFEST))
    if s.mode == "hub":
        return [*wanted, *jupyter_hub.reads(ctx, s), resources.service_read(UNIT)]
    wanted += [VERSION_READ, TOKEN_READ, resources.file_read(ctx, UNIT_FILE)]
    return [*wanted, resources.service_read(UNIT), resources.service_read(HUB_UNIT)]


def check(ctx: Context) -> list[Change]:
    """What jupyter would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    user, group, home, owner, registered = account(ctx, s)
    if s.mode == "hub":
        # The lab's service off first: the hub may take its port.
        changes = service(ctx, UNIT, enabled=False, running=False)
        changes += jupyter_hub.changes(ctx, s, pip_options(s), PIP_TMPDIR)
        return changes + kernel_changes(ctx, s, registered)
    notebook_dir = s.notebook_dir or f"{home}/notebooks"
    changes: list[Change] = service(ctx, HUB_UNIT, enabled=False, running=False)
    changes += packages(ctx, ["python3-venv"])
    why = installs(ctx, s)
    if why:
        reason = "" if why == "new" else f" (the venv {why})"
        changes.append(
            Change(
                f"install JupyterLab {s.version} into {VENV}{reason}",
                (Run(install_command(s), timeout_s=1800, description="pip install jupyterlab"),
                 Restart(UNIT)),
            )
        )  # fmt: skip
    if owner != [user, group]:
        mkdir = shell.cmd(
            "install", "-d", "-o", user, "-g", group, "-m", "0755", "--", notebook_dir
        )
        changes.append(Change(f"create {notebook_dir} for {user}", (Run(mkdir),)))
    changes += token_changes(ctx, user, group)
    changes += kernel_changes(ctx, s, registered)
    variables = {
        "user": user,
        "group": group,
        "notebook_dir": notebook_dir,
        "port": s.port,
        "token_file": TOKEN_FILE,
        "jupyter": f"{VENV}/bin/jupyter",
    }
    changes += template_file(
        ctx, "jupyter/provision-jupyter.service.j2", UNIT_FILE, variables, restart=UNIT
    )
    changes += service(ctx, UNIT)
    return changes


def downloads(ctx: Context) -> list[Download]:
    """python3-venv when check installs it, and JupyterLab's wheels when it installs them."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    if s.mode == "hub":
        found = resources.package_downloads(ctx, jupyter_hub.HUB_PACKAGES)
        if jupyter_hub.installs(ctx, s):
            names = ("pip", *jupyter_hub.requirements(s))
            dest = f"{jupyter_hub.HUB_VENV}/bin/pip install"
            found.append(Download("wheels", names, dest=dest, options=tuple(pip_options(s))))
        return found
    found = resources.package_downloads(ctx, ["python3-venv"])
    if installs(ctx, s):
        names = ("pip", *requirements(s))
        found.append(Download("wheels", names, dest=PIP_INSTALL, options=tuple(pip_options(s))))
    return found


LAB_CHECKS = (verify_running, verify_local_only, verify_login, verify_kernels, verify_token_private)

STEP = Step(
    name="jupyter",
    summary="JupyterLab (one user, a token) or JupyterHub (PAM, per-user limits) on 127.0.0.1, "
    "the PyTorch env as a kernel",
    settings=Settings,
    check=check,
    verify=(*LAB_CHECKS, *HUB_CHECKS),
    reads=reads,
    downloads=downloads,
    services=(("jupyter", "port"),),
)


def url_command() -> str:
    """The command `provision jupyter-url` runs (as root): the token, nothing else."""
    return shell.cmd("cat", "--", TOKEN_FILE)


def lab_url(port: int, token: str) -> str:
    """The URL a browser on the laptop opens (through `provision tunnel` on `port`)."""
    return f"http://127.0.0.1:{port}/lab?token={token}"
