"""The click group every command registers on, and the console-script entry point."""

from __future__ import annotations

import sys

import click

from provision import __version__
from provision.errors import ProvisionError
from provision.output import error_text


class ProvisionGroup(click.Group):
    """Turns ProvisionError into a message, a hint and an exit code (tracebacks only with
    --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ProvisionError as exc:
            if ctx.meta.get("debug"):
                raise
            click.echo(error_text(exc), err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=ProvisionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provision")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Turn a fresh Debian 12/13 or Ubuntu 22.04/24.04/26.04 machine into a deep-learning server.

    \b
      provision all --host mybox                # every step, in order; idempotent
      provision base --host mybox               # one step again
      provision all --host mybox --plan --diff  # what would change
      provision verify --host mybox             # testinfra checks (--junitxml for CI)
    """
    ctx.meta["debug"] = debug
    if not debug:
        # paramiko logs its own failures (a port that is not SSH: "Error reading SSH protocol
        # banner" and a traceback) through logging's last-resort handler; our ConnectError says
        # it in one line instead.
        import logging

        paramiko_log = logging.getLogger("paramiko")
        if not paramiko_log.handlers:
            paramiko_log.addHandler(logging.NullHandler())
        paramiko_log.propagate = False


def main() -> None:
    """Console-script entry point; SIGINT/SIGTERM handled by provision.interrupt."""
    from provision import interrupt

    interrupt.install()
    try:
        cli(prog_name="provision")
    except SystemExit as exc:
        # Click turns the interrupt into exit 1 ("Aborted!"); the shell wants 128 + signal.
        if interrupt.exit_code() and exc.code not in (0, None):
            sys.exit(interrupt.exit_code())
        raise
