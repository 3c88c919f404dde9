"""tensorboard: TensorBoard as a service, local-only unless the user opts in.

Manages: a Python venv with TensorBoard (`/opt/provision/tensorboard`, unless
`tensorboard.python` names an environment that has it), the log directory (owned by the
user), and `/etc/systemd/system/provision-tensorboard.service` (bound to 127.0.0.1; `--bind_all`
only with `tensorboard.bind_all = true`), enabled at boot and restarted on failure.
With bind_all and ssh.ufw on, its port is opened in ufw. `provision tunnel` forwards it to the
laptop. Restarts the unit when it changes; never reboots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import resources, shell
from provision.changes import Change, Restart, Run
from provision.errors import ProvisionError, Skip
from provision.facts.reads import Read
from provision.firewall import UFW_STATUS, ufw_allows
from provision.resources import packages, service, template_file
from provision.settings import absolute_path, setting, unix_name, url
from provision.step import Context, Download, Step
from provision.unitstate import enabled_state, not_enabled_message

VENV = "/opt/provision/tensorboard"
UNIT = "provision-tensorboard.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
LOGDIR_MARK = "@@logdir"
# The installed version, if the own venv has TensorBoard (exit 1 when it has not).
VERSION_READ = Read(f"{VENV}/bin/python -c 'import tensorboard; print(tensorboard.__version__)'")
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
PIP_INSTALL = f"{VENV}/bin/pip install"


def port_number(value: int) -> None:
    if not 1024 <= value < 65536:
        raise ValueError(f"{value} is not an unprivileged TCP port (1024-65535)")


def pip_version(value: str) -> None:
    if value and not re.fullmatch(r"[0-9][0-9A-Za-z.]*", value):
        raise ValueError(f"{value!r} is not a version (e.g. 2.18.0)")


@dataclass(frozen=True)
class Settings:
    """Settings of the tensorboard step (inventory keys `tensorboard.<field>`)."""

    enabled: bool = setting(True, "run TensorBoard as a service")
    user: str = setting(
        "", "the account it runs as (empty: the login user)", lambda v: v and unix_name(v)
    )
    logdir: str = setting("", "the log directory (empty: ~USER/runs)", absolute_path)
    port: int = setting(6006, "the TCP port", port_number)
    bind_all: bool = setting(False, "listen on every address (default: 127.0.0.1 only)")
    python: str = setting(
        "", "python of an environment that has tensorboard (empty: own venv)", absolute_path
    )
    version: str = setting("", "TensorBoard version for the own venv (empty: newest)", pip_version)
    pip_index_url: str = setting("", "pip index mirror (empty: PyPI)", url)


def account_read(ctx: Context, s: Settings) -> Read:
    """One read: the passwd line and primary group of the account it runs as, then (after
    LOGDIR_MARK) the owner and group of the log directory, which by default is in that
    account's home: the host finds the home itself, so nothing waits on another read."""
    name = shell.cmd(s.user or ctx.facts.user)
    logdir = shell.cmd(s.logdir) if s.logdir else f'"$(getent passwd {name} | cut -d: -f6)/runs"'
    return Read(
        f"getent passwd {name} && id -gn {name}; echo {LOGDIR_MARK}; stat -c '%U %G' -- {logdir}"
    )


def account(ctx: Context, s: Settings) -> tuple[str, str, str, list[str]]:
    """(user, group, home) the service runs as, and the log directory's owner and group."""
    name = s.user or ctx.facts.user
    out = ctx.read(account_read(ctx, s).command).stdout.splitlines()
    # The mark is the last line of its kind: a passwd line has no line break to fake one.
    mark = max((i for i, line in enumerate(out) if line == LOGDIR_MARK), default=len(out))
    lines, owner = [x for x in out[:mark] if x.strip()], " ".join(out[mark + 1 :])
    fields = lines[0].split(":") if lines else []
    if len(fields) < 7:
        raise ProvisionError(
            f"{ctx.host}: no user {name!r} for TensorBoard",
            "create it with the users step, or set tensorboard.user",
        )
    group = (lines[1].strip() if len(lines) > 1 else "") or name
    return name, group, fields[5], owner.split()


def pip_options(s: Settings) -> list[str]:
    """The pip install's sources (the background fetcher's pip download uses the same)."""
    return ["--cert", SYSTEM_CA, *(["--index-url", s.pip_index_url] if s.pip_index_url else [])]


def requirements(s: Settings) -> list[str]:
    """What the own venv gets (after pip itself)."""
    # setuptools: TensorBoard still imports pkg_resources; 3.12 venvs no longer ship it.
    return [f"tensorboard=={s.version}" if s.version else "tensorboard", "setuptools"]


def install_command(s: Settings) -> str:
    # With the background fetcher's wheels, it adds them as --find-links after PIP_INSTALL.
    pip = [*PIP_INSTALL.split(), "-q", *pip_options(s)]
    return shell.and_(
        shell.cmd("mkdir", "-p", "--", "/opt/provision"),
        shell.cmd("python3", "-m", "venv", "--clear", VENV),
        shell.cmd(*pip, "--upgrade", "pip"),
        shell.cmd(*pip, *requirements(s)),
    )


