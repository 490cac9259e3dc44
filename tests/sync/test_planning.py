"""Planning rules: params -> ranges, day spans, the run's clock; and which spans the plan keeps
when a day file in the window is damaged."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.sync import engine
from dropbox_team_log.sync.planning import (
    ParamError,
    SyncPolicy,
    as_of_from_context,
    backfill_range,
    incremental_range,
    parse_instant,
    policy_from_params,
    split_days,
)
from dropbox_team_log.timeutil import DAY, day_start
from dropbox_team_log.transform.events import events_to_batch
from tests.helpers.damage import truncate

CONNECTED = int(datetime(2026, 11, 20, 10, 30, 15, tzinfo=UTC).timestamp())
LATER = CONNECTED + 3 * DAY


def test_default_backfill_is_60_days_before_connection():
    start, end = backfill_range({}, connected_at=CONNECTED, as_of=LATER)
    assert (start, end) == (CONNECTED - 60 * DAY, CONNECTED)


def test_backfill_days_param_and_explicit_range():
    assert (
        backfill_range({"days": 3}, connected_at=CONNECTED, as_of=LATER)[0] == CONNECTED - 3 * DAY
    )
    start, end = backfill_range(
        {"start": "2026-10-01", "end": "2026-10-03T12:00:00Z"}, connected_at=None, as_of=LATER
    )
    assert end - start == 2 * DAY + 12 * 3600


def test_backfill_end_is_clipped_to_the_run_time():
    _start, end = backfill_range(
        {"start": "2026-11-20", "end": "2026-12-30"}, connected_at=None, as_of=LATER
    )
    assert end == LATER


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"days": 0}, "days must be from 1 to 365"),
        ({"days": 366}, "days must be from 1 to 365"),
        ({"days": "ten"}, "whole number"),
        ({"days": True}, "whole number"),
        ({"start": "2026-10-05", "end": "2026-10-01"}, "must be after start"),
        ({"start": "2026-10-05"}, "give both start and end"),
        ({"start": "yesterday", "end": "2026-10-01"}, "is not a date or time"),
        ({"start": "2025-01-01", "end": "2026-10-01"}, "more than 365 days"),
    ],
)
def test_bad_backfill_params_say_what_to_fix(params, message):
    with pytest.raises(ParamError, match=message):
        backfill_range(params, connected_at=CONNECTED, as_of=LATER)


def test_backfill_without_connected_at_needs_an_explicit_range():
    with pytest.raises(ParamError, match="connected_at"):
        backfill_range({}, connected_at=None, as_of=LATER)


def test_split_days_cuts_at_utc_midnight_without_gap_or_overlap():
    lo, hi = CONNECTED - 2 * DAY, CONNECTED
    spans = split_days(lo, hi)
    assert [s.day for s in spans] == [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]
    assert spans[0].lo == lo and spans[-1].hi == hi
    assert all(a.hi == b.lo for a, b in itertools.pairwise(spans))
    assert spans[1].lo == day_start(date(2026, 11, 19)) and spans[1].hi - spans[1].lo == DAY


def test_incremental_starts_a_settle_window_before_the_connection():
    policy = SyncPolicy()
    lo, hi = incremental_range(connected_at=CONNECTED, as_of=CONNECTED + 3600, policy=policy)
    assert (lo, hi) == (CONNECTED - policy.settle_seconds, CONNECTED + 3600)
    lo, _ = incremental_range(connected_at=CONNECTED, as_of=CONNECTED + 30 * DAY, policy=policy)
    assert lo == CONNECTED + 30 * DAY - policy.catchup_seconds


def test_policy_params_are_validated():
    assert policy_from_params({}).settle_seconds == 25 * 3600
    assert policy_from_params({"refresh_hours": 0}).refresh_seconds is None
    with pytest.raises(ParamError, match="settle_hours must be at least 24"):
        policy_from_params({"settle_hours": 12})
    with pytest.raises(ParamError, match="number of hours"):
        policy_from_params({"refresh_hours": "often"})


def test_parse_instant_rejects_sub_second_times():
    assert parse_instant("2026-10-01T00:00:00Z", "start") == day_start(date(2026, 10, 1))
    with pytest.raises(ParamError, match="second granularity"):
        parse_instant("2026-10-01T00:00:00.5Z", "start")


def test_now_comes_from_the_run_never_the_wall_clock():
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert as_of_from_context({"data_interval_end": t, "logical_date": None}) == int(t.timestamp())
    assert as_of_from_context({"logical_date": t}) == int(t.timestamp())
    run = SimpleNamespace(run_after=t)
    assert as_of_from_context({"logical_date": None, "dag_run": run}) == int(t.timestamp())
    with pytest.raises(ParamError):
        as_of_from_context({})


# --- a damaged day file in the window ----------------------------------------------------------


def written_window(
    root: str, lo: int, hi: int, as_of: int, *, day_files: bool = False
) -> EventDataset:
    """Every day of [lo, hi) written as fetched at `as_of`: nothing due at `as_of`. In hour
    files (as the incremental runs leave days), or with `day_files` in one day file each (as a
    backfill at `as_of` writes settled days)."""
    ds = EventDataset(root, day_file_after=None if day_files else 10**9)
    for span in split_days(lo, hi):
        rows = events_to_batch([], team_id="dbtid:test", ingested_at=datetime.now(UTC))
        ds.write_day(span.day, [(span.lo, span.hi)], [rows], fetched_at=as_of)
    return ds


def planned(ds: EventDataset, lo: int, hi: int, as_of: int) -> dict[date, list]:
    """What the plan task keeps: the spans with ranges due (coverage read for every day)."""
    policy = SyncPolicy()
    due = {
        span.day: engine.due_ranges(ds, span, as_of=as_of, policy=policy)
        for span in split_days(lo, hi)
    }
    return {day: ranges for day, ranges in due.items() if ranges}


def test_a_truncated_hour_file_is_planned_again_and_nothing_else_is(tmp_path):
    """The plan reads every file's footer: a cut-short file fails nothing and its hour (only
    its hour) is due again."""
    as_of = LATER
    lo, hi = CONNECTED - 5 * DAY, CONNECTED
    ds = written_window(str(tmp_path / "events"), lo, hi, as_of)
    assert planned(ds, lo, hi, as_of) == {}
    middle = date(2026, 11, 17)
    truncate(ds.hour_path(middle, 5))
    hour_five = day_start(middle) + 5 * 3600
    assert planned(ds, lo, hi, as_of) == {middle: [(hour_five, hour_five + 3600)]}
    assert [q.day for q in ds.quarantined] == [middle]


def test_a_truncated_day_file_is_planned_again_whole_and_nothing_else_is(tmp_path):
    """A settled day's one file cut short: its whole day is due again, no other day."""
    as_of = LATER
    lo, hi = CONNECTED - 5 * DAY, CONNECTED
    ds = written_window(str(tmp_path / "events"), lo, hi, as_of, day_files=True)
    middle = date(2026, 11, 17)
    assert ds.file_paths(middle) == [ds.day_file_path(middle)]
    assert planned(ds, lo, hi, as_of) == {}
    truncate(ds.day_file_path(middle))
    start = day_start(middle)
    assert planned(ds, lo, hi, as_of) == {middle: [(start, start + DAY)]}
    assert [q.day for q in ds.quarantined] == [middle]


def test_an_hour_before_the_window_comes_back_once_its_file_was_moved_aside(tmp_path):
    """The window starts mid-day: a day with a file moved aside is planned from its midnight,
    not from the window's start, or an hour before the window would be lost for good."""
    as_of = LATER
    lo, hi = CONNECTED - 2 * DAY, CONNECTED  # starts at 10:30:15 on its first day
    first = split_days(lo, hi)[0]
    assert first.lo > day_start(first.day)
    ds = written_window(str(tmp_path / "events"), day_start(first.day), hi, as_of)
    truncate(ds.hour_path(first.day, 3))  # 03:00-04:00, before the window's 10:30:15
    hour_three = day_start(first.day) + 3 * 3600
    assert planned(ds, lo, hi, as_of) == {first.day: [(hour_three, hour_three + 3600)]}
