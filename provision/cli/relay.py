"""`provision expose-relay`: the relay side of expose.method = reverse-tunnel, run on each
box's relay host through the runner (provision.relay), so `--plan` shows it first."""

from __future__ import annotations

import click

from provision.cli.app import cli
from provision.cli.options import host_options
from provision.errors import ConfigError
from provision.output import Reporter, printable


@cli.command(name="expose-relay")
@host_options
@click.option("--plan", is_flag=True, help="only show what would change on the relay")
@click.option("--diff", is_flag=True, help="with --plan (or -v): show the authorized_keys diff")
def expose_relay(target, plan, diff) -> None:
    """Install each box's tunnel key on its relay (expose.method = reverse-tunnel), allowed
    to forward its one port and nothing else; the relay must be in the inventory too."""
    from provision import relay as relay_mod

    configs = target.configs()
    for hc in configs:
        s = hc.settings["expose"]
        relay = relay_mod.inventory_relay(hc.settings)
        if relay is None:
            raise ConfigError(
                f"{hc.name}: expose.relay {s.relay!r} is not a host in the inventory",
                "add the relay to the inventory, or put the line from "
                f"`provision verify --host {hc.name} expose` into its authorized_keys",
            )
    for hc in configs:
        relay = relay_mod.inventory_relay(hc.settings)
        width = max(12, len(relay.name))
        reporter = Reporter(diff=diff, verbose=target.verbose, width=width)
        changed, line = relay_mod.authorize_on_relay(
            hc, relay, plan=plan, reporter=reporter, log_dir=target.log_dir
        )
        if plan:
            done = "would install on" if changed else "already on"
        else:
            done = "installed on" if changed else "already on"
        click.echo(f"{hc.name}: {done} {relay.name}: {printable(line)}")  # the box's key text
