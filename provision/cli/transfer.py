"""`push` and `pull`: rsync over the inventory's SSH settings (provision.sync builds the argv)."""

from __future__ import annotations

import sys

import click

from provision.cli.app import cli
from provision.cli.options import host_options
from provision.errors import ConfigError
from provision.output import error_text


def _sync_options(delete: bool, dry_run: bool, excludes: tuple[str, ...]):
    """The SyncOptions of the flags (progress only on a terminal)."""
    from provision.sync import SyncOptions

    return SyncOptions(
        delete=delete, dry_run=dry_run, progress=sys.stdout.isatty(), excludes=excludes
    )


def sync_options(func):
    """--delete, --dry-run and --exclude for push and pull."""
    options = [
        click.option(
            "--delete",
            is_flag=True,
            help="delete files in the destination that are not in the source",
        ),
        click.option("--dry-run", "-n", is_flag=True, help="list what would change; copy nothing"),
        click.option(
            "--exclude",
            "excludes",
            multiple=True,
            metavar="PATTERN",
            help="rsync exclude pattern (repeatable)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_rsync(target, hc, argv) -> bool:
    """Run one rsync; False (after saying why) when it failed."""
    import shlex

    from provision.sync import SyncError, run

    if target.verbose:
        click.echo("$ " + shlex.join(argv), err=True)
    try:
        run(hc.name, hc.connection, argv)
    except SyncError as exc:
        click.echo(error_text(exc), err=True)
        return False
    return True


@cli.command()
@host_options
@sync_options
@click.argument("paths", nargs=-1, required=True, metavar="LOCAL... REMOTE_DIR")
def push(
    target,
    delete,
    dry_run,
    excludes,
    paths,
) -> None:
    """Copy local files or directories to the hosts with rsync (resumable, over the
    inventory's SSH settings). As with rsync, `./data` lands in REMOTE_DIR/data and `./data/`
    copies its contents.

    \b
    provision push --host mybox ./data /data/project
    provision push --host mybox --delete --dry-run ./code/ /home/me/code
    """
    from provision import localtools, sync

    if len(paths) < 2:
        raise ConfigError("push needs LOCAL... REMOTE_DIR", where="push")
    *sources, dest = paths
    configs = target.configs()
    options = _sync_options(delete, dry_run, excludes)
    for hc in configs:
        sync.push_argv(hc.connection, sources, dest, options)  # bad input: exit 2 here
    localtools.require("rsync", "ssh", purpose="push")
    options = sync.with_local_rsync(options)
    commands = [(hc, sync.push_argv(hc.connection, sources, dest, options)) for hc in configs]
    failed = []
    for hc, argv in commands:
        click.echo(f"{hc.name}: {', '.join(sources)} -> {dest}", err=True)
        if not _run_rsync(target, hc, argv):
            failed.append(hc.name)
    if failed:
        sys.exit(1)


@cli.command()
@host_options
@sync_options
@click.argument("paths", nargs=-1, required=True, metavar="REMOTE... LOCAL_DIR")
def pull(
    target,
    delete,
    dry_run,
    excludes,
    paths,
) -> None:
    """Copy files or directories from one host to here with rsync (resumable, over the
    inventory's SSH settings).

    \b
    provision pull --host mybox /data/project/results ./results
    """
    from provision import localtools, sync

    if len(paths) < 2:
        raise ConfigError("pull needs REMOTE... LOCAL_DIR", where="pull")
    *sources, dest = paths
    configs = target.configs()
    if len(configs) != 1:
        names = ", ".join(c.name for c in configs)
        raise ConfigError(f"pull takes one host, not {len(configs)} ({names})", where="--host")
    hc = configs[0]
    options = _sync_options(delete, dry_run, excludes)
    sync.pull_argv(hc.connection, sources, dest, options)  # bad input: exit 2 here
    localtools.require("rsync", "ssh", purpose="pull")
    argv = sync.pull_argv(hc.connection, sources, dest, sync.with_local_rsync(options))
    click.echo(f"{hc.name}: {', '.join(sources)} -> {dest}", err=True)
    if not _run_rsync(target, hc, argv):
        sys.exit(1)
