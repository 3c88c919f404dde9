"""`provision all`, `provision <step>` (plan or apply) and `provision list`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from provision.cli.app import cli
from provision.cli.options import PRECEDENCE, Target, host_options
from provision.errors import ConfigError
from provision.output import Reporter, error_text, summary_table
from provision.steps import STEPS


def make_run_command(name: str, steps: tuple, help_text: str):
    """`provision all` or `provision <step>`: plan or apply."""

    @cli.command(name=name, help=help_text + "\n\n" + PRECEDENCE)
    @host_options
    @click.option("--plan", is_flag=True, help="only show what would change")
    @click.option("--diff", is_flag=True, help="with --plan (or -v): show file diffs")
    @click.option(
        "--detailed-exitcode",
        is_flag=True,
        help="with --plan: exit 3 when anything would change (drift checks)",
    )
    @click.option(
        "--allow-reboot/--no-reboot",
        default=None,
        help="reboot when a step needs it [default: yes, or provision_allow_reboot]",
    )
    @click.option(
        "--update-inventory",
        is_flag=True,
        help="when a host's address or SSH port changed, write it into the inventory",
    )
    @click.option(
        "--parallel",
        type=click.IntRange(1, 256),
        default=8,
        show_default=True,
        help="hosts at a time",
    )
    @click.option(
        "--no-prefetch",
        is_flag=True,
        help="download each step's packages and installers when it runs, not in the background "
        "ahead of it (for a tight disk, or to measure; also PROVISION_NO_PREFETCH=1)",
    )
    def command(
        target,
        plan,
        diff,
        detailed_exitcode,
        allow_reboot,
        update_inventory,
        parallel,
        no_prefetch,
    ):
        from provision.runner import run_hosts

        if no_prefetch:  # read by provision.prefetch in every host's thread
            os.environ["PROVISION_NO_PREFETCH"] = "1"

        if detailed_exitcode and not plan:
            raise ConfigError(
                "--detailed-exitcode needs --plan",
                "add --plan (exit 3 then means: changes pending)",
                where="--detailed-exitcode",
            )
        configs = target.configs(allow_reboot)
        width = max(12, *(len(c.name) for c in configs))
        reporter = Reporter(diff=diff, verbose=target.verbose, width=width)
        results = run_hosts(
            configs, steps, plan=plan, reporter=reporter, parallel=parallel, log_dir=target.log_dir
        )
        click.echo("")
        click.echo(summary_table(results))
        for r in results:
            if r.error:
                click.echo(f"\n{r.host}: " + error_text(r.error), err=True)
                click.echo(f"transcript: {r.log_path}", err=True)
            if r.moved_to:
                report_move(target, r.host, *r.moved_to, update_inventory)
        if any(r.failed for r in results):
            sys.exit(1)
        if detailed_exitcode and any(r.pending for r in results):
            sys.exit(3)

    return command


def report_move(target: Target, host: str, addr: str, port: int, update: bool) -> None:
    """A host now answers at another address or port: update the inventory or say how."""
    from provision.inventory import load, set_host_vars

    path = target.inventory or Path("inventory.ini")
    values = {"ansible_host": addr, "ansible_port": str(port)}
    line = " ".join(f"{k}={v}" for k, v in values.items())
    if update and path.exists() and host in load(path).hosts:
        where = set_host_vars(path, host, values)
        click.echo(f"{host}: now at {addr}:{port}; updated {where} ({line})", err=True)
    else:
        click.echo(
            f"{host}: now at {addr}:{port}; set {line} for {host} in the inventory "
            "(or rerun with --update-inventory)",
            err=True,
        )


make_run_command("all", STEPS, "Run every step, in order (idempotent).")
for _step in STEPS:
    make_run_command(_step.name, (_step,), f"Run the {_step.name} step: {_step.summary}.")


@cli.command(name="list")
def list_steps() -> None:
    """List the steps in the order `provision all` runs them."""
    width = max(len(s.name) for s in STEPS)
    for step in STEPS:
        click.echo(f"{step.name:<{width}}  {step.summary}")
