"""One-change mutants of a module, each run against the module's own test files.

Why: a green suite only says the tests pass; a mutation run says whether they would notice a
wrong line (issue 17 §6). Each mutant is the module with one small change (a flipped
comparison, `and` for `or`, a dropped `not` or statement, an int off by one, a string
emptied...); a mutant that makes a test fail is killed, one the tests pass on survived. Every
survivor is either a missing test or an equivalent change, and tests/mutation/README.md says
which, for each run made so far.

mutmut is not used: it rewrites the tree into `mutants/` and fights the tests' own sys.path.
This script copies the repository's files (tracked and untracked-not-ignored, as
`git ls-files -co --exclude-standard` lists them) into a temporary folder, writes one mutant
at a time there (the real tree is never touched), and runs
`python -m pytest TESTS -x -q -p no:randomly -p no:cacheprovider` in the copy, with PYTHONPATH
pointing at it. A mutant whose tests run past --timeout counts as detected ("timeout").

Run from anywhere with the venv's python (paths are relative to the current folder):

    /work/venv/bin/python tests/mutation/mutate.py provision/shell.py tests/unit/test_shell.py \\
        --out /tmp/shell.jsonl

--list prints the mutants without running them; --retry OLD.jsonl runs only the mutants that
OLD.jsonl did not kill (after tests were added); --skip-def NAME leaves a function or class
alone (a glob; e.g. verify_* bodies, which only the host tiers run).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A comparison and its negation (H8's run), and the off-by-one boundary (H2's run).
NEGATE = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
SYMBOL = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
YES_NO = {"yes": "no", "no": "yes"}
# provision.shell's script builders, called as shell.X(...): each argument is one command, so
# dropping one is a dropped line of the host script (that is how put_atomic's `sync` dropped is
# made).
SHELL_BUILDERS = ("cmd", "and_", "seq", "or_", "if_")
# Statements whose removal is no mutant (or no longer parses as one).
KEPT_STATEMENTS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
PYTEST_ARGS = ("-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider")


@dataclass
class Mutant:
    """One change: where, which operator, what it does, and how to make and undo it."""

    line: int
    operator: str
    description: str
    apply: Callable[[], Callable[[], None]]  # makes the change, returns its undo


def _set(obj: object, attr: str, value: object) -> Callable[[], None]:
    """Set obj.attr; return the undo."""
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    return lambda: setattr(obj, attr, old)


def _set_item(items: list, index: int, value: object) -> Callable[[], None]:
    """Set items[index]; return the undo."""
    old = items[index]
    items[index] = value
    return lambda: items.__setitem__(index, old)


def _pop(items: list, index: int) -> Callable[[], None]:
    """Remove items[index]; return the undo."""
    old = items.pop(index)
    return lambda: items.insert(index, old)


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> Callable[[], None]:
    """Put new where old sits in parent; return the undo."""
    for field, value in ast.iter_fields(parent):
        if value is old:
            return _set(parent, field, new)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    return _set_item(value, i, new)
    raise ValueError("node not found in its parent")


def _not_code(tree: ast.AST, skip_defs: list[str]) -> set[int]:
    """ids of nodes left alone: docstrings, annotations, format specs, skipped defs."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        defs = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        if isinstance(node, defs) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.update(id(n) for n in ast.walk(first))
        if isinstance(node, defs[1:]) and any(fnmatch.fnmatch(node.name, g) for g in skip_defs):
            skip.update(id(n) for n in ast.walk(node))
        for part in ("annotation", "returns", "format_spec"):
            sub = getattr(node, part, None)
            if isinstance(sub, ast.AST):
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def _short(value: str) -> str:
    """A string constant as the report shows it."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _first_line(source: str, node: ast.AST) -> str:
    """The first line of node's source, for a dropped statement's description."""
    text = (ast.get_source_segment(source, node) or type(node).__name__).splitlines()[0]
    return text if len(text) <= 60 else text[:60] + "..."


def mutants(tree: ast.Module, source: str, skip_defs: list[str]) -> list[Mutant]:
    """Every mutant of the module, in line order."""
    skip = _not_code(tree, skip_defs)
    parent = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    out: list[Mutant] = []
    for node in ast.walk(tree):
        if id(node) in skip or isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        out += _expression_mutants(node, parent)
        out += _statement_mutants(node, source, skip)
    out.sort(key=lambda m: m.line)
    return out


def _expression_mutants(node: ast.AST, parent: dict[int, ast.AST]) -> Iterator[Mutant]:
    """Mutants of one expression node: comparisons, and/or, not, constants, elements."""
    line = getattr(node, "lineno", 0)
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for operator, table in (("compare", NEGATE), ("boundary", BOUNDARY)):
                if type(op) in table:
                    new = table[type(op)]
                    desc = f"{SYMBOL[type(op)]} -> {SYMBOL[new]}"
                    yield Mutant(line, operator, desc, _maker(_set_item, node.ops, i, new()))
    elif isinstance(node, ast.BoolOp):
        new, desc = (
            (ast.Or(), "and -> or") if isinstance(node.op, ast.And) else (ast.And(), "or -> and")
        )
        yield Mutant(line, "boolop", desc, _maker(_set, node, "op", new))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield Mutant(
            line, "not", "drop not", _maker(_replace, parent[id(node)], node, node.operand)
        )
    elif isinstance(node, ast.Constant):
        yield from _constant_mutants(node, line, parent)
    if isinstance(node, ast.List) and len(node.elts) > 1:
        for i, elt in enumerate(node.elts):
            if not isinstance(elt, ast.Starred):
                desc = f"drop element {i} of a list"
                yield Mutant(elt.lineno, "element", desc, _maker(_pop, node.elts, i))
    if isinstance(node, ast.Call) and len(node.args) > 1 and _builder(node.func) in SHELL_BUILDERS:
        for i, arg in enumerate(node.args):
            if not isinstance(arg, ast.Starred):
                desc = f"drop argument {i} of shell.{_builder(node.func)}()"
                yield Mutant(arg.lineno, "element", desc, _maker(_pop, node.args, i))


def _constant_mutants(
    node: ast.Constant, line: int, parent: dict[int, ast.AST]
) -> Iterator[Mutant]:
    """True<->False, an int +1 and -1, "yes"<->"no", a string wrapped in XX or emptied."""
    value = node.value
    if isinstance(value, bool):
        yield Mutant(
            line, "bool", f"{value} -> {not value}", _maker(_set, node, "value", not value)
        )
    elif isinstance(value, int):
        for new in (value + 1, value - 1):
            yield Mutant(line, "int", f"{value} -> {new}", _maker(_set, node, "value", new))
    elif isinstance(value, str):
        if value in YES_NO:
            desc = f"{value!r} -> {YES_NO[value]!r}"
            yield Mutant(line, "yes-no", desc, _maker(_set, node, "value", YES_NO[value]))
        desc = f"{_short(value)} -> 'XX...XX'"
        yield Mutant(line, "string", desc, _maker(_set, node, "value", f"XX{value}XX"))
        # An f-string's literal part emptied only drops words; XX..XX already shows that.
        if value and not isinstance(parent.get(id(node)), ast.JoinedStr):
            desc = f"{_short(value)} -> ''"
            yield Mutant(line, "string", desc, _maker(_set, node, "value", ""))


def _statement_mutants(node: ast.AST, source: str, skip: set[int]) -> Iterator[Mutant]:
    """Each statement of node's bodies replaced by `pass`."""
    for field in ("body", "orelse", "finalbody"):
        body = getattr(node, field, None)
        if not (isinstance(body, list) and body and isinstance(body[0], ast.stmt)):
            continue
        for i, stmt in enumerate(body):
            if id(stmt) in skip or isinstance(stmt, (*KEPT_STATEMENTS, ast.Pass)):
                continue
            desc = f"drop statement: {_first_line(source, stmt)}"
            yield Mutant(stmt.lineno, "statement", desc, _maker(_set_item, body, i, ast.Pass()))


