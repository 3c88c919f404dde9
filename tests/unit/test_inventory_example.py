"""The example inventory.ini at the root: every commented `STEP.FIELD=value` line in it is a
setting provision accepts as written (each one alone, through the same code that reads a
`--set`), so a reader who uncomments one line gets no error from it."""

import re
from pathlib import Path

import pytest

from provision import config

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.ini"
LINE_RE = re.compile(r"^# ([a-z_]+\.[a-z_0-9]+)=(\S*)")


def example_settings() -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), 1):
        m = LINE_RE.match(line)
        if m:
            found.append((number, f"{m[1]}={m[2]}"))
    return found


def test_the_example_has_settings_to_check():
    assert len(example_settings()) > 20


@pytest.mark.parametrize("number, assignment", example_settings(), ids=lambda x: str(x))
def test_each_example_setting_is_accepted(number, assignment):
    key, text = assignment.split("=", 1)
    settings, sources = config.build_settings([config.parse_set([assignment])])
    # taken from the line, not dropped or defaulted: the source names it and, where the
    # value is a plain word or number, the setting holds what the line wrote
    assert sources[key] == f"--set {key}"
    step, field = key.split(".")
    value = getattr(settings[step], field)
    if type(value) in (str, int):
        assert str(value) == text
