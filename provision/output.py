"""Every line a person reads: step lines, plans and diffs, progress, summaries, transcripts.

One line per host and step (`ok`, `changed: ...`, `failed: ...`); while a command runs for
longer than a few seconds, a progress line shows its latest output (in place on a terminal,
every 30 s otherwise). Each host also gets a full transcript under .provision/logs/.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from provision.shell import mask, redact

STATUS_COLOURS = {"ok": "green", "changed": "yellow", "planned": "cyan", "failed": "red"}


class Transcript:
    """The per-host log file: every command (secrets masked), its exit code and output."""

    def __init__(self, log_dir: Path, host: str, secrets: list[str]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in host)
        self.path = log_dir / f"{safe}-{stamp}.log"
        self.secrets = secrets
        self.lock = threading.Lock()
        self.file = self.path.open("a", encoding="utf-8")

    def write(self, text: str) -> None:
        with self.lock:
            self.file.write(redact(mask(text, self.secrets)) + "\n")
            self.file.flush()

    def close(self) -> None:
        self.file.close()


class Reporter:
    """Thread-safe printing for the runner: step lines, plans, progress."""

    def __init__(self, *, diff: bool = False, verbose: int = 0, width: int = 12) -> None:
        self.diff = diff
        self.verbose = verbose
        self.width = width
        self.lock = threading.Lock()
        self.tty = sys.stderr.isatty()
        self.running: dict[str, tuple[str, float, float]] = {}  # host -> (what, start, shown)

    def echo(self, text: str = "", err: bool = False) -> None:
        with self.lock:
            self._clear_progress()
            click.echo(redact(text), err=err)

    def step_line(self, host: str, step: str, status: str, detail: str = "") -> None:
        colour = STATUS_COLOURS.get(status)
        line = f"{host:<{self.width}} {step:<12} {click.style(f'{status:<8}', fg=colour)}"
        self.echo(f"{line} {detail}".rstrip())

    def changes(self, changes) -> None:
        """The changes of one step, one per line, with diffs when asked."""
        for change in changes:
            self.echo(f"{'':<{self.width}}   - {change.summary}")
            if self.diff and change.diff:
                for line in change.diff.rstrip("\n").splitlines():
                    fg = (
                        "green" if line.startswith("+") else "red" if line.startswith("-") else None
                    )
                    self.echo("       " + click.style(line, fg=fg))

    def command(self, host: str, text: str) -> None:
        if self.verbose >= 1:
            self.echo(click.style(f"{host}: {text}", dim=True), err=True)

    # --- progress for long commands ---------------------------------------------------------

    def started(self, host: str, what: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.running[host] = (what, now, now)

    def output_line(self, host: str, line: str) -> None:
        if self.verbose >= 2:
            self.echo(click.style(f"{host}| {line}", dim=True), err=True)
            return
        with self.lock:
            if host not in self.running:
                return
            what, start, shown = self.running[host]
            now = time.monotonic()
            interval = 1.0 if self.tty else 30.0
            if now - start < 5 or now - shown < interval or not line.strip():
                return
            self.running[host] = (what, start, now)
            text = f"{host}: {what} ({now - start:.0f}s) {line.strip()}"[:160]
            if self.tty:
                click.echo("\r\033[K" + click.style(text, dim=True), err=True, nl=False)
            else:
                click.echo(text, err=True)

    def finished(self, host: str) -> None:
        with self.lock:
            self.running.pop(host, None)
            self._clear_progress()

    def _clear_progress(self) -> None:
        if self.tty:
            click.echo("\r\033[K", err=True, nl=False)


def summary_table(results) -> str:
    """Per host: steps ok/changed/failed, commands sent, seconds."""
    lines = [f"{'host':<20} {'ok':>3} {'changed':>8} {'failed':>7} {'commands':>9} {'time':>8}"]
    for r in results:
        counts = {s: sum(1 for x in r.steps if x.status == s) for s in ("ok", "changed", "failed")}
        counts["changed"] += sum(1 for x in r.steps if x.status == "planned" and x.changes)
        failed = counts["failed"] + (1 if r.error and not counts["failed"] else 0)
        lines.append(
            f"{r.host:<20} {counts['ok']:>3} {counts['changed']:>8} {failed:>7} "
            f"{r.commands:>9} {r.seconds:>7.1f}s"
        )
    return "\n".join(lines)


def error_text(exc) -> str:
    """A ProvisionError as the user sees it: message, then the hint."""
    text = click.style("error: ", fg="red", bold=True) + redact(exc.message)
    if exc.hint:
        text += "\n" + click.style("hint: ", fg="cyan") + redact(exc.hint)
    return text
