"""doctor's rules as a table: which rule runs, in the report's order, and which only on a
box with an NVIDIA card. `findings` builds the Box every rule reads (the cards, the one
GPU-stack choice, the declared services) and runs the table."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from provision import stack as stack_decision
from provision.doctor import access, boot, cluster, containers, hardware
from provision.doctor.finding import Box, Finding, Service, gpu_infos
from provision.doctor.parsers import DoctorData
from provision.doctor.settings import Settings
from provision.facts import Facts
from provision.steps import STEPS

Rule = Callable[[Box], "Finding | list[Finding]"]

# (rule, only when the box has an NVIDIA card): the report's order.
RULES: tuple[tuple[Rule, bool], ...] = (
    (hardware.cards, False),
    (hardware.stack, True),
    (hardware.pcie, True),
    (hardware.cpu, False),
    (hardware.memory, False),
    (hardware.power, False),
    (hardware.storage, False),
    (boot.secure_boot, False),
    (boot.nouveau, False),
    (boot.headers, False),
    (boot.reboot, False),
    (boot.held, True),
    (boot.mismatch, True),
    (containers.container_gpus, True),
    (cluster.slurm, False),
    (access.address, False),
    (access.sshd, False),
    (access.services, False),
)


def _title(name: str, summary: str) -> str:
    """The service's name as the step's summary spells it ("TensorBoard"), else as declared."""
    match = re.search(re.escape(name), summary, re.IGNORECASE)
    return match[0] if match else name


def services_of(host_settings: Mapping[str, Any] | None = None) -> tuple[Service, ...]:
    """Every service a step declares (Step.services), with this host's settings for the step
    (the step's defaults where the host has none)."""
    out = []
    for step in STEPS:
        if not step.services:
            continue
        settings = (host_settings or {}).get(step.key) or step.settings()
        for name, port_key in step.services:
            out.append(
                Service(
                    step=step.name,
                    key=step.key,
                    name=name,
                    title=_title(name, step.summary),
                    port=getattr(settings, port_key),
                    bind_all=getattr(settings, "bind_all", None),
                )
            )
    return tuple(out)


def default_settings() -> dict[str, Any]:
    """Every step's default settings, by key: a host whose inventory sets nothing."""
    return {step.key: step.settings() for step in STEPS}


def findings(
    data: DoctorData,
    settings: Settings,
    facts: Facts,
    *,
    host_settings: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """Every finding for one box, in the order of the report. `host_settings`: the host's
    merged settings by step key (the GPU steps' requests, the services' ports); every step's
    defaults where it has none."""
    by_key = {**default_settings(), **(host_settings or {})}
    gpus = gpu_infos(data, facts)
    choice, stack = hardware.choose_stack(gpus, facts, by_key)
    box = Box(
        data=data,
        settings=settings,
        facts=facts,
        gpus=gpus,
        choice=choice,
        stack=stack,
        source=boot.driver_source(choice, stack_decision.request_of(by_key), facts),
        services=services_of(by_key),
    )
    out: list[Finding] = []
    for rule, gpu_only in RULES:
        if gpu_only and not gpus:
            continue
        found = rule(box)
        out += found if isinstance(found, list) else [found]
    return out


def host_findings(
    data: DoctorData, facts: Facts, host_settings: Mapping[str, Any]
) -> list[Finding]:
    """Every finding for one host from its merged settings (`doctor.*` and the steps')."""
    return findings(data, host_settings["doctor"], facts, host_settings=host_settings)
