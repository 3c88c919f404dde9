"""Durations in words: the examples are the wording the messages promise ("3d 4h 5min",
"7min 3s", "42s"), written out by hand."""

from __future__ import annotations

import pytest

from provision.durations import human_duration


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0s"),
        (42, "42s"),
        (7 * 60 + 3, "7min 3s"),
        (3600, "1h"),
        (86400, "1d"),
        (3 * 86400 + 4 * 3600 + 5 * 60 + 9, "3d 4h 5min"),  # three units at most
        (-90, "1min 30s"),  # behind or ahead: the caller says which
    ],
)
def test_human_duration(seconds, words):
    assert human_duration(seconds) == words
