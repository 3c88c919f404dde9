"""tests/run, the README's test command, with a stand-in venv: the whole default run starts
the vm tier in a pytest of its own beside the others and fails when either fails (exit 5, no
tests collected, is a failure too); any arguments go to one pytest as given.

The script itself runs, in a copy of the tree's shape in a temporary folder; `.venv/bin/python`
there is a shell stand-in that prints what it was asked and exits as told (FAKE_VM_RC,
FAKE_REST_RC), and `id` says "not root" so no apt runs.
"""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = """#!/bin/sh
# stand-in for .venv/bin/python in test_tests_run.py
case "$*" in
  *"pytest tests/vm"*) sleep 0.3; echo "VM-TIER-OUTPUT"; exit "${FAKE_VM_RC:-0}";;
  *"pytest --ignore=tests/vm"*) echo "OTHER-TIERS-OUTPUT"; exit "${FAKE_REST_RC:-0}";;
  *) echo "ONE-PYTEST: $*"; exit 0;;
esac
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "run", tmp_path / "tests" / "run")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    for name, text in (("python", PYTHON), ("ruff", "#!/bin/sh\nexit 0\n")):
        (venv / name).write_text(text)
        (venv / name).chmod(0o755)
    digest = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes()).hexdigest()
    (tmp_path / ".venv" / ".pyproject-hash").write_text(digest + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    return tmp_path


def run(tree, *args, **env):
    base = {"PATH": f"{tree / 'bin'}:{os.environ['PATH']}", "HOME": str(tree)}
    return subprocess.run(["bash", str(tree / "tests" / "run"), *args], capture_output=True,
                          text=True, env={**base, **env}, timeout=60)  # fmt: skip


def test_the_default_run_has_the_vm_tier_beside_and_prints_it_after_the_others(tree):
    proc = run(tree)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert (
        out.index("OTHER-TIERS-OUTPUT")
        < out.index("---- the vm tier")
        < out.index("VM-TIER-OUTPUT")
    )


@pytest.mark.parametrize("vm_rc, rest_rc, expected", [(1, 0, 1), (0, 1, 1), (0, 5, 1), (5, 0, 1)])
def test_either_pytest_failing_fails_the_run(tree, vm_rc, rest_rc, expected):
    proc = run(tree, FAKE_VM_RC=str(vm_rc), FAKE_REST_RC=str(rest_rc))
    assert proc.returncode == expected
    if 5 in (vm_rc, rest_rc):
        assert "collected no tests: that is a failure" in proc.stderr


def test_arguments_go_to_one_pytest_and_serial_turns_the_split_off(tree):
    proc = run(tree, "tests/unit", "-q")
    assert "ONE-PYTEST: -m pytest tests/unit -q" in proc.stdout
    assert "VM-TIER-OUTPUT" not in proc.stdout
    proc = run(tree, PROVISION_TEST_SERIAL="1")
    assert "ONE-PYTEST: -m pytest" in proc.stdout and "the vm tier" not in proc.stdout
