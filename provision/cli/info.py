"""Read-only answers: `facts` (what provision sees on a host), `config` (the merged settings
and where each came from) and `compat` (which driver, CUDA and PyTorch, and why)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from provision.cli.app import cli
from provision.cli.hosts import over_hosts
from provision.cli.options import host_options, load_configs
from provision.errors import ConfigError
from provision.output import printable


@cli.command()
@host_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def facts(
    target,
    as_json,
) -> None:
    """Show what provision sees on the host (one round trip, read-only)."""
    out = over_hosts(target.configs(), lambda hc, remote, f: f.summary())
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
@click.option(
    "--os",
    "os_key",
    metavar="OS",
    help="ubuntu-22.04, ubuntu-24.04, ubuntu-26.04, debian-12 or debian-13",
)
@click.option(
    "--cpu",
    type=click.Choice(["amd64", "arm64"]),
    default=None,
    help="the host's CPU architecture (default: amd64, or the host's with --host)",
)
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
    cpu,
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
    provision compat --gpu 10de:1b06 --os debian-13 --cpu arm64
    provision compat --host mybox
    """
    import dataclasses

    from provision import compat

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
        from provision import stack

        def choice_on(hc, remote, f) -> compat.Choice:
            # the same OS refusal as a run: a box whose os-release contradicts its packages
            # (or an OS provision does not know) gets no OS-specific answer
            facts_mod.check_supported(hc.name, f)
            # the same request a run makes (provision.stack), then the flags on top
            request = dataclasses.replace(stack.request_of(hc.settings), **wanted)
            gpus, unknown = compat.gpus_from_facts(f)
            if unknown and not gpus and not arch:
                raise ConfigError(
                    f"{hc.name}: unknown NVIDIA card(s) {', '.join(unknown)}",
                    "give --arch (e.g. ampere) or the compute capability (e.g. 8.6)",
                )
            if unknown:
                click.echo(f"{hc.name}: not in the card table: {', '.join(unknown)}", err=True)
            return compat.choose(
                gpus,
                os_key or f.os_key,
                request,
                arch=arch,
                unknown=unknown,
                cpu=cpu or f.arch,
            )

        configs = load_configs(hosts, inventory, None, overrides, accept_new_host_key, False)
        answers = over_hosts(configs, choice_on)
    else:
        if not os_key:
            raise ConfigError("--os is missing", "e.g. --os ubuntu-24.04, or use --host mybox")
        gpus = [compat.parse_gpu(name, arch) for name in gpu_names]
        unknown = [name for name, gpu in zip(gpu_names, gpus, strict=True) if gpu is None]
        # --set without --host: the keys compat reads are applied, any other is refused.
        request = compat.Request(**{**compat.request_from_sets(overrides), **wanted})
        answers["-"] = compat.choose(
            [g for g in gpus if g], os_key, request, arch=arch, unknown=unknown, cpu=cpu or "amd64"
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
