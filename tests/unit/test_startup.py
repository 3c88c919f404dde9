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


TRANSPORT = ("connection", "transport", "local", "remote")


def provision_imports(module: str) -> set[str]:
    """The provision modules one module imports, at module level or inside functions."""
    import ast

    tree = ast.parse((REPO / "provision" / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "provision":
                out |= {a.name for a in node.names}
            elif node.module.startswith("provision."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("provision.")}
    return out


def test_the_transport_modules_import_each_other_one_way():
    # issue 17: local.py <-> remote.py was a cycle (remote's connect() imported LocalRemote,
    # LocalRemote subclassed remote.Remote). Data, then the shared transport, then the two
    # carriers, then connect(): each may import only those before it.
    for i, module in enumerate(TRANSPORT):
        later = set(TRANSPORT[i + 1 :])
        assert not provision_imports(module) & later, (module, provision_imports(module) & later)
