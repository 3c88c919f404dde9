"""`provision verify`: each step's testinfra checks, run against a host.

The testinfra Host runs its commands through our Remote, so verify uses the same host-key
checking, sudo (with a password where needed), masking and transcript as everything else.
An AssertionError is a failure, `Skip` a skip with its reason; results can be written as
JUnit XML for CI. A check's message often quotes the host (a process name, a file's line):
it is made printable before it reaches the terminal or the XML file.
"""

from __future__ import annotations

import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import click

from provision.errors import ProvisionError, Skip
from provision.hostconfig import HostConfig
from provision.output import printable
from provision.remote import Remote
from provision.step import Step


@dataclass
class CheckResult:
    """One verify check on one host."""

    host: str
    step: str
    check: str  # the check function's docstring (what it proves)
    status: str  # passed | failed | skipped | error
    message: str = ""
    seconds: float = 0.0


def testinfra_host(remote: Remote):
    """A testinfra Host whose commands go through `remote`, as root."""
    from testinfra.backend.base import BaseBackend
    from testinfra.host import Host

    class ProvisionBackend(BaseBackend):
        NAME = "provision"

        def run(self, command: str, *args: str, **kwargs):
            line = self.quote(command, *args)
            r = remote.run(line, sudo=True, check=False)
            return self.result(r.exit_code, line.encode(), r.stdout, r.stderr)

    return Host(ProvisionBackend(remote.host))


def describe(check) -> str:
    """A check's name for people: the first line of its docstring."""
    return (check.__doc__ or check.__name__).strip().splitlines()[0]


def run_checks(hc: HostConfig, steps: tuple[Step, ...], host) -> list[CheckResult]:
    """Run the checks of the steps against a testinfra host."""
    results = []
    for step in steps:
        settings = hc.settings[step.key]
        for check in step.verify:
            started = time.monotonic()
            try:
                check(host, settings)
                status, message = "passed", ""
            except Skip as exc:
                status, message = "skipped", str(exc)
            except AssertionError as exc:
                status, message = "failed", str(exc) or "assertion failed"
            except ProvisionError as exc:
                status, message = "error", exc.message
            except Exception as exc:  # a check that crashes is reported, not hidden
                status = "error"
                message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            results.append(
                CheckResult(
                    hc.name, step.name, describe(check), status, message, time.monotonic() - started
                )
            )
    return results


STATUSES = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}


def render_results(results: list[CheckResult]) -> str:
    """One line per check (`host step status check[: message]`), then the counts."""
    lines = []
    for r in results:
        status = click.style(f"{r.status:<8}", fg=STATUSES[r.status])
        message = f": {printable(r.message)}" if r.message else ""
        lines.append(f"{printable(r.host):<12} {r.step:<12} {status} {r.check}{message}")
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def write_junit(results: list[CheckResult], path: Path) -> None:
    """JUnit XML: one testsuite per host, one testcase per check."""
    root = ET.Element("testsuites", name="provision verify")
    for host in dict.fromkeys(r.host for r in results):
        mine = [r for r in results if r.host == host]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=host,
            tests=str(len(mine)),
            failures=str(sum(r.status == "failed" for r in mine)),
            errors=str(sum(r.status == "error" for r in mine)),
            skipped=str(sum(r.status == "skipped" for r in mine)),
            time=f"{sum(r.seconds for r in mine):.3f}",
        )
        for r in mine:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{host}.{r.step}",
                name=r.check,
                time=f"{r.seconds:.3f}",
            )
            # XML 1.0 cannot hold most control characters at all: escaped, as on the terminal.
            message = printable(r.message)
            if r.status == "failed":
                ET.SubElement(case, "failure", message=message).text = message
            elif r.status == "error":
                ET.SubElement(case, "error", message=message).text = message
            elif r.status == "skipped":
                ET.SubElement(case, "skipped", message=message)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
