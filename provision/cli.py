"""The command line: parses flags and calls config, runner and verify. No logic of its own.

Exit codes: 0 every host fine, 1 a host failed, 2 usage or configuration error (nothing was
sent to any host), 3 `--plan --detailed-exitcode` found changes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from provision import __version__
from provision.errors import ConfigError, ProvisionError
from provision.output import Reporter, error_text, printable, summary_table
from provision.steps import STEPS, by_name

HOST_HELP = "host, group or user@address[:port] (repeatable)"
PRECEDENCE = (
    "Settings precedence, lowest to highest: step defaults < provision.toml < [all:vars] < "
    "[group:vars] < host line < --set step.field=value."
)


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
    """Turn a fresh Ubuntu 22.04/24.04 or Debian 12 machine into a deep-learning server.

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


def host_options(func):
    """--host, --inventory, --config, --set and the connection flags."""
    options = [
        click.option("--host", "-H", "hosts", multiple=True, required=True, help=HOST_HELP),
        click.option(
            "--inventory",
            "-i",
            type=click.Path(path_type=Path),
            default=None,
            help="inventory file [default: ./inventory.ini]",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path),
            default=None,
            help="settings file [default: ./provision.toml when present]",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="STEP.FIELD=VALUE",
            help="override a setting (repeatable). " + PRECEDENCE,
        ),
        click.option(
            "--accept-new-host-key",
            is_flag=True,
            help="trust a host key seen for the first time (like ssh accept-new)",
        ),
        click.option(
            "--ask-sudo-pass",
            is_flag=True,
            help="prompt for the sudo password (or set PROVISION_SUDO_PASSWORD)",
        ),
        click.option("-v", "--verbose", count=True, help="-v: show commands; -vv: and output"),
        click.option(
            "--log-dir",
            type=click.Path(path_type=Path),
            default=Path(".provision/logs"),
            show_default=True,
            help="where the per-host transcripts go",
        ),
    ]

    @functools.wraps(func)
    def wrapper(**kwargs):
        target = Target(**{name: kwargs.pop(name) for name in Target.__dataclass_fields__})
        return func(target, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@dataclass
class Target:
    """The hosts a command works on, and how: the values of the shared options."""

    hosts: tuple[str, ...]
    inventory: Path | None
    config_path: Path | None
    overrides: tuple[str, ...]
    accept_new_host_key: bool
    ask_sudo_pass: bool
    verbose: int
    log_dir: Path

    def configs(self, allow_reboot: bool | None = None):
        """Validated HostConfigs (no connection yet)."""
        return load_configs(
            self.hosts,
            self.inventory,
            self.config_path,
            self.overrides,
            self.accept_new_host_key,
            self.ask_sudo_pass,
            allow_reboot,
        )


def load_configs(
    hosts, inventory, config_path, overrides, accept_new_host_key, ask_sudo_pass, allow_reboot=None
):
    """Inventory + provision.toml + flags → validated HostConfigs (no connection yet)."""
    from provision import config
    from provision import inventory as inventory_mod

    if inventory is None:
        default = Path("inventory.ini")
        inv = inventory_mod.load(default) if default.exists() else inventory_mod.Inventory()
    else:
        inv = inventory_mod.load(inventory)
    toml = None
    if config_path is not None:
        toml = config.load_toml(config_path)
    elif Path("provision.toml").exists():
        toml = config.load_toml(Path("provision.toml"))
    password = os.environ.get("PROVISION_SUDO_PASSWORD") or None
    _let_expose_find_relays(inv, toml, overrides)
    configs = config.load_hosts(
        inv,
        list(hosts),
        toml=toml,
        overrides=list(overrides),
        accept_new_host_key=accept_new_host_key,
        allow_reboot=allow_reboot,
        sudo_password=password,
    )
    if ask_sudo_pass:
        password = click.prompt("sudo password", hide_input=True, err=True)
        configs = [_with_password(c, password) for c in configs]
    return configs


def _let_expose_find_relays(inv, toml, overrides) -> None:
    """expose.relay may name an inventory host: give the step a way to look it up."""
    from provision import config
    from provision.steps import expose

    def lookup(name: str):
        if name not in inv.hosts:
            return None
        return config.load_hosts(inv, [name], toml=toml, overrides=list(overrides))[0]

    expose.use_inventory(lookup)


def _with_password(hc, password: str):
    import dataclasses

    from provision.shell import Secret

    conn = dataclasses.replace(hc.connection, sudo_password=Secret(password))
    return dataclasses.replace(hc, connection=conn)


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
    def command(
        target,
        plan,
        diff,
        detailed_exitcode,
        allow_reboot,
        update_inventory,
        parallel,
    ):
        from provision.runner import run_hosts

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


@cli.command()
@host_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def facts(
    target,
    as_json,
) -> None:
    """Show what provision sees on the host (one round trip, read-only)."""
    from provision.remote import connect
    from provision.runner import gather_facts

    configs = target.configs()
    out = {}
    for hc in configs:
        remote = connect(hc.connection)
        try:
            out[hc.name] = gather_facts(remote).summary()
        finally:
            remote.close()
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for name, summary in out.items():
        click.echo(click.style(name, bold=True))
        for key, value in summary.items():
            click.echo(f"  {key:<20} {printable(str(value))}")  # the host's text


@cli.command(name="compat")
@click.option(
    "--gpu",
    "gpu_names",
    multiple=True,
    metavar="CARD",
    help='card name or PCI id, e.g. "GeForce GTX 1080 Ti" or 10de:1b06 (repeatable)',
)
@click.option("--os", "os_key", metavar="OS", help="ubuntu-22.04, ubuntu-24.04 or debian-12")
@click.option("--arch", default="", help="for an unknown card: architecture or compute capability")
@click.option("--branch", type=int, default=0, help="driver branch you want, e.g. 580")
@click.option("--source", type=click.Choice(["ubuntu", "nvidia", "debian"]), help="install path")
@click.option("--flavour", type=click.Choice(["open", "proprietary"]), help="kernel modules")
@click.option("--cuda", "cuda_version", default="", help="CUDA toolkit X.Y you want")
@click.option("--index", "torch_index", default="", help="PyTorch wheel index tag, e.g. cu126")
@click.option("--torch", "torch_version", default="", help="torch version you want")
@click.option("--host", "-H", "hosts", multiple=True, help="use this host's GPUs, OS and settings")
@click.option("--inventory", "-i", type=click.Path(path_type=Path), default=None)
@click.option("--set", "overrides", multiple=True, metavar="STEP.FIELD=VALUE")
@click.option("--accept-new-host-key", is_flag=True, help="trust a host key seen the first time")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def compat_command(
    gpu_names,
    os_key,
    arch,
    branch,
    source,
    flavour,
    cuda_version,
    torch_index,
    torch_version,
    hosts,
    inventory,
    overrides,
    accept_new_host_key,
    as_json,
) -> None:
    """Which driver, CUDA and PyTorch for this card on this OS, and why.

    \b
    provision compat --gpu "GeForce GTX 1080 Ti" --os ubuntu-24.04
    provision compat --gpu 10de:2684 --os debian-12 --json
    provision compat --host mybox
    """
    import dataclasses

    from provision import compat
    from provision.errors import ConfigError

    flags = {
        "branch": branch,
        "source": source,
        "flavour": flavour,
        "cuda": cuda_version,
        "torch_index": torch_index,
        "torch_version": torch_version,
    }
    wanted = {k: v for k, v in flags.items() if v}
    answers: dict[str, compat.Choice] = {}
    if hosts:
        from provision import facts as facts_mod
        from provision.remote import connect
        from provision.runner import gather_facts
        from provision.step import Context
        from provision.steps import driver

        configs = load_configs(hosts, inventory, None, overrides, accept_new_host_key, False)
        for hc in configs:
            remote = connect(hc.connection)
            try:
                f = gather_facts(remote)
            finally:
                remote.close()
            # the same OS refusal as a run: a box whose os-release contradicts its packages
            # (or an OS provision does not know) gets no OS-specific answer
            facts_mod.check_supported(hc.name, f)
            ctx = Context(hc.name, f, hc.settings, lambda c, sudo: None)
            request = dataclasses.replace(driver.request(ctx), **wanted)
            gpus, unknown = compat.gpus_from_facts(f)
            if unknown and not gpus and not arch:
                raise ConfigError(
                    f"{hc.name}: unknown NVIDIA card(s) {', '.join(unknown)}",
                    "give --arch (e.g. ampere) or the compute capability (e.g. 8.6)",
                )
            if unknown:
                click.echo(f"{hc.name}: not in the card table: {', '.join(unknown)}", err=True)
            answers[hc.name] = compat.choose(
                gpus, os_key or f.os_key, request, arch=arch, unknown=unknown
            )
    else:
        if not os_key:
            raise ConfigError("--os is missing", "e.g. --os ubuntu-24.04, or use --host mybox")
        gpus = [compat.parse_gpu(name, arch) for name in gpu_names]
        unknown = [name for name, gpu in zip(gpu_names, gpus, strict=True) if gpu is None]
        # --set without --host: the keys compat reads are applied, any other is refused.
        request = compat.Request(**{**compat.request_from_sets(overrides), **wanted})
        answers["-"] = compat.choose(
            [g for g in gpus if g], os_key, request, arch=arch, unknown=unknown
        )
    if as_json:
        out = {name: compat.to_json(choice) for name, choice in answers.items()}
        click.echo(json.dumps(out["-"] if list(out) == ["-"] else out, indent=2))
        return
    for name, choice in answers.items():
        if name != "-":
            click.echo(click.style(name, bold=True))
        click.echo(compat.describe(choice))


@cli.command(name="config")
@host_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def show_config(
    target,
    as_json,
) -> None:
    """Show the merged settings of each host and where each value came from (no connection)."""
    import dataclasses

    from provision.config import setting_groups
    from provision.shell import redact

    configs = target.configs()
    out = {}
    for hc in configs:
        rows = {}
        c = hc.connection
        for key, value in (
            ("ansible_host", c.addr),
            ("ansible_port", c.port),
            ("ansible_user", c.user),
            ("ansible_connection", "local" if c.local else "ssh"),
        ):
            rows[key] = (value, hc.sources.get(key, "default"))
        for step in setting_groups():
            for f in dataclasses.fields(step.settings):
                key = f"{step.key}.{f.name}"
                value = getattr(hc.settings[step.key], f.name)
                rows[key] = (list(value) if isinstance(value, tuple) else value, hc.sources[key])
        out[hc.name] = rows
    if as_json:
        data = {
            h: {k: {"value": v, "source": s} for k, (v, s) in rows.items()}
            for h, rows in out.items()
        }
        click.echo(redact(json.dumps(data, indent=2)))
        return
    for name, rows in out.items():
        click.echo(click.style(name, bold=True))
        width = max(len(k) for k in rows)
        for key, (value, source) in rows.items():
            shown = redact(",".join(map(str, value)) if isinstance(value, list) else str(value))
            click.echo(f"  {key:<{width}}  {shown:<40}  {click.style(source, dim=True)}")


@cli.command()
@host_options
@click.option("--junitxml", type=click.Path(path_type=Path), help="write JUnit XML here")
@click.argument("step_names", nargs=-1, metavar="[STEP]...")
def verify(
    target,
    junitxml,
    step_names,
) -> None:
    """Check the hosts with each step's testinfra checks; exit 1 on any failure."""
    from provision.output import Transcript
    from provision.remote import connect
    from provision.runner import gather_facts, preflight
    from provision.verify import STATUSES, render_results, run_checks, testinfra_host, write_junit

    steps = tuple(by_name(n) for n in step_names) if step_names else STEPS
    configs = target.configs()
    results = []
    failed_hosts = []
    for hc in configs:
        transcript = Transcript(target.log_dir, hc.name, [])
        try:
            remote = connect(hc.connection, log=transcript.write)
            try:
                preflight(hc, remote, gather_facts(remote))
                results += run_checks(hc, steps, testinfra_host(remote))
            finally:
                remote.close()
        except ProvisionError as exc:
            click.echo(f"{hc.name}: " + error_text(exc), err=True)
            failed_hosts.append(hc.name)
        finally:
            transcript.close()
    click.echo(render_results(results))
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    if junitxml:
        write_junit(results, junitxml)
    if failed_hosts or counts["failed"] or counts["error"]:
        sys.exit(1)


@cli.command(name="ssh-config")
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
    """Print (or --write) `Host` entries so plain ssh/scp/rsync reach the hosts (no connection).

    `Host NAME` has no port forwards; `Host NAME-tunnel` carries TensorBoard's LocalForward
    (`ssh -N NAME-tunnel`), so a second plain ssh never fails on an already bound port."""
    from provision import sshconfig

    configs = target.configs()
    blocks = {}
    for hc in configs:
        tb = hc.settings["tensorboard"]
        blocks[hc.name] = sshconfig.entry(hc, [(tb.port, tb.port)] if tb.enabled else [])
    if not write:
        click.echo("\n".join(blocks.values()), nl=False)
        return
    path = config_file.expanduser()
    changed = sshconfig.write(path, blocks)
    click.echo(f"{'updated' if changed else 'unchanged'}: {path} ({', '.join(blocks)})")


@cli.command(name="expose-relay")
@host_options
def expose_relay(target) -> None:
    """Install each box's tunnel key on its relay (expose.method = reverse-tunnel), allowed
    to forward its one port and nothing else; the relay must be in the inventory too."""
    from provision.steps import expose

    for hc in target.configs():
        s = hc.settings["expose"]
        relay = expose.inventory_relay(s)
        if relay is None:
            raise ConfigError(
                f"{hc.name}: expose.relay {s.relay!r} is not a host in the inventory",
                "add the relay to the inventory, or put the line from "
                f"`provision verify --host {hc.name} expose` into its authorized_keys",
            )
        changed, line = expose.authorize_on_relay(hc, relay)
        done = "installed on" if changed else "already on"
        click.echo(f"{hc.name}: {done} {relay.name}: {printable(line)}")  # the box's key text


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


@cli.command()
@host_options
@click.option(
    "--port",
    "remote_port",
    type=click.IntRange(1, 65535),
    default=None,
    help="the port on the box [default: tensorboard.port]",
)
@click.option(
    "--local-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="the port here [default: the same]",
)
def tunnel(
    target,
    remote_port,
    local_port,
) -> None:
    """Forward TensorBoard (or --port) on the box to 127.0.0.1 here, until Ctrl-C."""
    import time

    from provision import localport
    from provision.remote import connect

    configs = target.configs()
    if len(configs) != 1:
        raise ConfigError("tunnel takes one host", where="--host")
    hc = configs[0]
    if hc.connection.local:
        raise ConfigError(
            f"{hc.name} is local (ansible_connection=local): no tunnel needed", where="--host"
        )
    remote_port = remote_port or hc.settings["tensorboard"].port
    local_port = local_port or remote_port
    # Bind-check first: with the port taken here, the browser would reach the other program.
    busy = localport.bind_error(local_port)
    if busy:
        raise ConfigError(
            f"{hc.name}: cannot open the tunnel: {busy}",
            "stop that program, or pick a free port here with --local-port"
            + (
                f" (e.g. --local-port {free})"
                if (free := localport.free_port_near(local_port))
                else ""
            ),
            where="--local-port",
        )
    remote = connect(hc.connection)
    try:
        with remote.forward_local(local_port, remote_port):
            click.echo(
                f"{hc.name}: 127.0.0.1:{remote_port} is at http://127.0.0.1:{local_port}/ "
                "(Ctrl-C closes it)",
                err=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        remote.close()


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
    free and pending reboots of the hosts, gathered in parallel (read-only).

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


def _sync_options(delete: bool, dry_run: bool, excludes: tuple[str, ...]):
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


@cli.command()
@host_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def doctor(
    target,
    as_json,
) -> None:
    """Check the box's hardware and boot safety, read-only: ok / warn / fail with the fix.

    \b
    GPUs and what compat would install, PCIe links, RAM vs VRAM, swap, power vs the PSU
    (doctor.psu_watts), root disk and free space, Secure Boot, nouveau, headers, pending
    reboot, held driver packages, driver/library mismatch, static address, sshd, TensorBoard.
    Exit 1 when any finding fails.
    """
    from provision import doctor as doctor_mod
    from provision.remote import connect
    from provision.runner import gather_facts
    from provision.steps import tensorboard

    configs = target.configs()
    out = {}
    unreachable = []
    for hc in configs:
        try:
            remote = connect(hc.connection)
            try:
                host_facts = gather_facts(remote)
                data = doctor_mod.parse(doctor_mod.gather(remote, host_facts))
            finally:
                remote.close()
        except ProvisionError as exc:
            click.echo(f"{hc.name}: " + error_text(exc), err=True)
            unreachable.append(hc.name)
            continue
        tb: tensorboard.Settings = hc.settings["tensorboard"]
        out[hc.name] = doctor_mod.findings(
            data,
            hc.settings["doctor"],
            host_facts,
            request=doctor_mod.request_of(hc.settings),
            tensorboard_port=tb.port,
            tensorboard_bind_all=tb.bind_all,
        )
    if as_json:
        data_out = {name: doctor_mod.to_json(items) for name, items in out.items()}
        click.echo(json.dumps(data_out, indent=2))
    else:
        click.echo("\n\n".join(doctor_mod.render(name, items) for name, items in out.items()))
    if unreachable or any(doctor_mod.failed(items) for items in out.values()):
        sys.exit(1)


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
