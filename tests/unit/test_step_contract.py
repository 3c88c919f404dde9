"""Every step keeps the contract of a room (issue 17 §5): it says why it exists, every setting
has help, it has a real verify, its templates live under templates/<step>/ and have examples,
it imports no other step, and its check reads only what it declares: run on recorded hosts of
each supported OS with every declared read answered, a read it did not declare fails here.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

from provision.changes import Result
from provision.errors import ProvisionError
from provision.facts import parse_facts
from provision.step import Context, UndeclaredRead
from provision.steps import STEPS
from provision.templates import all_templates

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "facts"
FACT_FILES = ["debian-12-nspawn.txt", "ubuntu-24.04-fresh.txt", "ubuntu-22.04-gpu.txt"]
IDS = [s.name for s in STEPS]


def module_of(step):
    return importlib.import_module(step.check.__module__)


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_a_step_says_why_it_exists(step):
    doc = module_of(step).__doc__ or ""
    assert len(doc.split()) >= 12, f"{step.name}: its module docstring says too little"


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_every_setting_has_help(step):
    for f in dataclasses.fields(step.settings):
        assert len(f.metadata.get("help", "").split()) >= 2, f"{step.key}.{f.name} has no help"


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_a_step_has_a_real_verify(step):
    assert step.verify, f"{step.name} has no verify check"
    for check in step.verify:
        source = ast.parse(Path(importlib.import_module(check.__module__).__file__).read_text())
        body = next(
            n
            for n in ast.walk(source)
            if isinstance(n, ast.FunctionDef) and n.name == check.__name__
        )
        asserts = [n for n in ast.walk(body) if isinstance(n, (ast.Assert, ast.Raise))]
        assert asserts, f"{step.name}: {check.__name__} asserts nothing"


STEP_MODULES = {s.check.__module__ for s in STEPS}


@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_a_step_imports_no_other_step(step):
    """A step's room may have helper modules (ssh has sshd_config); another step's module is
    never imported, at module level or inside a function."""
    path = Path(module_of(step).__file__)
    others = STEP_MODULES - {step.check.__module__}
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        hit = [n for n in names if n in others]
        assert not hit, f"{path.name} imports the step {hit[0]}"


def test_templates_live_under_their_steps_folder():
    folders = {name.split("/", 1)[0] for name in all_templates()}
    assert folders <= {s.key for s in STEPS} | {s.name for s in STEPS}, folders


class Absent(dict):
    """Every declared read answers 'absent' (exit 1, no output): a fresh host."""

    def __init__(self, declared) -> None:
        super().__init__()
        self.declared = set(declared)

    def __contains__(self, key) -> bool:
        return key in self.declared

    def __getitem__(self, key):
        return Result(1, "", "")


def enabled_settings():
    """Every step's defaults, with the optional steps turned on (as the demo runs them)."""
    settings = {}
    for step in STEPS:
        values = step.settings()
        names = {f.name for f in dataclasses.fields(values)}
        if "enabled" in names:
            values = dataclasses.replace(values, enabled=True)
        settings[step.key] = values
    return settings


@pytest.mark.parametrize("facts_file", FACT_FILES)
@pytest.mark.parametrize("step", STEPS, ids=IDS)
def test_check_reads_only_what_its_step_declares(step, facts_file):
    facts = parse_facts((DATA / facts_file).read_text())
    settings = enabled_settings()
    ctx = Context("box", facts, settings, None, address="192.0.2.10", gathered={}, strict=True)
    declared = step.reads(ctx) if step.reads is not None else []
    ctx.gathered = Absent(declared)
    try:
        if step.preflight is not None:
            step.preflight(ctx)
        step.check(ctx)
    except UndeclaredRead as exc:
        pytest.fail(f"{step.name} on {facts_file}: {exc.message}")
    except ProvisionError:
        pass  # a refusal of this host or these settings is a decision, made from declared reads
