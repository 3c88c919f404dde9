"""`verify` (each step's testinfra checks) and `doctor` (hardware and boot safety): both read
the hosts only, and exit 1 when a check fails or a host cannot be reached."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from provision.cli.app import cli
from provision.cli.hosts import over_hosts
from provision.cli.options import host_options
from provision.steps import STEPS, by_name


@cli.command()
@host_options
@click.option("--junitxml", type=click.Path(path_type=Path), help="write JUnit XML here")
@click.option(
    "--parallel",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="hosts at a time (each host's checks run one after the other)",
)
@click.argument("step_names", nargs=-1, metavar="[STEP]...")
def verify(
    target,
    junitxml,
    parallel,
    step_names,
) -> None:
    """Check the hosts with each step's testinfra checks; exit 1 on any failure."""
    from provision.runner import preflight
    from provision.verify import STATUSES, render_results, run_checks, testinfra_host, write_junit

    steps = tuple(by_name(n) for n in step_names) if step_names else STEPS

    def check(hc, remote, host_facts):
        preflight(hc, remote, host_facts)
        return run_checks(hc, steps, testinfra_host(remote))

    failed_hosts: list[str] = []
    per_host = over_hosts(
        target.configs(), check, log_dir=target.log_dir, unreachable=failed_hosts, parallel=parallel
    )
    results = [r for host_results in per_host.values() for r in host_results]
    click.echo(render_results(results))
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    if junitxml:
        write_junit(results, junitxml)
    if failed_hosts or counts["failed"] or counts["error"]:
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

    unreachable: list[str] = []
    gathered = over_hosts(
        target.configs(),
        lambda hc, remote, f: (hc, f, doctor_mod.parse(doctor_mod.gather(remote, f))),
        unreachable=unreachable,
    )
    out = {
        name: doctor_mod.host_findings(data, host_facts, hc.settings)
        for name, (hc, host_facts, data) in gathered.items()
    }
    if as_json:
        data_out = {name: doctor_mod.to_json(items) for name, items in out.items()}
        click.echo(json.dumps(data_out, indent=2))
    else:
        click.echo("\n\n".join(doctor_mod.render(name, items) for name, items in out.items()))
    if unreachable or any(doctor_mod.failed(items) for items in out.values()):
        sys.exit(1)