def _builder(func: ast.expr) -> str:
    """The method name of an attribute call (`shell.cmd(...)` gives "cmd"); bare calls give ""
    (as in H8's run, so its totals stay reproducible)."""
    return func.attr if isinstance(func, ast.Attribute) else ""


def _maker(change: Callable[..., Callable[[], None]], *args: object) -> Callable:
    """change(*args), deferred until the mutant is made."""
    return lambda: change(*args)


def runnable(tree: ast.Module, todo: list[Mutant], module: str) -> Iterator[tuple[Mutant, str]]:
    """(mutant, its module text) for each mutant that compiles and is new code."""
    seen = {ast.unparse(tree)}  # the original: a change the unparser cannot show is no mutant
    for m in todo:
        undo = m.apply()
        text = ast.unparse(tree)
        undo()
        if text in seen:
            continue  # the same code as the original or an earlier mutant
        seen.add(text)
        try:
            compile(text, module, "exec")
        except SyntaxError:
            continue
        yield m, text


def copy_repo(dest: Path) -> None:
    """Copy the repository's tracked and untracked-not-ignored files into dest."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the work tree, or a submodule's folder
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, str, str]:
    """(outcome, first failing test, output) of the tests run in copy."""
    cmd = [sys.executable, "-m", "pytest", *tests, *PYTEST_ARGS]
    # No .pyc: two mutants of the same size written in the same second would share one.
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    # Output to a file, not a pipe: a test's stray child could hold a pipe open past the kill.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            cmd, cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: pytest and its children
            proc.wait()
            rc = None
        log.seek(0)
        output = log.read()
    failed = [x for x in output.splitlines() if x.startswith(("FAILED", "ERROR"))]
    outcome = "timeout" if rc is None else "survived" if rc == 0 else "killed"
    return outcome, failed[0] if failed else "", output


def check_baseline(copy: Path, module: str, tests: list[str], timeout: float) -> None:
    """Stop unless the copy's module is the one imported and its tests pass unmutated."""
    dotted = module.removesuffix(".py").replace("/", ".")
    probe = f"import {dotted} as m; print(m.__file__)"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=copy, env=env, capture_output=True, text=True
    )
    if Path(where.stdout.strip()).resolve() != (copy / module).resolve():
        sys.exit(f"{dotted} is not imported from the copy: {where.stdout}{where.stderr}")
    outcome, _, output = run_tests(copy, tests, timeout)
    if outcome != "survived":
        sys.exit(f"the tests do not pass on the unmutated copy ({outcome}):\n{output[-3000:]}")


