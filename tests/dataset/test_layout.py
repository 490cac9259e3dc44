"""dataset.layout: the names of day folders and hour files, parsed back, and ranges cut by hour."""

from __future__ import annotations

import fnmatch
from datetime import date

import pytest

from dropbox_team_log.dataset import layout
from dropbox_team_log.dataset.layout import DayFile
from dropbox_team_log.schema import DAY_FILES_GLOB
from dropbox_team_log.timeutil import HOUR, day_bounds

DAY = date(2026, 3, 29)
LO, HI = day_bounds(DAY)


def test_every_name_round_trips_and_matches_the_readers_glob():
    files = [DayFile(DAY, None), *(DayFile(DAY, hour) for hour in layout.HOURS)]
    for file in files:
        path = f"s3://bucket/root/{layout.day_folder(DAY)}/{file.name}"
        assert layout.parse_path(path) == file
        assert fnmatch.fnmatch(path.split("/", 4)[-1], DAY_FILES_GLOB)
    assert [f.name for f in files[:3]] == [
        "events.parquet",
        "events-00.parquet",
        "events-01.parquet",
    ]
    assert files[-1].name == "events-23.parquet"
    assert (
        sorted(reversed(files), key=lambda f: f.sort_key) == files
    )  # the legacy file first, then hours ascending
    hour_names = [f.name for f in files[1:]]
    assert fnmatch.filter([*hour_names, "events.parquet"], layout.HOUR_FILES_PATTERN) == hour_names


@pytest.mark.parametrize(
    "path",
    [
        "root/event_date=2026-03-29/events-24.parquet",
        "root/event_date=2026-03-29/events-7.parquet",
        "root/event_date=2026-03-29/events-07.parquet.tmp",
        "root/event_date=2026-03-29/.events-07.parquet.ab12.tmp",
        "root/event_date=2026-03-29/extra.parquet",
        "root/event_date=2026-02-30/events-07.parquet",
        "root/event_date=20260329/events-07.parquet",
        "root/_quarantine/events-07.parquet",
        "events-07.parquet",
    ],
)
def test_other_paths_are_not_files_of_the_layout(path):
    assert layout.parse_path(path) is None


def test_bounds_are_the_hour_or_the_whole_day():
    assert DayFile(DAY, 0).bounds == (LO, LO + HOUR)
    assert DayFile(DAY, 23).bounds == (HI - HOUR, HI)
    assert DayFile(DAY, None).bounds == (LO, HI)
    assert layout.hour_of(DAY, LO) == 0 and layout.hour_of(DAY, HI - 1) == 23
    for bad in (LO - 1, HI):
        with pytest.raises(ValueError, match="not inside"):
            layout.hour_of(DAY, bad)
    with pytest.raises(ValueError, match=r"0\.\.23"):
        layout.hour_file_name(24)


def test_ranges_are_cut_at_hour_boundaries_and_nothing_is_lost():
    ranges = [(LO + 10, LO + 20), (LO + HOUR - 5, LO + 3 * HOUR + 7), (HI - 1, HI)]
    split = layout.split_by_hour(DAY, ranges)
    assert split == {
        0: [(LO + 10, LO + 20), (LO + HOUR - 5, LO + HOUR)],
        1: [(LO + HOUR, LO + 2 * HOUR)],
        2: [(LO + 2 * HOUR, LO + 3 * HOUR)],
        3: [(LO + 3 * HOUR, LO + 3 * HOUR + 7)],
        23: [(HI - 1, HI)],
    }
    seconds = {t for s, e in ranges for t in range(s, e)}
    assert {t for pieces in split.values() for s, e in pieces for t in range(s, e)} == seconds
    for hour, pieces in split.items():
        lo, hi = layout.hour_bounds(DAY, hour)
        assert all(lo <= s < e <= hi for s, e in pieces)
    assert layout.split_by_hour(DAY, []) == {}


def test_a_team_s_files_carry_its_key_and_parse_back_from_the_right():
    for key in ("team_b", "acme.eu-1", "events", "a.events-01", "x" * 200):
        files = [DayFile(DAY, None, key), *(DayFile(DAY, hour, key) for hour in (0, 7, 23))]
        for file in files:
            assert file.name.startswith(f"{key}.events")
            path = f"root/{layout.day_folder(DAY)}/{file.name}"
            assert layout.parse_path(path) == file
            assert fnmatch.fnmatch(path.split("/", 1)[1], DAY_FILES_GLOB)  # readers see it
    assert DayFile(DAY, 7, "team_b").name == "team_b.events-07.parquet"
    assert DayFile(DAY, 7).name == "events-07.parquet"  # the default team: as before
    assert layout.parse_file_name("events-07.parquet") == (None, 7)
    assert layout.parse_file_name("a.events-01.events-02.parquet") == ("a.events-01", 2)
    assert layout.lock_name(DAY, None) == "event_date=2026-03-29.lock"
    assert layout.lock_name(DAY, "team_b") == "event_date=2026-03-29.team_b.lock"


@pytest.mark.parametrize(
    "key", ["", ".hidden", "-dash", "a/b", "../up", "a b", "caf\u00e9", "x" * 201, "a*", "[a]"]
)
def test_a_key_that_cannot_name_files_is_refused_with_what_is_allowed(key):
    with pytest.raises(layout.TeamKeyError, match="letters, digits"):
        layout.check_team_key(key)
    with pytest.raises(layout.TeamKeyError):
        _ = DayFile(DAY, 3, key).name
    name = f"{key}.events-03.parquet"
    assert layout.parse_file_name(name) is None  # never read as a team's file
