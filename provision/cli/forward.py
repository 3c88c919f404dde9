"""`tunnel` and `ssh-config`: reach the services the steps run on a box (each step declares
them in Step.services) from this machine, over SSH."""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.app import cli
from provision.cli.options import host_options
from provision.errors import ConfigError
from provision.steps import STEPS


def declared(steps=None) -> list[tuple]:
    """(step, service name, the setting holding its port) for every service a step declares
    (Step.services); `steps` defaults to every step."""
    return [
        (step, name, key)
        for step in (STEPS if steps is None else steps)
        for name, key in step.services
    ]


SERVICE_NAMES = ", ".join(name for _step, name, _key in declared()) or "no service"
PORT_SETTINGS = ", ".join(f"{step.key}.{key}" for step, _name, key in declared()) or "none"


def service_ports(
    settings_by_key: dict, *, enabled_only: bool, steps=None
) -> list[tuple[str, int]]:
    """(service name, port on the box) of the declared services, from one host's settings;
    with enabled_only, only those of steps that are not switched off (`<step>.enabled`)."""
    out = []
    for step, name, key in declared(steps):
        settings = settings_by_key[step.key]
        if enabled_only and not getattr(settings, "enabled", True):
            continue
        out.append((name, getattr(settings, key)))
    return out


@cli.command(
    name="ssh-config",
    help="Print (or --write) `Host` entries so plain ssh/scp/rsync reach the hosts (no "
    "connection).\n\n"
    "`Host NAME` has no port forwards; `Host NAME-tunnel` carries the LocalForwards of the "
    f"enabled services ({SERVICE_NAMES}) (`ssh -N NAME-tunnel`), so a second plain ssh never "
    "fails on an already bound port.",
)
@host_options
@click.option("--write", is_flag=True, help="add/update the entries in the ssh config file")
@click.option(
    "--config-file",
    type=click.Path(path_type=Path),
    default=Path("~/.ssh/config"),
    show_default=True,
    help="the ssh config file for --write",
)
def ssh_config(
    target,
    write,
    config_file,
) -> None:
    """Host entries for ssh (help: the command's help= above, which names the services)."""
    from provision import sshconfig

    configs = target.configs()
    blocks = {}
    for hc in configs:
        ports = service_ports(hc.settings, enabled_only=True)
        blocks[hc.name] = sshconfig.entry(hc, [(port, port) for _name, port in ports])
    if not write:
        click.echo("\n".join(blocks.values()), nl=False)
        return
    path = config_file.expanduser()
    changed = sshconfig.write(path, blocks)
    click.echo(f"{'updated' if changed else 'unchanged'}: {path} ({', '.join(blocks)})")


@cli.command(
    help="Forward services or ports on the box to 127.0.0.1 here, until Ctrl-C.\n\n"
    "\b\n"
    "  provision tunnel --host mybox                # every enabled service\n"
    "  provision tunnel --host mybox SERVICE|PORT ...\n\n"
    f"SERVICE is a service a step declares ({SERVICE_NAMES}): its port from the host's "
    "settings, even when its step is off (a note says so). PORT (1-65535) is that port on "
    "the box, at the same port here. With none (and no --port): every service of the "
    "enabled steps, or all of them when every such step is off."
)
@host_options
@click.argument("wanted", nargs=-1, metavar="[SERVICE|PORT]...")
@click.option(
    "--port",
    "remote_port",
    type=click.IntRange(1, 65535),
    default=None,
    help=f"the port on the box, like one PORT [default: {PORT_SETTINGS}]",
)
@click.option(
    "--local-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="the port here [default: the same]",
)
def tunnel(
    target,
    wanted,
    remote_port,
    local_port,
) -> None:
    """Forward the services (help: the command's help= above, which names them)."""
    import contextlib
    import time

    from provision.remote import connect

    wanted = parse_wanted(wanted)  # a misspelt name fails here, before any host is looked up
    configs = target.configs()
    if len(configs) != 1:
        raise ConfigError("tunnel takes one host", where="--host")
    hc = configs[0]
    if hc.connection.local:
        raise ConfigError(
            f"{hc.name} is local (ansible_connection=local): no tunnel needed", where="--host"
        )
    forwards = tunnel_forwards(
        hc.name,
        hc.settings,
        remote_port,
        local_port,
        wanted=wanted,
        note=lambda line: click.echo(line, err=True),
    )
    for local, _remote in forwards:
        _refuse_a_taken_port(hc.name, local)
    remote = connect(hc.connection)
    try:
        with contextlib.ExitStack() as stack:
            for local, there in forwards:
                stack.enter_context(
                    remote.forward_local(local, there, on_failure=refused(hc.name, there))
                )
                click.echo(
                    f"{hc.name}: 127.0.0.1:{there} is at http://127.0.0.1:{local}/ "
                    "(Ctrl-C closes it)",
                    err=True,
                )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        remote.close()


