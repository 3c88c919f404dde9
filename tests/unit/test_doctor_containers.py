"""doctor's container rows on a recorded GPU workstation (tests/data/doctor/), with Docker, the
toolkit and the script's sections added as a host prints them.

Expectations: NVIDIA's notice on containers losing their GPUs at daemon-reload (a device node
without its /dev/char/MAJOR:MINOR link is the cause, NVIDIA/nvidia-docker#1730), Docker 25 as
the first with CDI devices, and the daemon.json entry `nvidia-ctk runtime configure` writes.
The doctor's script sections run in the real shell in test_containers_toolkit.py.
"""

import json
from pathlib import Path

from provision import doctor
from provision.facts import parse_facts

DATA = Path(__file__).parent.parent / "data" / "doctor"
RUNTIME = json.dumps({"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}})


def box(packages=(), cdi="", dev_char="", daemon_json=""):
    text = (DATA / "ubuntu-24.04-2x4090.txt").read_text()
    lines = "".join(f"{name}\t{version}\tii \n" for name, version in packages)
    text = text.replace("@@pci\n", lines + "@@pci\n", 1)
    sections = f"@@cdi-specs\n{cdi}@@dev-char\n{dev_char}@@daemon-json\n{daemon_json}\n"
    user, _, root = text.partition("\n@@root\n")
    head, _, _ = user.rpartition("@@end")
    text = head + sections + "@@end\n\n@@root\n" + root
    data, facts = doctor.parse(text), parse_facts(text)
    return [
        f for f in doctor.findings(data, doctor.Settings(), facts) if f.area == "container GPUs"
    ]


DOCKER_20 = ("docker.io", "20.10.24+dfsg1-1+deb12u1")
DOCKER_26 = ("docker.io", "26.1.3-0ubuntu1~24.04.1")
TOOLKIT = ("nvidia-container-toolkit", "1.18.0-1")


def test_no_docker_no_row():
    assert box() == []


def test_docker_without_the_toolkit_cannot_give_gpus():
    (row,) = box([DOCKER_26])
    assert row.status == "warn" and "without NVIDIA's container toolkit" in row.reason
    assert "containers.nvidia = true" in row.fix


def test_docker_26_with_a_spec_is_ok_and_says_cdi():
    (row,) = box([DOCKER_26, TOOLKIT], cdi="/etc/cdi/nvidia.yaml\n")
    assert row.status == "ok" and "Docker 26.1" in row.reason and "through CDI" in row.reason


def test_docker_26_without_a_spec_or_runtime_warns_with_the_generate_command():
    (row,) = box([DOCKER_26, TOOLKIT])
    assert row.status == "warn" and "no CDI spec" in row.reason
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in row.fix


def test_docker_20_needs_the_runtime_and_a_cdi_spec_does_not_help():
    (row,) = box([DOCKER_20, TOOLKIT], cdi="/etc/cdi/nvidia.yaml\n")
    assert row.status == "warn" and "no nvidia runtime" in row.reason
    assert "this Docker has no CDI" in row.reason
    (row,) = box([DOCKER_20, TOOLKIT], daemon_json=RUNTIME)
    assert row.status == "ok" and "the nvidia runtime" in row.reason


def test_unlinked_device_nodes_warn_of_the_daemon_reload_loss():
    rows = box([DOCKER_20, TOOLKIT], dev_char="/dev/nvidia0\n/dev/nvidiactl\n", daemon_json=RUNTIME)
    (row,) = rows
    assert row.status == "warn" and row.reason.startswith("2 NVIDIA device node(s) without")
    assert "daemon-reload" in row.reason and "Failed to initialize NVML" in row.reason
    assert "nvidia-ctk system create-dev-char-symlinks --create-all" in row.fix


def test_a_daemon_json_that_is_not_json_names_no_runtime():
    (row,) = box([DOCKER_20, TOOLKIT], daemon_json='{"runtimes": {"nvidia": ')
    assert row.status == "warn" and "no nvidia runtime" in row.reason
