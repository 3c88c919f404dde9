"""jupyter's hub mode (`jupyter.mode = hub`): JupyterHub for a shared box, the pattern The
Littlest JupyterHub made common: the box's own accounts log in with their passwords (PAM), each
gets a single-user JupyterLab started by systemd (jupyterhub-systemdspawner) as a transient unit
with the memory and CPU limits set here, and the pytorch step's environment is a kernel for all.

Manages: a venv `/opt/provision/jupyterhub` with pinned JupyterHub, the spawner and JupyterLab
(the single-user servers run from it), the distribution's configurable-http-proxy
(`node-configurable-http-proxy`), `/etc/provision/jupyterhub/jupyterhub_config.py` (no secret
in it), the hub's state `/var/lib/provision/jupyterhub` (0700: its database and the cookie
secret JupyterHub generates there on first start, 0600), and `provision-jupyterhub.service`
(root: PAM for other accounts and systemd-run need it), enabled at boot; the lab mode's service
stopped and disabled. Restarts the hub when its unit, config or install changes: running user
servers are separate units and keep running.

Everything listens on 127.0.0.1: the proxy on `jupyter.port`, its API on the next port, the
hub itself on the one after; reach it through `provision tunnel`.

What the spawner isolates (jupyterhub-systemdspawner 1.0.2, its systemdspawner.py): memory
(MemoryMax) and CPU (CPUQuota) per user, a private /tmp, no privilege gain (no sudo). It does
not give a user some GPUs and not others: every GPU is visible to every server (its
`isolate_devices` would hide them all); the GPUs are shared, as on the command line.
"""

from __future__ import annotations

from provision import shell
from provision.changes import Change, Restart, Run
from provision.facts.reads import Read
from provision.resources import packages, service, template_file
from provision.step import Context

HUB_VENV = "/opt/provision/jupyterhub"
HUB_UNIT = "provision-jupyterhub.service"
HUB_UNIT_FILE = f"/etc/systemd/system/{HUB_UNIT}"
HUB_CONFIG_DIR = "/etc/provision/jupyterhub"
HUB_CONFIG = f"{HUB_CONFIG_DIR}/jupyterhub_config.py"
HUB_STATE = "/var/lib/provision/jupyterhub"
COOKIE_SECRET = f"{HUB_STATE}/jupyterhub_cookie_secret"
PROXY = "/usr/bin/configurable-http-proxy"  # node-configurable-http-proxy (Debian, Ubuntu)
HUB_PACKAGES = ["python3-venv", "node-configurable-http-proxy"]
# The newest releases on PyPI on 2026-12-01 (`pip index versions jupyterhub`,
# `... jupyterhub-systemdspawner`); JupyterHub 6.1 requires Python >= 3.10 (its metadata).
JUPYTERHUB_VERSION = "6.1.1"
SPAWNER_VERSION = "1.0.2"
# The versions in the hub's venv, one `name version` a line (exit 1 without the venv).
VERSIONS_PROGRAM = (
    "import importlib.metadata as m\n"
    "for n in ('jupyterhub', 'jupyterhub-systemdspawner', 'jupyterlab'):\n"
    "    try:\n        print(n, m.version(n))\n"
    "    except m.PackageNotFoundError:\n        print(n, '-')\n"
)
VERSIONS_READ = Read(f"{shell.cmd(f'{HUB_VENV}/bin/python', '-c', VERSIONS_PROGRAM)} 2>/dev/null")
STATE_READ = Read(shell.cmd("stat", "-c", "%a %U %G", "--", HUB_STATE), sudo=True)


def ports(port: int) -> tuple[int, int, int]:
    """(the proxy, the proxy's API, the hub): three ports from jupyter.port up."""
    return port, port + 1, port + 2


def requirements(s) -> list[str]:
    return [
        f"jupyterhub=={s.hub_version}",
        f"jupyterhub-systemdspawner=={s.spawner_version}",
        f"jupyterlab=={s.version}",
    ]


def users(ctx: Context, s) -> tuple[list[str], list[str]]:
    """(who may log in, the admins): jupyter.allowed_users, else the users step's accounts and
    the login user; jupyter.admin_users, else the login user. root never (PAM would take its
    password over the network)."""
    login = ctx.facts.user
    accounts = list(ctx.of("users").accounts)
    allowed = list(s.allowed_users) or [*accounts, login]
    admins = list(s.admin_users) or [login]
    allowed = [u for u in dict.fromkeys([*allowed, *admins]) if u != "root"]
    return allowed, [u for u in dict.fromkeys(admins) if u != "root"]


