"""sync.expected_density: where a day's due events are expected, from the real dataset on disk."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.sync.engine import expected_density
from dropbox_team_log.timeutil import day_bounds, to_wire
from dropbox_team_log.transform.events import events_to_batch

DAY = date(2026, 1, 5)


def write_day(dataset: EventDataset, day: date, seconds: list[int], covered: tuple[int, int]):
    events = [{"timestamp": to_wire(s), "event_type": {".tag": "x"}} for s in seconds]
    batch = events_to_batch(events, team_id="dbtid:t", ingested_at=datetime.now(UTC))
    dataset.write_day(day, [covered], [batch], fetched_at=covered[1] + 3 * 86_400)


@pytest.fixture
def dataset(tmp_path) -> EventDataset:
    return EventDataset(str(tmp_path / "ds"))


def test_nothing_on_disk_means_no_expectation(dataset: EventDataset) -> None:
    lo, hi = day_bounds(DAY)
    assert expected_density(dataset, DAY, [(lo, hi)]) is None


def test_yesterday_moved_onto_today(dataset: EventDataset) -> None:
    ylo, yhi = day_bounds(DAY - timedelta(days=1))
    write_day(
        dataset, DAY - timedelta(days=1), [ylo + 9 * 3600 + i for i in range(3000)], (ylo, yhi)
    )
    lo, hi = day_bounds(DAY)
    profile = expected_density(dataset, DAY, [(lo, hi)])
    assert profile is not None
    assert profile.expected(lo, hi) == 3000
    assert profile.expected(lo + 9 * 3600, lo + 10 * 3600) == 3000  # the same office hour


def test_tomorrow_when_yesterday_is_missing_or_partial(dataset: EventDataset) -> None:
    ylo, _ = day_bounds(DAY - timedelta(days=1))
    write_day(dataset, DAY - timedelta(days=1), [ylo + 10], (ylo, ylo + 3600))  # 1 h covered
    tlo, thi = day_bounds(DAY + timedelta(days=1))
    write_day(dataset, DAY + timedelta(days=1), [tlo + 7200 + i for i in range(50)], (tlo, thi))
    lo, hi = day_bounds(DAY)
    profile = expected_density(dataset, DAY, [(lo, hi)])
    assert profile is not None and profile.expected(lo, hi) == 50


def test_a_refetch_expects_what_the_day_holds_and_neighbours_fill_the_rest(
    dataset: EventDataset,
) -> None:
    lo, hi = day_bounds(DAY)
    write_day(dataset, DAY, [lo + i for i in range(1200)], (lo, lo + 12 * 3600))
    assert expected_density(dataset, DAY, [(lo, hi)]) is None  # 12 h unknown: probe instead
    ylo, yhi = day_bounds(DAY - timedelta(days=1))
    write_day(
        dataset, DAY - timedelta(days=1), [ylo + 13 * 3600 + i for i in range(700)], (ylo, yhi)
    )
    write_day(dataset, DAY - timedelta(days=1), [ylo + i for i in range(9)], (ylo, ylo + 3600))
    profile = expected_density(dataset, DAY, [(lo, hi)])
    assert profile is not None
    assert profile.expected(lo, lo + 12 * 3600) == 1200  # own rows, not yesterday's 9
    assert profile.expected(lo + 12 * 3600, hi) == 700


def test_the_same_weekday_a_week_before_beats_yesterday(dataset: EventDataset) -> None:
    """A Monday is planned from last Monday's rows, not from Sunday's quiet ones."""
    assert DAY.weekday() == 0
    sunday, last_monday = DAY - timedelta(days=1), DAY - timedelta(days=7)
    slo, shi = day_bounds(sunday)
    write_day(dataset, sunday, [slo + 10 * 3600 + i for i in range(40)], (slo, shi))
    mlo, mhi = day_bounds(last_monday)
    write_day(dataset, last_monday, [mlo + 9 * 3600 + i for i in range(900)], (mlo, mhi))
    lo, hi = day_bounds(DAY)
    profile = expected_density(dataset, DAY, [(lo, hi)])
    assert profile is not None
    assert profile.expected(lo, hi) == 900
    assert profile.expected(lo + 9 * 3600, lo + 10 * 3600) == 900