def refused(host: str, there: int):
    """The tunnel's note for a connection the box refused (the service is not up yet, or
    stopped): one line on stderr; the tunnel stays open for the next try."""
    from provision.output import printable

    def note(reason: str) -> None:
        click.echo(
            f"{host}: a connection to 127.0.0.1:{there} on the box failed "
            f"({printable(reason)}): is the service running? (`provision status --host {host}`)",
            err=True,
        )

    return note


def parse_wanted(values, steps=None) -> tuple[str | int, ...]:
    """The SERVICE|PORT arguments of `tunnel`: a declared service's name (kept as the name) or
    a port number 1-65535 (as an int); anything else is a ConfigError naming the value."""
    import difflib

    names = [name for _step, name, _key in declared(steps)]
    out: list[str | int] = []
    for value in values:
        if isinstance(value, int) or (value.isascii() and value.isdigit()):
            if 1 <= int(value) <= 65535:
                out.append(int(value))
                continue
            problem = f"{value} is not a port number (1-65535)"
        elif value in names:
            out.append(value)
            continue
        else:
            problem = f"{value!r} is neither a service nor a port number (1-65535)"
        close = difflib.get_close_matches(str(value), names, n=1)
        raise ConfigError(
            f"{problem}; the services: {', '.join(names) or 'none'}",
            (f"did you mean {close[0]}? " if close else "")
            + "give a service's name or a port number 1-65535",
            where="SERVICE|PORT argument",
        )
    return tuple(out)


def tunnel_forwards(
    host: str,
    settings_by_key: dict,
    remote_port: int | None,
    local_port: int | None,
    steps=None,
    *,
    wanted=(),
    note=None,
) -> list[tuple[int, int]]:
    """(port here, port on the box) for each forward `tunnel` opens: --port and the
    SERVICE|PORT arguments (`wanted`), in that order, once each; with neither, every declared
    service of the host's enabled steps. `note` gets a line for a named service whose step is
    off (forwarded anyway: the user may run it by hand)."""
    if remote_port or wanted:
        by_name = {}
        for step, name, key in declared(steps):
            by_name.setdefault(name, (step, key))
        picked = ((remote_port,) if remote_port else ()) + parse_wanted(wanted, steps)
        ports = []
        for item in dict.fromkeys(picked):
            if isinstance(item, int):
                ports.append((str(item), item))
                continue
            step, key = by_name[item]
            settings = settings_by_key[step.key]
            port = getattr(settings, key)
            if not getattr(settings, "enabled", True) and note:
                note(
                    f"{host}: the {step.name} step is off ({step.key}.enabled=false): "
                    f"forwarding {item}'s port {port} anyway, for one you run by hand"
                )
            ports.append((item, port))
        once: dict[int, tuple[str, int]] = {}  # a port named twice (as a service and a number)
        for label, port in ports:
            once.setdefault(port, (label, port))
        ports = list(once.values())
    else:
        # The enabled services; when every step that declares one is off, still their ports
        # (a service the user runs by hand), as `tunnel` always did for TensorBoard's port.
        ports = service_ports(settings_by_key, enabled_only=True, steps=steps) or service_ports(
            settings_by_key, enabled_only=False, steps=steps
        )
    if not ports:
        raise ConfigError(f"{host}: no service to forward", "give a PORT or --port", where="--port")
    if local_port and len(ports) > 1:
        names = ", ".join(name for name, _port in ports)
        raise ConfigError(
            f"--local-port is for one forward, not {len(ports)} ({names})",
            "name one SERVICE or PORT (or --port) to pick the port on the box",
            where="--local-port",
        )
    return list(dict.fromkeys((local_port or port, port) for _name, port in ports))


def _refuse_a_taken_port(host: str, local_port: int) -> None:
    """ConfigError when local_port is taken here: the browser would reach the other program."""
    from provision import localport

    busy = localport.bind_error(local_port)
    if busy:
        raise ConfigError(
            f"{host}: cannot open the tunnel: {busy}",
            "stop that program, or pick a free port here with --local-port"
            + (
                f" (e.g. --local-port {free})"
                if (free := localport.free_port_near(local_port))
                else ""
            ),
            where="--local-port",
        )