def in_repo(path: str) -> str:
    """path (relative to the current folder) as a path relative to the repository."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(REPO) or not resolved.exists():
        sys.exit(f"{path}: not a file in {REPO}")
    return str(resolved.relative_to(REPO))


def not_killed(path: str) -> set[tuple[int, str]]:
    """(line, description) of the mutants an earlier run's results did not kill."""
    with open(path) as f:
        rows = [json.loads(x) for x in f if x.startswith("{")]
    return {(r["line"], r["description"]) for r in rows if r["outcome"] != "killed"}


def summary(module: str, results: list[dict]) -> str:
    """Totals and every mutant the tests did not kill."""
    killed = sum(r["outcome"] == "killed" for r in results)
    timeouts = [r for r in results if r["outcome"] == "timeout"]
    survivors = [r for r in results if r["outcome"] == "survived"]
    lines = [
        f"{module}: {len(results)} mutants, {killed} killed, {len(timeouts)} timeouts "
        f"(detected), {len(survivors)} survived"
    ]
    lines += [f"  timeout  L{r['line']} {r['description']}" for r in timeouts]
    lines += [f"  survived L{r['line']} {r['description']}" for r in survivors]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every mutant of MODULE against TESTS; print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="the module to mutate, e.g. provision/shell.py")
    parser.add_argument("tests", nargs="+", help="the test files each mutant runs")
    parser.add_argument("--out", help="write one JSON line per mutant here")
    parser.add_argument("--timeout", type=float, default=25, help="seconds per mutant")
    parser.add_argument("--retry", help="only the mutants this earlier results file did not kill")
    parser.add_argument("--skip-def", action="append", default=[], help="a def/class name glob")
    parser.add_argument("--list", action="store_true", help="print the mutants; run nothing")
    args = parser.parse_args(argv)

    module, tests = in_repo(args.module), [in_repo(t) for t in args.tests]
    source = (REPO / module).read_text()
    tree = ast.parse(source)
    todo = mutants(tree, source, args.skip_def)
    if args.retry:
        wanted = not_killed(args.retry)
        todo = [m for m in todo if (m.line, m.description) in wanted]
    if args.list:
        for m, _ in runnable(tree, todo, module):
            print(f"L{m.line} {m.operator}: {m.description}")
        return 0

    results: list[dict] = []
    out = open(args.out, "w") if args.out else None  # noqa: SIM115 - written as it goes
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        copy = Path(tmp)
        copy_repo(copy)
        check_baseline(copy, module, tests, args.timeout)
        try:
            for m, text in runnable(tree, todo, module):
                (copy / module).write_text(text)
                start = time.monotonic()
                outcome, failed, _ = run_tests(copy, tests, args.timeout)
                row = {
                    "module": module,
                    "line": m.line,
                    "operator": m.operator,
                    "description": m.description,
                    "outcome": outcome,
                    "failed": failed,
                    "seconds": round(time.monotonic() - start, 1),
                }
                results.append(row)
                print(f"{outcome:8} L{m.line} {m.operator}: {m.description}", flush=True)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
        finally:
            if out:
                out.close()
    print(summary(module, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
