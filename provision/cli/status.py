"""`status` (what the hosts are doing now, in parallel, read-only) and `wake` (wake-on-LAN from
this machine)."""

from __future__ import annotations

import json
import sys

import click

from provision.cli.app import cli
from provision.cli.options import host_options
from provision.errors import ConfigError


@cli.command()
@host_options
@click.option("--mac", help="MAC address [default: the host's provision_mac]")
@click.option(
    "--broadcast",
    default="255.255.255.255",
    show_default=True,
    help="broadcast address of the box's network",
)
@click.option("--port", type=click.IntRange(1, 65535), default=9, show_default=True)
def wake(
    target,
    mac,
    broadcast,
    port,
) -> None:
    """Send a wake-on-LAN magic packet to the hosts (from this machine, no SSH)."""
    from provision import wol

    configs = target.configs()
    for hc in configs:
        address = mac or hc.mac
        if not address:
            raise ConfigError(
                f"no MAC address for {hc.name}",
                "pass --mac or set provision_mac=aa:bb:cc:dd:ee:ff in the inventory",
                where="--mac",
            )
        try:
            packet = wol.magic_packet(address)
        except ValueError as exc:
            raise ConfigError(str(exc), where="--mac") from None
        wol.send(address, broadcast, port)
        click.echo(
            f"{hc.name}: magic packet for {address} sent to {broadcast}:{port} "
            f"({len(packet)} bytes)"
        )


@cli.command(name="status")
@host_options
@click.option(
    "--watch",
    type=click.FloatRange(min=0.5),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="refresh in place every SECONDS (default 2) until Ctrl-C",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--parallel",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="hosts at a time",
)
def status_command(
    target,
    watch,
    as_json,
    parallel,
) -> None:
    """GPUs (use, memory, temperature, power, processes and their users), load, uptime, disk
    free, pending reboots, the notebook services (JupyterLab, JupyterHub and its running user
    servers) and the Slurm cluster the hosts are in (nodes, jobs), gathered in parallel
    (read-only).

    \b
    provision status --host mybox --host lab
    provision status --host gpus --watch 5
    provision status --host mybox --json
    """
    import time

    from provision.status import Poller, render

    configs = target.configs()
    poller = Poller(configs, parallel=parallel)
    in_place = watch is not None and not as_json and sys.stdout.isatty()
    try:
        while True:
            statuses = poller.refresh()
            if as_json:
                data = {s.host: s.to_json() for s in statuses}
                click.echo(json.dumps(data, indent=None if watch else 2))
            elif in_place:
                stamp = time.strftime("%H:%M:%S")
                head = f"provision status  every {watch:g}s  {stamp}  (Ctrl-C quits)\n\n"
                text = head + render(statuses)
                # Home, each line cleared to its end, then the rest of the screen: no flicker.
                click.echo("\x1b[H" + text.replace("\n", "\x1b[K\n") + "\x1b[J", nl=False)
            else:
                click.echo(render(statuses), nl=False)
            if watch is None:
                break
            time.sleep(watch)
            if not in_place and not as_json:
                click.echo("")
    except KeyboardInterrupt:
        return
    finally:
        poller.close()
    if any(s.error for s in statuses):
        sys.exit(1)
