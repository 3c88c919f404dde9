"""output.printable and the sinks that use it: hostile host text (terminal escapes, bidi
overrides, CR) is shown and logged escaped, newline and tab kept; our own colours survive.

What counts as dangerous comes from outside the code: Unicode's categories and bidi classes
(unicodedata) and the escape sequences terminals act on (ECMA-48, xterm's OSC).
"""

from __future__ import annotations

import unicodedata

import click
from hypothesis import given
from hypothesis import strategies as st

from provision.changes import Change
from provision.errors import CommandError, ProvisionError
from provision.output import Reporter, Transcript, error_text, printable

# Escape sequences a terminal acts on (ECMA-48 / xterm): clear screen, window title (OSC 0,
# BEL-terminated), clipboard write (OSC 52, ST-terminated), hyperlink, cursor up, 8-bit CSI.
HOSTILE = [
    "\x1b[2J",
    "\x1b]0;pwned\x07",
    "\x1b]52;c;ZWNobyBoaQ==\x1b\\",
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\x1b[1A\x1b[2K",
    "\x9b2J",
    "ok\rFAILED",
    "\x00\x7f\x85",
]
# Unicode bidi controls (UAX #9): embeddings, overrides, isolates and the implicit marks.
BIDI_CLASSES = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
MARKS = {"\u200e", "\u200f", "\u061c"}


def dangerous(char: str) -> bool:
    """A character a terminal or a line splitter would act on, by Unicode's own data."""
    if char in "\n\t":
        return False
    category = unicodedata.category(char)
    return (
        category in ("Cc", "Cs", "Zl", "Zp")
        or unicodedata.bidirectional(char) in BIDI_CLASSES
        or char in MARKS
    )


def test_printable_escapes_terminal_sequences():
    for text in HOSTILE:
        shown = printable(text)
        assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown, repr(shown)
        assert "\r" not in shown and "\x00" not in shown and "\x7f" not in shown
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert printable("ok\rFAILED") == "ok\\rFAILED"
    assert printable("\x9b") == "\\x9b"


def test_printable_escapes_bidi_overrides():
    # "Trojan source": RLO makes `exe.txt` read as `txt.exe`.
    shown = printable("report\u202etxt.exe")
    assert shown == "report\\u202etxt.exe"
    for char in "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c":
        assert printable(char) == f"\\u{ord(char):04x}"


def test_printable_keeps_newline_tab_and_ordinary_text():
    text = "a\tb\nGeForce RTX 4090 — 24 GiB, naïve, 日本語, emoji 🚀\n"
    assert printable(text) == text


HOSTILE_TEXT = st.lists(
    st.text(st.characters()) | st.sampled_from([*HOSTILE, "\ud800", "\udfff"])
).map("".join)


@given(HOSTILE_TEXT)
def test_printable_leaves_no_dangerous_character(text):
    shown = printable(text)
    assert not [c for c in shown if dangerous(c)]
    assert shown.count("\n") == text.count("\n") and shown.count("\t") == text.count("\t")
    shown.encode("utf-8")  # a transcript can hold it


@given(st.text(st.characters()))
def test_printable_changes_only_dangerous_characters(text):
    if not any(dangerous(c) for c in text):
        assert printable(text) == text


def test_printable_is_needed_at_all():
    """The sanity check of the property test: the alphabet really holds dangerous text."""
    assert all(any(dangerous(c) for c in text) for text in HOSTILE)


# --- the sinks -------------------------------------------------------------------------------


def test_reporter_escapes_host_text_but_keeps_its_own_colours(capsys, monkeypatch):
    monkeypatch.setattr(click.utils, "should_strip_ansi", lambda *a, **k: False)
    reporter = Reporter(diff=True, verbose=2)
    diff = "--- a\n+++ b\n-old \x1b]0;title\x07\n+new \x1b[2J\n"
    reporter.step_line("box", "base", "planned", "write /etc/x\x1b[5m")
    reporter.changes([Change("update /etc/motd \u202eevil", (), diff)])
    reporter.command("box", "$ cat -- /etc/\x1b[2Jx")
    reporter.output_line("box", "gpu \x1b]0;pwned\x07 name")
    out, err = capsys.readouterr()
    for text in (out, err):
        assert "\x07" not in text and "\u202e" not in text and "\x1b[2J" not in text
        assert "\x1b]" not in text and "\x1b[5m" not in text
    assert "\\x1b[2J" in out and "\\x1b]0;title\\x07" in out and "\\u202eevil" in out
    assert "\\x1b]0;pwned\\x07" in err and "\\x1b[2Jx" in err
    assert "\x1b[32m" in out  # our green for the + line is still a colour


def test_transcript_stores_host_text_escaped(tmp_path):
    transcript = Transcript(tmp_path, "box", ["s3cret"])
    transcript.write("$ ps\nalice \x1b]0;pwned\x07 s3cret\r\n\u202etxt")
    transcript.close()
    log = transcript.path.read_text()
    assert "\x1b" not in log and "\x07" not in log and "\r" not in log and "\u202e" not in log
    assert "alice \\x1b]0;pwned\\x07 ***\\r\n\\u202etxt\n" in log


def test_error_text_escapes_the_host_output_of_a_command_error():
    exc = CommandError("box", "apt-get install x", 100, "E: \x1b[2J\x1b]0;owned\x07broken\n")
    text = error_text(exc)
    assert "\x1b[2J" not in text and "\x07" not in text and "\x1b]" not in text
    assert "\\x1b[2J\\x1b]0;owned\\x07broken" in text
    hint = error_text(ProvisionError("box: PRETTY_NAME=\x1b[2JEvil OS is not supported", "x\r"))
    assert "\\x1b[2JEvil OS" in hint and "x\\r" in hint and "\r" not in hint


def test_status_table_escapes_gpu_and_process_names_and_stays_aligned():
    from provision.status import Gpu, GpuProcess, HostStatus, render

    gpu = Gpu(0, "RTX\x1b]0;t\x07\x1b[2J", 5.0, 100.0, 24564.0, 40.0, 50.0, 450.0, "GPU-1")
    proc = GpuProcess(0, 42, "eve", "py\u202enohtyp", 100.0)
    text = render([HostStatus("box", gpus=[gpu], processes=[proc], load=(0.1, 0.2, 0.3))])
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "RTX\\x1b]0;t\\x07\\x1b[2J" in text and "py\\u202enohtyp" in text
    header, row = text.splitlines()[:2]
    # Right-aligned UTIL column: widths were measured on the escaped text, so it lines up.
    assert header.index("UTIL") + len("UTIL") == row.index("5%") + len("5%")


def test_doctor_report_escapes_the_host_text_in_reasons_and_fixes():
    from provision.doctor import Finding, render

    text = render("box", [Finding("gpu", "warn", "GPU \x1b[2Jodd", "run \x1b]0;x\x07")])
    assert "\x1b[2J" not in text and "\x07" not in text and "\x1b]" not in text
    assert "GPU \\x1b[2Jodd" in text and "run \\x1b]0;x\\x07" in text


def test_verify_lines_and_junit_xml_escape_the_host_text(tmp_path):
    import xml.etree.ElementTree as ET

    from provision.verify import CheckResult, render_results, write_junit

    message = 'listening: 0.0.0.0:8000 users:(("\x1b]0;pw\x07\x1b[2J",pid=7,fd=3))'
    results = [CheckResult("box", "ssh", "nothing listens", "failed", message)]
    text = render_results(results)
    assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text
    assert '("\\x1b]0;pw\\x07\\x1b[2J",pid=7' in text
    write_junit(results, tmp_path / "junit.xml")
    # An XML parser (not ours) reads it: raw control characters would make it invalid XML.
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//failure")
    assert failure is not None and "\\x1b]0;pw\\x07" in failure.get("message")


def test_transcripts_of_two_runs_in_one_second_never_share_a_file(tmp_path):
    from provision.output import Transcript

    first = Transcript(tmp_path, "box", [])
    second = Transcript(tmp_path, "box", [])  # same host, same second, same process
    try:
        assert first.path != second.path
        first.write("one")
        second.write("two")
    finally:
        first.close()
        second.close()
    assert first.path.read_text() == "one\n" and second.path.read_text() == "two\n"
