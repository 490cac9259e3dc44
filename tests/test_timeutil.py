"""The wire time format: strict parsing, exact formatting; UTC day bounds."""

from __future__ import annotations

import calendar
import random
from datetime import UTC, date, datetime

import pytest

from dropbox_team_log.timeutil import DAY, day_bounds, day_of, day_start, from_wire, to_wire


def test_from_wire_matches_calendar_over_random_instants():
    rng = random.Random(7)
    for _ in range(5000):
        epoch = rng.randrange(0, 4_102_444_800)  # 1970 .. 2100
        text = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert from_wire(text) == epoch
        assert to_wire(epoch) == text
    assert from_wire("2024-02-29T23:59:59Z") == calendar.timegm((2024, 2, 29, 23, 59, 59))


NOT_WIRE_TIMESTAMPS = [
    "",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00z",
    "2026-01-01t00:00:00Z",
    "2026-1-01T00:00:00Z ",
    "+026-01-01T00:00:00Z",
    "2026-01-01T0 :00:00Z",
    "2026-01-01T00:00:60Z",
    "2025-02-29T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00+00:00",
    "2026-01-01T00:00:00.0Z",
    "2026-01-01T00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-01-00T00:00:00Z",
    "2026-01-01T23:59:59ZZ",
    "\uff12026-01-01T00:00:00Z",
    "2026-01-01T00:00:0\u0661Z",  # an Arabic-Indic digit
]


@pytest.mark.parametrize("text", NOT_WIRE_TIMESTAMPS)
def test_from_wire_is_strict(text):
    with pytest.raises(ValueError):
        from_wire(text)


def test_day_bounds_are_the_utc_midnights():
    day = date(2024, 2, 29)
    start, end = day_bounds(day)
    assert start == day_start(day) == calendar.timegm((2024, 2, 29, 0, 0, 0))
    assert end - start == DAY
    assert day_of(start) == day_of(end - 1) == day and day_of(end) == date(2024, 3, 1)
