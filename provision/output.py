"""Every line a person reads: step lines, plans and diffs, progress, summaries, transcripts.

One line per host and step (`ok`, `changed: ...`, `failed: ...`); while a command runs for
longer than a few seconds, a progress line shows its latest output (in place on a terminal,
every 30 s otherwise). Each host also gets a full transcript under .provision/logs/.

The host's text is data: `printable` escapes its control characters, and every sink here
(step lines, plans, diffs, progress, -v/-vv lines, errors, transcripts) passes text through it,
so a file, a process name or an os-release line cannot drive the terminal.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from provision.shell import mask, redact

STATUS_COLOURS = {"ok": "green", "changed": "yellow", "planned": "cyan", "failed": "red"}

# What a terminal would act on instead of showing: C0 controls but newline and tab (ESC starts
# colour, cursor, title and clipboard sequences; BEL ends OSC; CR rewrites a line), DEL, C1
# controls (U+009B is a one-character CSI), the bidi embeddings, overrides, isolates and marks
# that make text read differently from its bytes, the line and paragraph separators that
# str.splitlines breaks on, and lone surrogates (undecodable bytes that a file cannot hold).
UNSAFE_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ud800-\udfff]"
)


def _escaped(match: re.Match) -> str:
    char = match.group()
    if char == "\r":
        return "\\r"  # CRLF files, progress bars: the common one, readable
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Text from a host made safe to show or log: control characters escaped (CR as \\r,
    others as \\xNN or \\uNNNN, ESC as \\x1b); newline and tab kept."""
    return UNSAFE_RE.sub(_escaped, text)


class Transcript:
    """The per-host log file: every command (secrets masked), its exit code and output, with
    the host's control characters escaped (printable)."""

    def __init__(self, log_dir: Path, host: str, secrets: list[str]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in host)
        # Two runs in the same second (two terminals, --parallel over one host twice) must
        # never share a file: the pid tells them apart, "x" refuses an existing one.
        for n in range(100):
            suffix = f"-{n}" if n else ""
            self.path = log_dir / f"{safe}-{stamp}-{os.getpid()}{suffix}.log"
            try:
                self.file = self.path.open("x", encoding="utf-8")
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free transcript name for {host} in {log_dir}")
        self.secrets = secrets
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            self.file.write(printable(redact(mask(text, self.secrets))) + "\n")
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
        """Print a line of plain text (made printable: it may hold the host's text)."""
        self._emit(_safe(text), err)

    def _emit(self, safe: str, err: bool = False) -> None:
        """Print a line whose parts were made printable before they were styled."""
        with self.lock:
            self._clear_progress()
            click.echo(safe, err=err)

    def step_line(self, host: str, step: str, status: str, detail: str = "") -> None:
        colour = STATUS_COLOURS.get(status)
        line = f"{_safe(host):<{self.width}} {step:<12} {click.style(f'{status:<8}', fg=colour)}"
        self._emit(f"{line} {_safe(detail)}".rstrip())

    def changes(self, changes) -> None:
        """The changes of one step, one per line, with diffs when asked."""
        for change in changes:
            self.echo(f"{'':<{self.width}}   - {change.summary}")
            if self.diff and change.diff:
                # split, not splitlines: a CR (CRLF file) or U+2028 stays in its line, shown.
                for line in change.diff.rstrip("\n").split("\n"):
                    fg = (
                        "green" if line.startswith("+") else "red" if line.startswith("-") else None
                    )
                    self._emit("       " + click.style(_safe(line), fg=fg))

    def command(self, host: str, text: str) -> None:
        if self.verbose >= 1:
            self._emit(click.style(_safe(f"{host}: {text}"), dim=True), err=True)

    # --- progress for long commands ---------------------------------------------------------

    def started(self, host: str, what: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.running[host] = (what, now, now)

    def output_line(self, host: str, line: str) -> None:
        if self.verbose >= 2:
            self._emit(click.style(_safe(f"{host}| {line}"), dim=True), err=True)
            return
        # A progress bar redraws its line with CR: what a terminal would show is the last part.
        line = line.rsplit("\r", 1)[-1]
        with self.lock:
            if host not in self.running:
                return
            what, start, shown = self.running[host]
            now = time.monotonic()
            interval = 1.0 if self.tty else 30.0
            if now - start < 5 or now - shown < interval or not line.strip():
                return
            self.running[host] = (what, start, now)
            text = _safe(f"{host}: {what} ({now - start:.0f}s) {line.strip()}")[:160]
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


def _safe(text: str) -> str:
    """A URL's token hidden, then control characters escaped: for text that may be the host's."""
    return printable(redact(text))


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
    text = click.style("error: ", fg="red", bold=True) + _safe(exc.message)
    if exc.hint:
        text += "\n" + click.style("hint: ", fg="cyan") + _safe(exc.hint)
    return text
