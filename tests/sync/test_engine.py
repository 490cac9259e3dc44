"""sync_day against the emulator: a day read by concurrent slices into a RowSpool stays exact.

Real HTTP, the real SDK and reader, the real dataset; cursor resets and expired cursors hit the
slices while they add their pages to the one spool, so each restart must discard what its own
slice delivered and nothing else. The result is compared with the emulator's ground truth as a
multiset (byte-identical duplicates counted).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from dropbox_team_log.client.reader import EventReader
from dropbox_team_log.client.wire import WireDataError
from dropbox_team_log.dataset.spool import RowSpool
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.errors import CursorRestartLimitError
from dropbox_team_log.sync import engine
from dropbox_team_log.sync.planning import DaySpan, SyncPolicy
from dropbox_team_log.timeutil import day_start
from tests.helpers.pipeline import grant_app, multiset, reader_at, utc

T = utc(2026, 11, 20, 12, 0, 0)
DAY = (T - timedelta(days=3)).date()  # settled: the truth no longer changes
LO = day_start(DAY)
HI = LO + 86_400
PAGE = 25  # many pages per slice: restarts land at every stage
RESTARTS = [
    {"kind": "cursor_reset", "every": 4, "count": 6},
    {"kind": "bad_cursor", "after": 9, "count": 2},
]


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=21,
        clock=T,
        events_per_day=750,
        page_size=PAGE,
        empty_page_rate=0.05,
        duplicate_rate=0.03,
        late_rate=0.2,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def refresh_token(emu) -> str:
    return grant_app(emu).refresh_token


def reader_for(emu, refresh_token: str, *, max_restarts: int = 10) -> EventReader:
    return reader_at(
        emu.base_url,
        page_limit=PAGE,
        max_restarts=max_restarts,
        oauth2_refresh_token=refresh_token,
        app_key=emu.config.app_key,
        app_secret=emu.config.app_secret,
    )


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[RowSpool]:
    """Every RowSpool sync_day opens (to check they were all closed). They spill from the first
    batch, as a big day's do: the test days would otherwise stay in memory and never open the
    temp file whose closing these tests check."""
    opened: list[RowSpool] = []

    class RecordedSpool(RowSpool):
        def __init__(self) -> None:
            super().__init__(memory_bytes=0)
            opened.append(self)

    monkeypatch.setattr(engine, "RowSpool", RecordedSpool)
    return opened


def files_open_in(folder: Path) -> list[str]:
    """This process's open files under `folder` (a nameless temp file shows as '#n (deleted)')."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def sync_the_day(emu, refresh_token: str, root: Path, concurrency: int, *, day=DAY, **options):
    lo = day_start(day)
    return engine.sync_day(
        reader=reader_for(emu, refresh_token, **options),
        dataset=EventDataset(str(root)),
        span=DaySpan(day, lo, lo + 86_400),
        as_of=int(T.timestamp()),
        policy=SyncPolicy(),
        team_id="dbtid:test",
        concurrency=concurrency,
    )


@pytest.mark.parametrize(
    ("concurrency", "yesterday_on_disk"),
    [(1, False), (4, False), (4, True)],
    ids=["one-reader", "probe-then-slices", "slices-planned-from-yesterday"],
)
def test_a_day_read_by_slices_into_a_spool_is_exact_under_cursor_restarts(
    emu, refresh_token, tmp_path, spool_dir, spools, concurrency, yesterday_on_disk
):
    root = tmp_path / "dataset"
    if yesterday_on_disk:
        sync_the_day(emu, refresh_token, root, concurrency, day=DAY - timedelta(days=1))
        spools.clear()
    truth = emu.truth(LO, HI, as_of=T)
    emu.set_faults(RESTARTS)
    try:
        report = sync_the_day(emu, refresh_token, root, concurrency)
    finally:
        emu.clear_faults()
    assert report.restarts > 0, "no cursor restart happened: the test proves nothing"
    table = EventDataset(str(root)).read_day(DAY)
    assert multiset(table.column("raw_event").to_pylist()) == multiset(truth)
    assert report.events == table.num_rows == report.rows_after == len(truth)
    seconds = table.column("timestamp").cast("int64")
    assert pc.all(pc.greater_equal(seconds[1:], seconds[:-1])).as_py()  # sorted
    assert len(spools) == 1 and spools[0].closed
    assert files_open_in(spool_dir) == []


def test_a_sync_that_fails_mid_fetch_closes_its_spool(
    emu, refresh_token, tmp_path, spool_dir, spools
):
    emu.set_faults([{"kind": "cursor_reset", "every": 1, "count": 1000}])
    try:
        with pytest.raises(CursorRestartLimitError):
            sync_the_day(emu, refresh_token, tmp_path / "dataset", 4, max_restarts=1)
    finally:
        emu.clear_faults()
    assert len(spools) == 1 and spools[0].closed
    assert files_open_in(spool_dir) == []
    assert EventDataset(str(tmp_path / "dataset")).days() == []


@pytest.mark.parametrize("concurrency", [1, 4], ids=["one-call", "slices"])
def test_a_malformed_event_fails_the_day_with_its_reason_and_writes_nothing(
    emu, refresh_token, tmp_path, spool_dir, spools, concurrency
):
    """The page worker's error reaches the task: slice threads stop, nothing is written."""
    day = DAY - timedelta(days=5 + concurrency)  # a day of its own: the emulator is shared
    lo = day_start(day)
    good = orjson.loads(emu.truth(lo, lo + 86_400, as_of=T)[0])
    broken = {key: value for key, value in good.items() if key != "event_type"}
    broken["timestamp"] = utc(day.year, day.month, day.day, 13).strftime("%Y-%m-%dT%H:%M:%SZ")
    emu.add_events([broken], visible_at=lo + 14 * 3600)
    with pytest.raises(WireDataError, match="event_type"):
        sync_the_day(emu, refresh_token, tmp_path / "dataset", concurrency, day=day)
    assert len(spools) == 1 and spools[0].closed
    assert files_open_in(spool_dir) == []
    assert EventDataset(str(tmp_path / "dataset")).days() == []
