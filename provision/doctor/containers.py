"""doctor's container rows: can containers on this box get its GPUs, and will they keep them.

Read from the facts (the docker.io / docker-ce and nvidia-container-toolkit packages) and the
login user's script (NVIDIA's CDI specs, daemon.json, the device nodes without a /dev/char
link). The way an engine gets the GPUs follows its version as the containers step chooses it
(provision/steps/containers_toolkit.py: CDI from Docker 25, else the nvidia runtime). Running
containers are not entered: whether one already lost its GPUs ("Failed to initialize NVML")
would take a process inside each user's container; the missing /dev/char links that cause it
are what this reads.
"""

from __future__ import annotations

import json

from provision.doctor.finding import Box, Finding
from provision.steps import containers_toolkit as toolkit

AREA = "container GPUs"
ENGINES = ("docker.io", "docker-ce")
TOOLKIT = "nvidia-container-toolkit"


def installed_version(box: Box, names: tuple[str, ...]) -> str:
    for name in names:
        package = box.facts.packages.get(name)
        if package and package.installed:
            return package.version
    return ""


def nvidia_runtime(text: str) -> bool:
    """daemon.json names an nvidia runtime (a file that is not JSON names none)."""
    try:
        config = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return False
    runtimes = config.get("runtimes") if isinstance(config, dict) else None
    return isinstance(runtimes, dict) and "nvidia" in runtimes


def container_gpus(box: Box) -> list[Finding]:
    """Docker with the NVIDIA Container Toolkit, the way to the GPUs its version has, and
    NVIDIA's daemon-reload mitigation."""
    data = box.data
    engine = installed_version(box, ENGINES)
    if not engine:
        return []  # no row: nothing about containers to say on a box without Docker
    version = toolkit.engine_version(engine)
    shown = f"Docker {version[0]}.{version[1]}" if version else f"Docker {engine}"
    kit = installed_version(box, (TOOLKIT,))
    fix_kit = "set containers.nvidia = true, then `provision containers`"
    if not kit:
        return [
            Finding(
                AREA,
                "warn",
                f"{shown} without NVIDIA's container toolkit: containers cannot get the GPUs",
                fix_kit,
            )
        ]
    out: list[Finding] = []
    runtime = nvidia_runtime(data.daemon_json)
    if toolkit.mode_for(version) == "cdi" and not data.cdi_specs and not runtime:
        out.append(
            Finding(
                AREA,
                "warn",
                f"{shown} takes GPUs through CDI, but no CDI spec describes them "
                "(/etc/cdi, /var/run/cdi): `--device nvidia.com/gpu=all` fails",
                "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml "
                "(`provision containers` does, with containers.nvidia)",
            )
        )
    elif toolkit.mode_for(version) == "runtime" and not runtime:
        spec = " (a CDI spec is there, but this Docker has no CDI: it came in 25)"
        out.append(
            Finding(
                AREA,
                "warn",
                f"{shown} has no nvidia runtime in /etc/docker/daemon.json"
                + (spec if data.cdi_specs else "") + ": `--runtime nvidia` fails",
                fix_kit,
            )
        )  # fmt: skip
    if data.unlinked_nodes:
        nodes = ", ".join(data.unlinked_nodes[:4]) + (
            " ..." if len(data.unlinked_nodes) > 4 else ""
        )
        out.append(
            Finding(
                AREA,
                "warn",
                f"{len(data.unlinked_nodes)} NVIDIA device node(s) without a /dev/char link "
                f"({nodes}): running containers lose their GPUs at the next systemctl "
                "daemon-reload ('Failed to initialize NVML: Unknown Error', NVIDIA/nvidia-docker"
                "#1730)",
                "sudo nvidia-ctk system create-dev-char-symlinks --create-all, and NVIDIA's "
                "udev rule (`provision containers` with containers.nvidia does both)",
            )
        )
    if not out:
        way = "CDI" if toolkit.mode_for(version) == "cdi" else "the nvidia runtime"
        out.append(Finding(AREA, "ok", f"{shown}, NVIDIA's toolkit {kit}: GPUs through {way}; "
                           "every device node linked"))  # fmt: skip
    return out
