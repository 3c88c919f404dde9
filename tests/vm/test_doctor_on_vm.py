"""`provision doctor` on a VM (real kernel, no GPU; the tier's shared VM, converged by base):
the table with its findings and the exit code they call for, and `--json` that parses."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def vm(shared_vm):
    """The VM tier's shared VM (tests/vm/conftest.py): base converged it, containers added
    Docker."""
    return shared_vm


def test_doctor_reports_a_vm_without_a_gpu(vm, provision):
    table = provision("doctor", "--host", vm.name, check_rc=None)
    as_json = provision("doctor", "--host", vm.name, "--json", check_rc=None)
    assert as_json.stdout.strip(), as_json.stderr
    rows = json.loads(as_json.stdout)[vm.name]
    by_area = {r["area"]: r for r in rows}
    failed = [r for r in rows if r["status"] == "fail"]
    assert table.returncode == as_json.returncode == (1 if failed else 0), table.stdout
    assert by_area["GPU"]["status"] == "warn"
    assert by_area["GPU"]["reason"].startswith("no NVIDIA GPU found")
    for gpu_only in ("GPU stack", "PCIe 0", "driver", "held packages"):
        assert gpu_only not in by_area
    assert by_area["RAM"]["status"] == "ok" and "no GPU" in by_area["RAM"]["reason"]
    assert by_area["root disk"]["status"] in ("ok", "warn")  # a virtio disk may say rotational
    assert " free on / of " in by_area["free space"]["reason"]
    assert by_area["Secure Boot"]["status"] == "ok"  # SeaBIOS (or OVMF without Secure Boot)
    assert by_area["headers"]["status"] in ("ok", "warn")  # a real kernel, not a container's
    assert by_area["power"]["status"] == "skip"
    assert {r["status"] for r in rows} <= {"ok", "skip", "warn", "fail"}
    for area in ("GPU", "RAM", "root disk", "free space", "Secure Boot", "sshd"):
        assert area in table.stdout
    assert "no NVIDIA GPU found" in table.stdout
