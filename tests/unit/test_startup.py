"""Start-up stays cheap: `provision --help` and `provision list` must not import the SSH and
test stacks (Fabric, Paramiko, Invoke, testinfra) nor jinja2/rich. Deterministic: checks
sys.modules in a fresh interpreter, not timings (bench/run.py measures those)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
HEAVY = ("fabric", "paramiko", "invoke", "testinfra", "jinja2", "rich")

PROGRAM = """
import json, sys
from provision.cli import cli
for argv in ARGVS:
    try:
        cli.main(argv, prog_name="provision")
    except SystemExit as exc:
        assert exc.code in (0, None), (argv, exc.code)
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules_after(argvs: list[list[str]]) -> set[str]:
    """The modules a fresh interpreter holds after running these CLI invocations."""
    proc = subprocess.run(
        [sys.executable, "-c", f"ARGVS = {argvs!r}\n{PROGRAM}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argvs", [[], [["--help"]], [["list"]], [["all", "--help"]]])
def test_cheap_commands_import_no_ssh_or_template_stack(argvs):
    loaded = modules_after(argvs)
    assert "provision.cli" in loaded
    eager = sorted(m for m in HEAVY if m in loaded)
    assert eager == [], f"imported at start-up: {eager}; import them inside the functions"