def installs(ctx: Context, s: Settings) -> bool:
    """Whether check installs TensorBoard into the own venv (its version differs or is none)."""
    have = ctx.read(VERSION_READ.command)
    version = have.stdout.strip() if have.ok else ""
    return not version or bool(s.version and version != s.version)


def reads(ctx: Context) -> list[Read]:
    """What check reads, from the settings and facts alone."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    wanted = [account_read(ctx, s)]
    if not s.python:
        wanted.append(VERSION_READ)
    wanted += [resources.file_read(ctx, UNIT_FILE), resources.service_read(UNIT)]
    if s.bind_all and ctx.of("ssh").ufw:
        wanted.append(UFW_STATUS)
    return wanted


def check(ctx: Context) -> list[Change]:
    """What tensorboard would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    user, group, home, owner = account(ctx, s)
    logdir = s.logdir or f"{home}/runs"
    changes: list[Change] = []
    if s.python:
        tensorboard = f"{s.python} -m tensorboard.main"
    else:
        tensorboard = f"{VENV}/bin/tensorboard"
        changes += packages(ctx, ["python3-venv"])
        if installs(ctx, s):
            what = f"TensorBoard {s.version}" if s.version else "TensorBoard"
            changes.append(
                Change(
                    f"install {what} into {VENV}",
                    (
                        Run(
                            install_command(s),
                            timeout_s=1800,
                            description="pip install tensorboard",
                        ),
                        Restart(UNIT),
                    ),
                )
            )
    if owner != [user, group]:
        mkdir = shell.cmd("install", "-d", "-o", user, "-g", group, "-m", "0755", "--", logdir)
        changes.append(Change(f"create {logdir} for {user}", (Run(mkdir),)))
    variables = {
        "user": user,
        "group": group,
        "logdir": logdir,
        "port": s.port,
        "bind_all": s.bind_all,
        "tensorboard": tensorboard,
    }
    changes += template_file(
        ctx,
        "tensorboard/provision-tensorboard.service.j2",
        UNIT_FILE,
        variables,
        restart=UNIT,
    )
    changes += service(ctx, UNIT)
    if s.bind_all and ctx.of("ssh").ufw:
        status = ctx.read(UFW_STATUS.command, sudo=True).stdout
        rule = f"{s.port}/tcp"
        if not ufw_allows(status, rule):
            changes.append(
                Change(
                    f"allow TensorBoard ({rule}) in ufw (tensorboard.bind_all)",
                    (Run(shell.cmd("ufw", "allow", rule)),),
                )
            )
    return changes


def verify_running(host, s: Settings) -> None:
    """the TensorBoard service is enabled and running"""
    if not s.enabled:
        raise Skip("tensorboard.enabled is off")
    enabled, state = enabled_state(host, UNIT)
    assert enabled, not_enabled_message(UNIT, state)
    svc = host.service(UNIT)
    assert svc.is_running, f"{UNIT} is not running"


def verify_http(host, s: Settings) -> None:
    """TensorBoard answers HTTP on 127.0.0.1"""
    if not s.enabled:
        raise Skip("tensorboard.enabled is off")
    probe = (
        "import time, urllib.request\n"
        "for _ in range(60):\n"
        "    try:\n"
        f"        print(urllib.request.urlopen('http://127.0.0.1:{s.port}/', timeout=5).status)\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(1)\n"
    )
    out = host.run(f"python3 -c {shell.cmd(probe)}")
    assert out.stdout.strip() == "200", f"no HTTP answer on 127.0.0.1:{s.port}: {out.stderr[-300:]}"


def verify_local_only(host, s: Settings) -> None:
    """TensorBoard listens on loopback only (unless bind_all)"""
    if not s.enabled or s.bind_all:
        raise Skip("tensorboard.bind_all is on" if s.enabled else "tensorboard.enabled is off")
    lines = host.check_output(f"ss -Htln 'sport = :{s.port}'").splitlines()
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in lines if len(line.split()) > 3}
    assert addresses, f"nothing listens on port {s.port}"
    assert addresses <= {"127.0.0.1", "[::1]"}, f"listens on {sorted(addresses)}"


def downloads(ctx: Context) -> list[Download]:
    """python3-venv when check installs it, and the wheels of the install (pip and TensorBoard
    with its dependencies, for the system python3 the venv has), for the background fetcher."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled or s.python:
        return []
    found = resources.package_downloads(ctx, ["python3-venv"])
    if installs(ctx, s):
        names = ("pip", *requirements(s))
        found.append(Download("wheels", names, dest=PIP_INSTALL, options=tuple(pip_options(s))))
    return found


STEP = Step(
    name="tensorboard",
    summary="TensorBoard service on 127.0.0.1 (own venv or an existing environment)",
    settings=Settings,
    check=check,
    verify=(verify_running, verify_http, verify_local_only),
    reads=reads,
    downloads=downloads,
    services=(("tensorboard", "port"),),
)
