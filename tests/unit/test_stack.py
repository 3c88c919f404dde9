"""provision.stack: one GPU-stack decision per host's facts, read by driver, cuda and pytorch.

The expectations come from outside compat: FIELD.md's rules for a Pascal card (GTX 1080 Ti:
R580 is its last driver branch, cu126 its last wheels, torch 2.15 drops cu126), the recorded
sysfs output of real hosts, and the source files' own imports."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision import compat, stack
from provision.facts import PciDevice, parse_facts, split_sections
from provision.steps import base, conda, cuda, driver, pytorch, users

ROOT = Path(__file__).parent.parent.parent
DATA = ROOT / "tests" / "data" / "facts"
RTX_4090 = PciDevice("0000:01:00.0", "2684", "0x030000")
GPU_STEPS = (driver, cuda, pytorch)


def gpu_facts():
    """The recorded Ubuntu 22.04 box with a GTX 1080 Ti (Pascal) and Secure Boot on."""
    return parse_facts((DATA / "ubuntu-22.04-gpu.txt").read_text())


def settings(**driver_settings):
    return {
        "base": base.Settings(),
        "driver": driver.Settings(**driver_settings),
        "cuda": cuda.Settings(),
        "pytorch": pytorch.Settings(),
        "conda": conda.Settings(enabled=False),
        "users": users.Settings(),
    }


def remote():
    """Every read answered as on a bare host: nothing there (exit 1), apt with no sources,
    the system python 3.10, no environment."""
    r = FakeRemote().on(r".", (1, ""))
    r.on(r"apt-get indextargets", "@@targets\n@@fetched\n@@keyring\n@@apt-key\n@@end\n")
    r.on(r"python3 -c .*sys.version_info", "3.10\n")
    return r.on(r"importlib.metadata", (127, ""))


@pytest.fixture
def choose_calls(monkeypatch):
    """Every call of compat.choose, counted."""
    calls = []
    real = compat.choose

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(compat, "choose", counting)
    return calls


def plan_all(f, s):
    """What a run does with the GPU steps on one set of facts: reads, preflight, check."""
    out = {}
    for module in GPU_STEPS:
        ctx = declared.context(module.STEP, f, s, remote())
        module.STEP.preflight(ctx)
        out[module.STEP.name] = module.STEP.check(ctx)
    return out


def test_the_decision_is_made_once_per_facts(choose_calls):
    f = gpu_facts()
    plan_all(f, settings())
    assert len(choose_calls) == 1  # three steps' reads, preflights and checks: one choice
    plan_all(f, settings())
    assert len(choose_calls) == 1
    plan_all(gpu_facts(), settings())  # facts gathered again (after a change): decided again
    assert len(choose_calls) == 2


def test_facts_copied_with_another_card_get_their_own_decision(choose_calls):
    f = gpu_facts()
    pascal = stack.decide(f, settings())
    ada = stack.decide(dataclasses.replace(f, nvidia_pci=(RTX_4090,)), settings())
    assert len(choose_calls) == 2
    # FIELD.md: Pascal stays on cu126 wheels; an Ada card is served by newer ones.
    assert pascal.torch_index == "cu126" and ada.torch_index != "cu126"
    assert stack.decide(f, settings()) is pascal and len(choose_calls) == 2


def test_another_request_on_the_same_facts_is_its_own_decision(choose_calls):
    f = gpu_facts()
    default = stack.decide(f, settings())
    pinned = stack.decide(f, settings(source="nvidia"))
    assert (default.source, pinned.source) == ("ubuntu", "nvidia") and len(choose_calls) == 2


def test_a_refusal_is_decided_once_and_raised_each_time(choose_calls):
    f = gpu_facts()
    s = settings(branch=590)  # FIELD.md: R580 is Pascal's last branch
    for _ in range(2):
        with pytest.raises(compat.Incompatible):
            stack.decide(f, s)
    assert len(choose_calls) == 1
    for module in GPU_STEPS:  # reads are declared without raising; preflight refuses
        ctx = declared.context(module.STEP, f, s, remote())
        with pytest.raises(compat.Incompatible):
            module.STEP.preflight(ctx)
            module.STEP.check(ctx)
    assert len(choose_calls) == 1


def describe(change) -> str:
    """A change's summary, commands and uploaded contents, as one text."""
    parts = [change.summary]
    for action in change.actions:
        parts.append(getattr(action, "command", ""))
        parts.append(getattr(action, "content", b"").decode())
    return " | ".join(parts)


def test_driver_cuda_and_pytorch_plan_the_same_stack_for_a_pascal_card():
    plans = plan_all(gpu_facts(), settings())
    text = {name: " | ".join(map(describe, changes)) for name, changes in plans.items()}
    # FIELD.md: Pascal → R580 (its last branch), CUDA 12.6 (cu126), torch below 2.15
    assert "nvidia:580-server" in text["driver"]  # ubuntu-drivers, signed (Secure Boot is on)
    assert "cuda-toolkit-12-6" in text["cuda"] and "/usr/local/cuda-12.6/bin" in text["cuda"]
    assert "https://download.pytorch.org/whl/cu126" in text["pytorch"]
    assert "'torch<2.15'" in text["pytorch"]


def test_request_of_names_the_three_steps_settings():
    s = settings(branch=580, flavour="open", source="nvidia")
    s["cuda"] = cuda.Settings(version="12.8")
    s["pytorch"] = pytorch.Settings(index="cu128", version="2.9.1")
    assert stack.request_of(s) == compat.Request(
        branch=580,
        flavour="open",
        source="nvidia",
        cuda="12.8",
        torch_index="cu128",
        torch_version="2.9.1",
    )


class PciHost:
    """A testinfra-like host whose sysfs PCI read prints `text`."""

    def __init__(self, text):
        self.text = text

    def run(self, command):
        assert "/sys/bus/pci/devices" in command, command
        return type("R", (), {"rc": 0, "stdout": self.text, "stderr": ""})()


@pytest.mark.parametrize(
    "facts_file, gpu",
    [("ubuntu-22.04-gpu.txt", True), ("debian-12-nspawn.txt", False)],
)
def test_verify_sees_the_gpu_the_recorded_sysfs_shows(facts_file, gpu):
    pci = split_sections((DATA / facts_file).read_text())["pci"] + "\n"
    host = PciHost(pci)
    assert stack.has_gpu(host) is gpu  # a 0x0300 function; its HDMI audio (0x0403) is no GPU
    assert not stack.has_nvswitch(host)
    assert stack.has_nvswitch(PciHost("0000:05:00.0 0x22a3 0x068000\n"))  # an H100 NVSwitch
    assert not stack.has_gpu(PciHost("0000:01:00.1 0x10ef 0x040300\n"))


def test_no_gpu_step_imports_another_step():
    for name in ("driver", "cuda", "pytorch", "conda"):
        tree = ast.parse((ROOT / "provision" / "steps" / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):  # function-level imports too
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        # The step's own helper modules (driver_verify, pytorch_install...) are its room.
        own = f"provision.steps.{name}_"
        steps = sorted(
            m for m in imported if m.startswith("provision.steps") and not m.startswith(own)
        )
        assert not steps, f"provision/steps/{name}.py imports {steps}"
