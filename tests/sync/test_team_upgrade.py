"""Upgrading a single-team dataset to several teams, over real HTTP against one emulator serving
two teams: the default team keeps its unprefixed files (day files from before hour files
included, read and written as they are), the second team writes `<conn_id>.events-HH.parquet`
(or, for a day settled at its first write, `<conn_id>.events.parquet`) beside them in the same
day folders, and the readers' glob sees every row of both exactly once
(multisets against the emulator's truth, duplicates counted), also while both sync at once.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pyarrow as pa
import pytest

from dropbox_team_log import deployment
from dropbox_team_log.dataset.columns import epoch_seconds
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.settings import DAY_FILE_AFTER_HOURS
from dropbox_team_log.sync import engine
from dropbox_team_log.sync.planning import DaySpan, SyncPolicy
from dropbox_team_log.timeutil import day_start
from tests.helpers.dataset import read_dataset, write_day_file
from tests.helpers.pipeline import grant_app, multiset, reader_at, utc

T = utc(2026, 11, 20, 12, 0, 0)
DAYS = [(T - timedelta(days=n)).date() for n in (4, 3, 2)]  # settled: the truth is final
AS_OF = int(T.timestamp())
DEFAULT, SECOND = "dropbox_team_default", "team_b"


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=33,
        clock=T,
        teams=[{"events_per_day": 400}, {"events_per_day": 250}],
        page_size=50,
        duplicate_rate=0.03,
        late_rate=0.2,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def tokens(emu) -> list[str]:
    return [grant_app(emu, team).refresh_token for team in (0, 1)]


def sync(emu, token: str, dataset: EventDataset, team_id: str, day) -> engine.DaySyncReport:
    lo = day_start(day)
    reader = reader_at(
        emu.base_url,
        page_limit=50,
        oauth2_refresh_token=token,
        app_key=emu.config.app_key,
        app_secret=emu.config.app_secret,
    )
    return engine.sync_day(
        reader=reader,
        dataset=dataset,
        span=DaySpan(day, lo, lo + 86_400),
        as_of=AS_OF,
        policy=SyncPolicy(),
        team_id=team_id,
    )


def truth(emu, team_id: str, lo: int, hi: int):
    return multiset(emu.truth(lo, hi, as_of=AS_OF, team=team_id))


def test_a_single_team_dataset_takes_a_second_team_with_nothing_moved_lost_or_doubled(
    emu, tokens, tmp_path
):
    ids = [t["team_id"] for t in emu.teams()]
    root = str(tmp_path / "dataset")
    # The layout before hour files: one events.parquet per day, the last day half-covered.
    scratch = EventDataset(str(tmp_path / "scratch"))
    before = EventDataset(root)
    for day in DAYS:
        sync(emu, tokens[0], scratch, ids[0], day)
        lo = day_start(day)
        hi = lo + 86_400 if day != DAYS[-1] else lo + 12 * 3600
        rows = scratch.read_day(day)
        seconds = epoch_seconds(rows.column("timestamp"))
        kept = rows.filter(pa.array((seconds >= lo) & (seconds < hi)))
        write_day_file(before, day, [(lo, hi)], kept.to_batches(), fetched_at=AS_OF)
    old = {day: os.stat(before.day_file_path(day)) for day in DAYS}

    # The upgrade: the default connection keeps key None (unprefixed), the second is keyed.
    keys = [deployment.team_key(c, DEFAULT) for c in (DEFAULT, SECOND)]
    assert keys == [None, SECOND]
    mine, theirs = EventDataset(root, team=keys[0]), EventDataset(root, team=keys[1])
    assert mine.days() == DAYS and theirs.days() == []  # the old files are the default team's

    # Both teams sync the same days at once (threads: one lock file per team and day).
    errors: list[BaseException] = []

    def run(token, dataset, team_id):
        try:
            for day in DAYS:
                sync(emu, token, dataset, team_id, day)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(tokens[0], mine, ids[0])),
        threading.Thread(target=run, args=(tokens[1], theirs, ids[1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    for day in DAYS:
        names = sorted(os.listdir(mine.day_dir(day)))
        assert "events.parquet" in names  # the default team's day stays one day file
        assert not [n for n in names if n.startswith("events-")]
        # the second team's first write: one day file if the day had settled, else hour files
        settled = day_start(day) + 86_400 + DAY_FILE_AFTER_HOURS * 3600 <= AS_OF
        hours = [f"{SECOND}.events-{h:02d}.parquet" for h in range(24)]
        whole = [f"{SECOND}.events.parquet"]
        assert [n for n in names if n != "events.parquet"] == (whole if settled else hours)
        assert mine.is_day_file(day) and theirs.is_day_file(day) == settled
        assert mine.file_paths(day) == [mine.day_file_path(day)]
        assert all(p.rsplit("/", 1)[1].startswith(f"{SECOND}.") for p in theirs.file_paths(day))
    for day in DAYS[:-1]:  # settled and whole: nothing was due, not one byte rewritten
        assert os.stat(mine.day_file_path(day)).st_mtime_ns == old[day].st_mtime_ns
    assert os.stat(mine.day_file_path(DAYS[-1])).st_mtime_ns != old[DAYS[-1]].st_mtime_ns
    assert [theirs.is_day_file(day) for day in DAYS] == [True, True, False]  # both kinds seen
    # one lock per team and day written (the default team's: only the day it had to write)
    assert sorted(os.listdir(os.path.join(root, "_locks"))) == sorted(
        [f"event_date={DAYS[-1]}.lock"] + [f"event_date={d}.{SECOND}.lock" for d in DAYS]
    )

    # What every reader of the glob sees: each team's truth once, nothing else.
    lo, hi = day_start(DAYS[0]), day_start(DAYS[-1]) + 86_400
    rows = read_dataset(root)
    got = multiset(rows.column("raw_event").to_pylist())
    want = truth(emu, ids[0], lo, hi) + truth(emu, ids[1], lo, hi)
    assert sum(want.values()) > 1000 and got == want
    for key, team_id in zip(keys, ids, strict=True):
        dataset = EventDataset(root, team=key)
        own = multiset(r for d in DAYS for r in dataset.read_day(d).column("raw_event").to_pylist())
        assert own == truth(emu, team_id, lo, hi)
        assert {t for d in DAYS for t in dataset.read_day(d).column("team_id").to_pylist()} == {
            team_id
        }

    # Re-runs change nothing for either team.
    for token, dataset, team_id in ((tokens[0], mine, ids[0]), (tokens[1], theirs, ids[1])):
        for day in DAYS:
            assert sync(emu, token, dataset, team_id, day).ranges == []
    assert multiset(read_dataset(root).column("raw_event").to_pylist()) == want
