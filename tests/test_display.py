"""The one rule for showing an event string to a person: control and bidi characters as escapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dropbox_team_log.display import visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;title\x07", "\\u001b]0;title\\u0007"),  # OSC retitle, BEL
        ("\x1b[2J\x1b[H", "\\u001b[2J\\u001b[H"),  # clear the screen
        ("a\r\nb\tc", "a\\u000d\\u000ab\\u0009c"),  # a forged row, a tab
        ("\x00\x7f\x85\x9b", "\\u0000\\u007f\\u0085\\u009b"),  # NUL, DEL, C1 NEL and CSI
        ("\u202egpj.exe", "\\u202egpj.exe"),  # right-to-left override
        ("\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"),
        ("\u2028\u2029", "\\u2028\\u2029"),  # line and paragraph separators
    ],
)
def test_steering_characters_become_escapes(raw, shown):
    assert visible(raw) == shown


def test_printable_text_is_left_alone():
    text = 'Zoë 名前 😀 <b>bold</b> & "quoted" \\u001b already-escaped'
    assert visible(text) == text
    assert visible(visible("\x1b[31m")) == visible("\x1b[31m")  # applying it twice changes nothing


def test_values_show_as_text():
    assert visible(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05+00:00"
    assert visible(42) == "42"
    assert visible(["\x1b"]) == "['\\x1b']"  # a list shows its repr, already escaped