def python_set(names: list[str]) -> str:
    """A set literal for the config, sorted (a set's own order changes from run to run)."""
    return "{" + ", ".join(repr(n) for n in sorted(names)) + "}" if names else "set()"


def installs(ctx: Context, s) -> str:
    """Why check (re)installs the hub's venv ('' when it holds the pinned versions)."""
    have = ctx.read(VERSIONS_READ.command)
    found = dict(line.split(" ", 1) for line in have.stdout.splitlines() if " " in line)
    if not have.ok or not found:
        return "new"
    want = dict(r.split("==") for r in requirements(s))
    off = [f"{n} {found.get(n, '-')}" for n, v in want.items() if found.get(n) != v]
    return ("has " + ", ".join(off)) if off else ""


def install_command(s, pip_options: list[str], pip_tmpdir: str) -> str:
    """A fresh venv with the pinned hub, spawner and JupyterLab."""
    pip = [f"{HUB_VENV}/bin/pip", "install", "-q", *pip_options]
    return shell.and_(
        shell.cmd("mkdir", "-p", "--", "/opt/provision"),
        shell.cmd("python3", "-m", "venv", "--clear", HUB_VENV),
        f"{pip_tmpdir} {shell.cmd(*pip, '--upgrade', 'pip')}",
        f"{pip_tmpdir} {shell.cmd(*pip, *requirements(s))}",
    )


def reads(ctx: Context, s) -> list[Read]:
    from provision import resources

    return [
        VERSIONS_READ,
        STATE_READ,
        resources.file_read(ctx, HUB_CONFIG),
        resources.file_read(ctx, HUB_UNIT_FILE),
        resources.service_read(HUB_UNIT),
    ]


def changes(ctx: Context, s, pip_options: list[str], pip_tmpdir: str) -> list[Change]:
    """What hub mode would change (the kernels and the lab service: provision.steps.jupyter)."""
    out: list[Change] = packages(ctx, HUB_PACKAGES)
    why = installs(ctx, s)
    if why:
        reason = "" if why == "new" else f" (the venv {why})"
        out.append(
            Change(
                f"install JupyterHub {s.hub_version}, jupyterhub-systemdspawner "
                f"{s.spawner_version} and JupyterLab {s.version} into {HUB_VENV}{reason}",
                (Run(install_command(s, pip_options, pip_tmpdir), timeout_s=1800,
                     description="pip install jupyterhub"), Restart(HUB_UNIT)),
            )
        )  # fmt: skip
    state = ctx.read(STATE_READ.command, sudo=True)
    if not state.ok or state.stdout.split() != ["700", "root", "root"]:
        make = shell.and_(
            shell.cmd("install", "-d", "-m", "0700", "-o", "root", "-g", "root", "--", HUB_STATE),
            shell.cmd("chmod", "0700", "--", HUB_STATE),
        )
        out.append(Change(f"create {HUB_STATE} (0700, root: the hub's database and secret)",
                          (Run(make),)))  # fmt: skip
    allowed, admins = users(ctx, s)
    proxy, api, hub = ports(s.port)
    variables = {
        "allowed": python_set(allowed),
        "admins": python_set(admins),
        "proxy_port": proxy,
        "api_port": api,
        "hub_port": hub,
        "state": HUB_STATE,
        "cookie_secret": COOKIE_SECRET,
        "proxy": PROXY,
        "singleuser": f"{HUB_VENV}/bin/jupyterhub-singleuser",
        "mem_limit": repr(s.hub_mem_limit) if s.hub_mem_limit else "None",
        "cpu_limit": repr(s.hub_cpu_limit) if s.hub_cpu_limit else "None",
    }
    out += template_file(ctx, "jupyter/jupyterhub_config.py.j2", HUB_CONFIG, variables,
                         restart=HUB_UNIT)  # fmt: skip
    unit = {"venv": HUB_VENV, "config": HUB_CONFIG, "state": HUB_STATE}
    out += template_file(ctx, "jupyter/provision-jupyterhub.service.j2", HUB_UNIT_FILE, unit,
                         restart=HUB_UNIT)  # fmt: skip
    out += service(ctx, HUB_UNIT)
    return out
