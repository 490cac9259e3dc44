"""dataset: replace/merge semantics against a model, atomicity, locking, and what readers see."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dropbox_team_log.dataset import integrity, merge
from dropbox_team_log.dataset.day_files import MixedLayoutError
from dropbox_team_log.dataset.file_format import COVERAGE_KEY, VERSION_KEY
from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.spool import SPOOL_CACHE_BATCHES, NewRows, RowSpool
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.errors import DamagedDayFileError, PermanentError
from dropbox_team_log.schema import DAY_FILES_GLOB, EVENT_SCHEMA
from dropbox_team_log.settings import DAY_FILE_AFTER_HOURS, QUARANTINE_DIR
from dropbox_team_log.timeutil import day_bounds, to_wire
from dropbox_team_log.transform.events import events_to_batch
from tests.helpers.damage import flip_inside_page, truncate
from tests.helpers.dataset import read_dataset, write_day_file
from tests.helpers.paths import REPO, SPEC_EVENTS

FIXTURE = SPEC_EVENTS
TEMPLATES = [orjson.loads(line) for line in FIXTURE.read_bytes().splitlines()]
DAY = date(2026, 1, 1)
LO, HI = day_bounds(DAY)
H = 3600
TEAM = "dbtid:test"


def make_batch(seconds: list[int], tag: str) -> pa.RecordBatch:
    """Fixture events moved to the given seconds; `tag#i` in the description identifies each."""
    events = []
    for i, second in enumerate(seconds):
        event = dict(TEMPLATES[i % len(TEMPLATES)])
        event["timestamp"] = to_wire(second)
        event["event_type"] = {**event["event_type"], "description": f"{tag}#{i}"}
        events.append(event)
    return events_to_batch(events, team_id=TEAM, ingested_at=datetime.now(UTC))


def ids(table: pa.Table) -> list[str]:
    return table.column("event_type_description").to_pylist()


def seconds_of(table: pa.Table) -> list[int]:
    return table.column("timestamp").cast(pa.int64()).to_pylist()


@pytest.fixture
def ds(tmp_path: Path) -> EventDataset:
    return EventDataset(str(tmp_path / "events"))


# --- basic write/read -----------------------------------------------------------------------


def test_first_write_stores_sorted_rows_with_coverage_and_zstd(ds: EventDataset):
    seconds = [LO + 50, LO + 10, LO + 30, LO + 10, LO + 20]
    result = ds.write_day(DAY, [(LO, LO + H)], [make_batch(seconds, "a")], fetched_at=HI + 5)
    assert result == merge.WriteResult(
        0,
        5,
        0,
        5,
        ((LO, LO + H),),
        Coverage(((LO, LO + H, HI + 5),)),
        files_written=1,
        rows_written=5,
    )
    table = ds.read_day(DAY)
    assert table.schema == EVENT_SCHEMA
    assert seconds_of(table) == sorted(seconds)
    assert ids(table) == ["a#1", "a#3", "a#4", "a#2", "a#0"]  # stable: a#1 before a#3
    assert ds.read_coverage(DAY) == Coverage(((LO, LO + H, HI + 5),))
    assert ds.days() == [DAY]
    meta = pq.read_metadata(ds.hour_path(DAY, 0))
    assert meta.metadata[COVERAGE_KEY] == f"[[{LO},{LO + H},{HI + 5}]]".encode()
    assert meta.metadata[VERSION_KEY] == b"1"
    for rg in range(meta.num_row_groups):
        for col in range(meta.num_columns):
            assert meta.row_group(rg).column(col).compression == "ZSTD"


def test_permissions_keep_personal_data_private(ds: EventDataset):
    ds.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1], "a")], fetched_at=HI)
    umask = os.umask(0)
    os.umask(umask)
    for path, mode in [
        (ds.root, 0o750),
        (ds.day_dir(DAY), 0o750),
        (ds.hour_path(DAY, 0), 0o640),
        (f"{ds.root}/_locks", 0o750),
    ]:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode & ~umask, path


def test_missing_day_reads_empty(ds: EventDataset):
    assert ds.read_coverage(DAY) == Coverage()
    assert ds.read_day(DAY).num_rows == 0
    assert ds.read_day(DAY).schema == EVENT_SCHEMA
    assert ds.days() == []
    assert read_dataset(ds.root).num_rows == 0


def test_empty_day_writes_a_zero_row_file_with_coverage(ds: EventDataset):
    result = ds.write_day(DAY, [(LO, HI)], [], fetched_at=HI + 30 * H)
    assert (result.rows_before, result.rows_after, result.rows_added) == (0, 0, 0)
    assert os.path.exists(ds.hour_path(DAY, 0))
    assert pq.read_metadata(ds.hour_path(DAY, 0)).num_rows == 0
    assert ds.read_coverage(DAY).is_settled(LO, HI, settle=25 * H)
    assert ds.days() == [DAY]
    assert ds.read_day(DAY).num_rows == 0
    other = date(2026, 1, 2)
    lo2, _ = day_bounds(other)
    ds.write_day(other, [(lo2, lo2 + 10)], [make_batch([lo2 + 1], "b")], fetched_at=HI + 30 * H)
    both = read_dataset(ds.root)
    assert both.num_rows == 1
    assert both.column("event_date").to_pylist() == [other]


def test_identical_events_are_all_kept(ds: EventDataset):
    event = TEMPLATES[0] | {"timestamp": to_wire(LO + 5)}
    batch = events_to_batch([event, event, event], team_id=TEAM, ingested_at=datetime.now(UTC))
    ds.write_day(DAY, [(LO, LO + 10)], [batch], fetched_at=HI)
    assert ds.read_day(DAY).num_rows == 3


# --- replace / merge semantics --------------------------------------------------------------


def test_refetch_replaces_only_its_range(ds: EventDataset):
    first = make_batch([LO + 1 * H, LO + 2 * H, LO + 3 * H, LO + 4 * H], "old")
    ds.write_day(DAY, [(LO, LO + 5 * H)], [first], fetched_at=LO + 5 * H)
    late = make_batch([LO + 2 * H, LO + 2 * H + 1, LO + 3 * H - 1], "new")  # one late event
    result = ds.write_day(DAY, [(LO + 2 * H, LO + 3 * H)], [late], fetched_at=LO + 30 * H)
    # counts are of the files the write rewrote: hour 2's only
    assert (result.rows_before, result.rows_replaced, result.rows_added) == (1, 1, 3)
    assert (result.rows_after, result.files_written) == (3, 1)
    assert ids(ds.read_day(DAY)) == ["old#0", "new#0", "new#1", "new#2", "old#2", "old#3"]
    assert ds.read_coverage(DAY).intervals == (
        (LO, LO + 2 * H, LO + 5 * H),
        (LO + 2 * H, LO + 3 * H, LO + 30 * H),
        (LO + 3 * H, LO + 5 * H, LO + 5 * H),
    )


def test_an_empty_answer_deletes_the_rows_of_its_range(ds: EventDataset):
    ds.write_day(DAY, [(LO, LO + H)], [make_batch([LO + 5, LO + 6], "a")], fetched_at=LO + H)
    result = ds.write_day(DAY, [(LO, LO + H)], [], fetched_at=LO + 2 * H)
    assert (result.rows_replaced, result.rows_after) == (2, 0)
    assert ds.read_day(DAY).num_rows == 0


def test_older_fetch_never_overwrites_newer(ds: EventDataset):
    ds.write_day(DAY, [(LO + H, LO + 2 * H)], [make_batch([LO + H + 1], "newer")], fetched_at=HI)
    older = make_batch([LO + 5, LO + H + 1, LO + H + 2, LO + 2 * H + 5], "older")
    result = ds.write_day(DAY, [(LO, LO + 3 * H)], [older], fetched_at=LO + 3 * H)
    assert result.taken_ranges == ((LO, LO + H), (LO + 2 * H, LO + 3 * H))
    assert ids(ds.read_day(DAY)) == ["older#0", "newer#0", "older#3"]
    assert (result.rows_replaced, result.rows_added) == (0, 2)


def test_replay_that_takes_nothing_leaves_the_file_alone(ds: EventDataset):
    ds.write_day(DAY, [(LO, LO + H)], [make_batch([LO + 1], "a")], fetched_at=HI)
    before = os.stat(ds.hour_path(DAY, 0))
    result = ds.write_day(DAY, [(LO, LO + H)], [make_batch([LO + 2], "b")], fetched_at=HI - 1)
    assert result.taken_ranges == ()
    assert (result.rows_before, result.rows_after) == (1, 1)
    after = os.stat(ds.hour_path(DAY, 0))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_retry_with_same_fetched_at_is_idempotent(ds: EventDataset):
    batch = make_batch([LO + 1, LO + 2], "a")
    ds.write_day(DAY, [(LO, LO + H)], [batch], fetched_at=HI)
    result = ds.write_day(DAY, [(LO, LO + H)], [batch], fetched_at=HI)
    assert (result.rows_replaced, result.rows_added, result.rows_after) == (2, 2, 2)
    assert ids(ds.read_day(DAY)) == ["a#0", "a#1"]


@pytest.mark.parametrize(
    ("fetched", "seconds", "fetched_at", "needle"),
    [
        ([(LO, LO + H)], [LO + H], HI, "outside every fetched range"),
        ([(LO, LO + H)], [LO - 1], HI, "outside every fetched range"),
        ([(LO - 1, LO + H)], [LO], HI, "not inside"),
        ([(LO, HI + 1)], [LO], HI + 5, "not inside"),
        ([(LO, LO + H)], [LO], LO + H - 1, "ends after fetched_at"),
    ],
)
def test_caller_bugs_are_refused_and_change_nothing(ds, fetched, seconds, fetched_at, needle):
    ds.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1], "keep")], fetched_at=LO + 10)
    with pytest.raises(ValueError, match=needle):
        ds.write_day(DAY, fetched, [make_batch(seconds, "bad")], fetched_at=fetched_at)
    assert ids(ds.read_day(DAY)) == ["keep#0"]
    assert ds.read_coverage(DAY) == Coverage(((LO, LO + 10, LO + 10),))


def test_batches_with_another_schema_are_refused(ds: EventDataset):
    batch = make_batch([LO + 1], "a").drop_columns(["raw_event"])
    with pytest.raises(ValueError, match="schema"):
        ds.write_day(DAY, [(LO, LO + 10)], [batch], fetched_at=HI)


def test_foreign_file_is_refused(ds: EventDataset):
    os.makedirs(ds.day_dir(DAY))
    pq.write_table(pa.table({"x": [1]}), ds.hour_path(DAY, 0))
    with pytest.raises(ValueError, match="coverage"):
        ds.read_coverage(DAY)
    assert os.path.exists(ds.hour_path(DAY, 0)) and ds.quarantined == []  # refused, not moved


def test_row_groups_are_bounded(ds: EventDataset, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 10)
    ds.write_day(DAY, [(LO, LO + H)], [make_batch(list(range(LO, LO + 35)), "a")], fetched_at=HI)
    meta = pq.read_metadata(ds.hour_path(DAY, 0))
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10, 10, 10, 5]


def test_random_writes_match_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Many writes with random ranges, fetch times and rows: the file is always the model.

    A tiny row group size makes every merge stream through many row groups and pieces.
    """
    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 7)
    rng = random.Random(42)
    axis = 300  # seconds of the day used
    for case in range(12):
        ds = EventDataset(str(tmp_path / f"case{case}"))
        model: dict[int, tuple[int, list[str]]] = {}  # second -> (fetched_at, row ids in order)
        for write in range(8):
            ranges = []
            for _ in range(rng.randint(1, 3)):
                s = LO + rng.randrange(axis)
                ranges.append((s, min(LO + axis, s + rng.randint(1, 120))))
            fetched_at = LO + axis + rng.randint(0, 10)
            covered = sorted({t for s, e in ranges for t in range(s, e)})
            seconds = [rng.choice(covered) for _ in range(rng.randint(0, 60))]
            tag = f"w{write}"
            batches = [make_batch(seconds, tag)]
            result = ds.write_day(DAY, ranges, batches, fetched_at=fetched_at)
            rows_per_second: dict[int, list[str]] = {}
            for i, second in enumerate(seconds):
                rows_per_second.setdefault(second, []).append(f"{tag}#{i}")
            for t in covered:
                if t not in model or model[t][0] <= fetched_at:
                    model[t] = (fetched_at, rows_per_second.get(t, []))
            expected = [row for t in sorted(model) for row in model[t][1]]
            table = ds.read_day(DAY)
            assert ids(table) == expected, (case, write)
            assert seconds_of(table) == sorted(seconds_of(table))
            assert result.rows_after == len(expected)
            coverage = ds.read_coverage(DAY)
            assert {t: f for s, e, f in coverage.intervals for t in range(s, e)} == {
                t: f for t, (f, _) in model.items()
            }


# --- stale temp files, concurrency, crashes -------------------------------------------------


def visible_files(root: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).glob(DAY_FILES_GLOB))


def temp_files(ds: EventDataset) -> list[str]:
    return sorted(p.name for p in Path(ds.day_dir(DAY)).glob(".events-*.parquet.*.tmp"))


def test_stale_temp_files_are_removed_on_next_write(ds: EventDataset):
    ds.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1], "a")], fetched_at=HI)
    stale = Path(ds.day_dir(DAY)) / ".events-00.parquet.deadbeef.tmp"
    stale.write_bytes(b"PAR1 half a file")
    assert visible_files(ds.root) == ["event_date=2026-01-01/events-00.parquet"]
    assert read_dataset(ds.root).num_rows == 1  # readers do not see the temp file
    ds.write_day(DAY, [(LO + 20, LO + 30)], [make_batch([LO + 21], "b")], fetched_at=HI)
    assert not stale.exists()
    assert ids(ds.read_day(DAY)) == ["a#0", "b#0"]


def test_error_mid_write_keeps_the_old_file_and_releases_the_lock(
    ds: EventDataset, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 3)
    ds.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1, LO + 2], "old")], fetched_at=HI)
    original = merge._merge

    def failing_merge(*args, **kwargs):
        for i, piece in enumerate(original(*args, **kwargs)):
            if i == 2:
                raise OSError("disk full")
            yield piece

    monkeypatch.setattr(merge, "_merge", failing_merge)
    with pytest.raises(OSError, match="disk full"):
        ds.write_day(
            DAY,
            [(LO + 20, LO + 40)],
            [make_batch(list(range(LO + 20, LO + 40)), "x")],
            fetched_at=HI,
        )
    assert ids(ds.read_day(DAY)) == ["old#0", "old#1"]
    assert temp_files(ds) == []
    monkeypatch.setattr(merge, "_merge", original)
    ds.write_day(DAY, [(LO + 20, LO + 30)], [make_batch([LO + 21], "b")], fetched_at=HI)
    assert ids(ds.read_day(DAY)) == ["old#0", "old#1", "b#0"]


def test_writer_waits_for_the_day_lock(ds: EventDataset):
    ds.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1], "a")], fetched_at=HI)
    done = threading.Event()

    def write() -> None:
        ds.write_day(DAY, [(LO + 20, LO + 30)], [make_batch([LO + 21], "b")], fetched_at=HI)
        done.set()

    with ds.lock(DAY):
        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.3)  # blocked while we hold the lock
        assert ids(ds.read_day(DAY)) == ["a#0"]
    thread.join(10)
    assert done.is_set()
    assert ids(ds.read_day(DAY)) == ["a#0", "b#0"]


def test_concurrent_thread_writers_keep_both_ranges_exactly_once(ds: EventDataset):
    for round_ in range(5):
        start = threading.Barrier(2)
        errors: list[BaseException] = []
        lo = LO + round_ * 1000

        def write(
            offset: int,
            tag: str,
            lo: int = lo,
            start: threading.Barrier = start,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                batch = make_batch([lo + offset + i for i in range(200)], tag)
                start.wait()
                ds.write_day(DAY, [(lo + offset, lo + offset + 200)], [batch], fetched_at=HI)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=write, args=(0, f"r{round_}a")),
            threading.Thread(target=write, args=(500, f"r{round_}b")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
    table = ds.read_day(DAY)
    assert table.num_rows == 5 * 400
    assert len(set(ids(table))) == 5 * 400


CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import date
    import pyarrow.parquet as pq
    from tests.dataset import test_store as t
    from dropbox_team_log.dataset import merge
    from dropbox_team_log.dataset.store import EventDataset

    mode, start, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    merge.ROW_GROUP_ROWS = 5
    original = pq.ParquetWriter.write_table

    def write_table(self, *args, **kwargs):
        original(self, *args, **kwargs)
        print("WROTE", flush=True)
        time.sleep(60 if mode == "hang" else 0.05)

    pq.ParquetWriter.write_table = write_table
    ds = EventDataset({root!r})
    batch = t.make_batch(list(range(start, start + 40)), tag)
    print("READY", flush=True)
    ds.write_day(t.DAY, [(start, start + 40)], [batch], fetched_at=t.HI)
    print("DONE", flush=True)
    """
)


def spawn(ds: EventDataset, mode: str, start: int, tag: str) -> subprocess.Popen:
    code = CHILD.format(root=ds.root)
    return subprocess.Popen(
        [sys.executable, "-c", code, mode, str(start), tag],
        cwd=REPO,  # `python -c` imports from its working directory: the tests package
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdout is not None
    for got in proc.stdout:
        if got.strip() == line:
            return
    raise AssertionError(f"child ended before printing {line}")


def test_concurrent_process_writers_keep_both_ranges_exactly_once(ds: EventDataset):
    procs = [spawn(ds, "slow", LO + 100, "p1"), spawn(ds, "slow", LO + 1000, "p2")]
    for proc in procs:
        wait_for(proc, "DONE")
        assert proc.wait(30) == 0
    table = ds.read_day(DAY)
    assert sorted(ids(table)) == sorted(
        [f"p1#{i}" for i in range(40)] + [f"p2#{i}" for i in range(40)]
    )
    assert ds.read_coverage(DAY).intervals == ((LO + 100, LO + 140, HI), (LO + 1000, LO + 1040, HI))


def test_writer_killed_mid_write_leaves_old_day_readable(ds: EventDataset):
    ds.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1, LO + 2], "old")], fetched_at=HI)
    proc = spawn(ds, "hang", LO + 100, "killed")
    try:
        wait_for(proc, "WROTE")  # a row group is in the temp file; the child now sleeps
        assert len(temp_files(ds)) == 1
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert visible_files(ds.root) == ["event_date=2026-01-01/events-00.parquet"]
    assert ids(ds.read_day(DAY)) == ["old#0", "old#1"]
    assert ids(read_dataset(ds.root)) == ["old#0", "old#1"]
    assert ds.read_coverage(DAY) == Coverage(((LO, LO + 10, HI),))
    # the lock died with the writer; the next write cleans up after it
    started = time.monotonic()
    ds.write_day(DAY, [(LO + 100, LO + 110)], [make_batch([LO + 101], "next")], fetched_at=HI)
    assert time.monotonic() - started < 5
    assert temp_files(ds) == []
    assert ids(ds.read_day(DAY)) == ["old#0", "old#1", "next#0"]


# --- readers --------------------------------------------------------------------------------


def test_duckdb_reads_the_dataset_with_event_date_partition(ds: EventDataset):
    days = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 2, 28)]
    for i, day in enumerate(days):
        lo, hi = day_bounds(day)
        ds.write_day(day, [(lo, hi)], [make_batch([lo + 5, lo + 7 + i], f"d{i}")], fetched_at=hi)
    table = read_dataset(ds.root)
    assert table.schema.field("event_date").type == pa.date32()
    assert table.num_rows == 6
    assert sorted(zip(table.column("event_date").to_pylist(), ids(table), strict=True)) == [
        (day, f"d{i}#{j}") for i, day in enumerate(days) for j in range(2)
    ]
    ts_type = table.schema.field("timestamp").type
    assert pa.types.is_timestamp(ts_type)
    assert ts_type.tz in {"UTC", "Etc/UTC"}
    assert sorted(table.column("timestamp").cast(pa.int64()).to_pylist()) == sorted(
        (day_bounds(day)[0] + s) * 1_000_000 for i, day in enumerate(days) for s in (5, 7 + i)
    )
    for name in EVENT_SCHEMA.names:
        assert name in table.column_names
    assert ds.days() == days


def test_fsspec_root_works_with_an_explicit_lock(tmp_path: Path):
    import fsspec

    fs = fsspec.filesystem("memory")
    lock = threading.Lock()
    ds = EventDataset("memory://bucket/events", lock_factory=lambda day: lock)
    try:
        ds.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 3, LO + 1], "m")], fetched_at=HI)
        ds.write_day(DAY, [(LO + 2, LO + 4)], [], fetched_at=HI + 1)
        assert ids(ds.read_day(DAY)) == ["m#1"]
        assert ds.days() == [DAY]
        assert ds.read_coverage(DAY).intervals[1] == (LO + 2, LO + 4, HI + 1)
        assert not [p for p in fs.find("/bucket") if p.endswith(".tmp")]
        with pytest.raises(NotImplementedError, match="lock_factory"):
            EventDataset("memory://bucket/events").write_day(DAY, [], [], fetched_at=HI)
    finally:
        fs.rm("/bucket", recursive=True)


# --- RowSpool: a write's new rows on disk ---------------------------------------------------


def api_pages(seconds: list[int], tag: str, page_rows: int, seed: int) -> list[pa.RecordBatch]:
    """Rows cut into pages as the API serves them: chronological chunks, each shuffled.

    `tag#i` numbers the rows in time order, so equal seconds split over two pages show the
    order they arrived in.
    """
    rng = random.Random(seed)
    events = []
    for i, second in enumerate(sorted(seconds)):
        event = dict(TEMPLATES[i % len(TEMPLATES)])
        event["timestamp"] = to_wire(second)
        event["event_type"] = {**event["event_type"], "description": f"{tag}#{i}"}
        events.append(event)
    pages = []
    for start in range(0, len(events), page_rows):
        page = events[start : start + page_rows]
        rng.shuffle(page)
        pages.append(events_to_batch(page, team_id=TEAM, ingested_at=datetime.now(UTC)))
    return pages


def spool_of(batches: list[pa.RecordBatch], memory_bytes: int = 0) -> RowSpool:
    spool = RowSpool(memory_bytes=memory_bytes)
    for batch in batches:
        spool.add(batch)
    return spool


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    ("memory_pages", "spilled"),
    [(0, True), (5, True), (None, False)],
    ids=["file", "memory-then-file", "memory"],
)
def test_spool_round_trip_writes_what_the_batches_would(
    tmp_path: Path, spool_dir: Path, memory_pages: int | None, spilled: bool
):
    rng = random.Random(3)
    seconds = [LO + rng.randrange(2 * H) for _ in range(500)]
    pages = api_pages(seconds, "p", page_rows=40, seed=1)
    rng.shuffle(pages)  # several slices: pages arrive in no global order
    from_batches = EventDataset(str(tmp_path / "batches"))
    from_spool = EventDataset(str(tmp_path / "spool"))
    budget = None if memory_pages is None else memory_pages * pages[0].nbytes
    with spool_of(pages, memory_bytes=budget) as spool:
        assert spool.spilled is spilled
        assert spool.live_rows() == 500
        assert list(spool_dir.iterdir()) == []  # unnamed: nothing to leave behind
        a = from_spool.write_day(DAY, [(LO, LO + 2 * H)], spool, fetched_at=HI)
    b = from_batches.write_day(DAY, [(LO, LO + 2 * H)], pages, fetched_at=HI)
    assert a == b
    got = from_spool.read_day(DAY)
    assert seconds_of(got) == sorted(seconds)
    assert got.equals(from_batches.read_day(DAY))
    assert (
        Path(from_spool.hour_path(DAY, 0)).read_bytes()
        == Path(from_batches.hour_path(DAY, 0)).read_bytes()
    )


def test_rows_of_one_second_keep_the_order_they_were_added_in(ds: EventDataset):
    with RowSpool() as spool:
        spool.add(make_batch([LO + 5, LO + 5], "a"))
        spool.add(make_batch([LO + 5], "b"))
        spool.add(make_batch([LO + 5, LO + 4], "c"))
        spool.add(make_batch([LO + 3, LO + 5], "d"))
        ds.write_day(DAY, [(LO, LO + H)], spool, fetched_at=HI)
    assert ids(ds.read_day(DAY)) == ["d#0", "c#1", "a#0", "a#1", "b#0", "c#0", "d#1"]


def test_discard_from_forgets_only_those_batches_from_the_cutoff(ds: EventDataset):
    with RowSpool() as spool:
        kept = spool.add(make_batch([LO + 1, LO + 9, LO + 5], "kept"))
        first = spool.add(make_batch([LO + 1, LO + 9, LO + 5], "slice"))
        second = spool.add(make_batch([LO + 7, LO + 2], "slice2"))
        assert (kept, first, second) == (0, 1, 2)
        spool.discard_from([first, second], LO + 6)  # a restart of the slice at LO + 6
        spool.discard_from([first], LO + 8)  # a later, larger cutoff forgets nothing more
        assert spool.live_rows() == 6
        assert spool.live_rows([first, second]) == 3
        spool.discard_from([second], LO + 2)
        assert spool.live_rows([second]) == 0
        reread = spool.add(make_batch([LO + 6, LO + 9], "again"))
        assert spool.live_rows([reread]) == 2
        ds.write_day(DAY, [(LO, LO + 10)], spool, fetched_at=HI)
    table = ds.read_day(DAY)
    assert ids(table) == ["kept#0", "slice#0", "kept#2", "slice#2", "again#0", "kept#1", "again#1"]
    assert seconds_of(table) == [LO + 1, LO + 1, LO + 5, LO + 5, LO + 6, LO + 9, LO + 9]


def test_spool_merges_with_the_old_file_like_batches_do(tmp_path: Path):
    old = api_pages([LO + i * 7 for i in range(300)], "old", page_rows=50, seed=2)
    new = api_pages([LO + 600 + i for i in range(400)], "new", page_rows=30, seed=3)
    random.Random(4).shuffle(new)
    files = []
    for how in ("batches", "spool"):
        ds = EventDataset(str(tmp_path / how))
        ds.write_day(DAY, [(LO, LO + H)], old, fetched_at=LO + H)
        fetched = [(LO + 600, LO + 800), (LO + 900, LO + 1000)]  # a gap: its new rows drop
        new_rows = [
            b.filter(pa.array(keep)) for b, keep in zip(new, in_ranges(new, fetched), strict=True)
        ]
        if how == "spool":
            with spool_of(new_rows) as spool:
                result = ds.write_day(DAY, fetched, spool, fetched_at=LO + 2 * H)
        else:
            result = ds.write_day(DAY, fetched, new_rows, fetched_at=LO + 2 * H)
        files.append((result, ds.read_day(DAY), ds.read_coverage(DAY)))
    (result, table, coverage), other = files
    assert (result, coverage) == other[0::2]
    assert table.equals(other[1])
    old_kept = [s for s in range(LO, LO + 300 * 7, 7) if not (LO + 600 <= s < LO + 800)]
    old_kept = [s for s in old_kept if not (LO + 900 <= s < LO + 1000)]
    assert result.rows_after == len(old_kept) + 200 + 100
    assert seconds_of(table) == sorted(seconds_of(table))
    assert coverage.intervals == (
        (LO, LO + 600, LO + H),
        (LO + 600, LO + 800, LO + 2 * H),
        (LO + 800, LO + 900, LO + H),
        (LO + 900, LO + 1000, LO + 2 * H),
        (LO + 1000, LO + H, LO + H),
    )


def in_ranges(batches: list[pa.RecordBatch], ranges: list[tuple[int, int]]) -> list[list[bool]]:
    return [
        [any(s <= t < e for s, e in ranges) for t in seconds_of(pa.Table.from_batches([b]))]
        for b in batches
    ]


def test_spool_temp_file_is_gone_after_success_and_after_an_error(
    ds: EventDataset, spool_dir: Path
):
    before = open_fds()
    with RowSpool(memory_bytes=0) as spool:
        spool.add(make_batch([LO + 1], "a"))
        assert len(open_fds() - before) == 1  # the temp file, open but nameless
        ds.write_day(DAY, [(LO, LO + 10)], spool, fetched_at=HI)
    assert spool.closed and open_fds() == before
    with pytest.raises(RuntimeError, match="fetch failed"), RowSpool(memory_bytes=0) as spool:
        spool.add(make_batch([LO + 2], "b"))
        raise RuntimeError("fetch failed")
    assert spool.closed and open_fds() == before
    with pytest.raises(ValueError, match="outside every fetched range"), RowSpool() as spool:
        spool.add(make_batch([LO + 20], "c"))
        ds.write_day(DAY, [(LO, LO + 10)], spool, fetched_at=HI)
    assert spool.closed and open_fds() == before
    with pytest.raises(ValueError, match="closed"):
        spool.add(make_batch([LO + 3], "d"))
    assert list(spool_dir.iterdir()) == []
    assert ids(ds.read_day(DAY)) == ["a#0"]


def test_a_small_spool_opens_no_file_and_a_big_one_spills_in_add_order(
    ds: EventDataset, spool_dir: Path
):
    """Below its memory budget a spool holds its batches (no temp file at all); the batch that
    passes the budget moves every held batch to the file, so ids, discards made before the
    spill and the rows' order in the day file are the same as if they had never moved."""
    first = make_batch([LO + 5, LO + 1, LO + 9], "a")
    before = open_fds()
    with RowSpool(memory_bytes=2 * first.nbytes) as spool:
        a = spool.add(first)
        b = spool.add(make_batch([LO + 5, LO + 2], "b"))
        spool.discard_from([a], LO + 8)  # a restart before the spill
        assert not spool.spilled and open_fds() == before
        c = spool.add(make_batch([LO + 5, LO + 7, LO + 3], "c"))  # past the budget
        assert spool.spilled and len(open_fds() - before) == 1
        d = spool.add(make_batch([LO + 4], "d"))
        spool.discard_from([c], LO + 6)  # and one after
        assert (a, b, c, d) == (0, 1, 2, 3)
        assert spool.live_rows() == 7
        ds.write_day(DAY, [(LO, LO + H)], spool, fetched_at=HI)
    assert open_fds() == before and list(spool_dir.iterdir()) == []
    assert ids(ds.read_day(DAY)) == ["a#1", "b#1", "c#2", "d#0", "a#0", "b#0", "c#0"]


def test_a_spool_is_read_only_once_write_day_has_read_it(ds: EventDataset):
    with RowSpool() as spool:
        spool.add(make_batch([LO + 1], "a"))
        ds.write_day(DAY, [(LO, LO + 10)], spool, fetched_at=HI)
        with pytest.raises(ValueError, match="add every batch before write_day"):
            spool.add(make_batch([LO + 2], "b"))
        # the same rows again (as a lost S3 race does): nothing was consumed
        result = ds.write_day(DAY, [(LO, LO + 10)], spool, fetched_at=HI + 1)
        assert (result.rows_replaced, result.rows_added) == (1, 1)


def test_threads_add_to_one_spool_at_once(ds: EventDataset):
    """Fetch threads add as pages arrive: every row lands once, ids are unique, and each
    thread's restart discards reach only its own batches."""
    threads_n, pages_n = 6, 15
    start = threading.Barrier(threads_n)
    added: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    with RowSpool() as spool:

        def fetch(n: int) -> None:
            try:
                lo = LO + n * 1000  # each thread reads its own time slice
                pages = api_pages([lo + i for i in range(pages_n * 20)], f"t{n}", 20, n)
                start.wait()
                ids_ = [spool.add(page) for page in pages]
                if n % 2:
                    spool.discard_from(ids_, lo + 250)  # a restart: [lo + 250, ..) is re-read
                    ids_.append(spool.add(make_batch([lo + 250], f"t{n}again")))
                added[n] = ids_
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=fetch, args=(n,)) for n in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert not errors
        all_ids = sorted(i for ids_ in added.values() for i in ids_)
        assert all_ids == list(range(threads_n * pages_n + threads_n // 2))
        ds.write_day(DAY, [(LO, LO + threads_n * 1000)], spool, fetched_at=HI)
    table = ds.read_day(DAY)
    expected = threads_n // 2 * pages_n * 20 + threads_n // 2 * (250 + 1)
    assert table.num_rows == expected
    assert len(set(ids(table))) == expected
    assert seconds_of(table) == sorted(seconds_of(table))
    for n in range(threads_n):
        mine = [i for i in ids(table) if i.startswith(f"t{n}#")]
        assert mine == sorted(mine, key=lambda i: int(i.split("#")[1]))  # arrival order kept


def test_a_write_holds_about_one_row_group_however_many_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Memory is bounded by construction, not by the day's size: new rows are materialised at
    most ROW_GROUP_ROWS at a time, the writer never holds more than one row group, the spool
    keeps a few decoded pages, and the Arrow memory live at each step is the same for 5x the
    rows. (No RSS figure: that depends on the allocator and the machine.)"""
    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 60)
    monkeypatch.setattr(merge, "READ_BATCH_ROWS", 40)  # the old file, streamed
    taken: list[int] = []
    pending: list[int] = []
    cached: list[int] = []
    live: list[int] = []
    take, add, load = NewRows._take, merge._RowGroupWriter.add, RowSpool._batch

    def counting_take(self, rows):
        taken.append(len(rows))
        return take(self, rows)

    def counting_add(self, piece):
        add(self, piece)
        pending.append(self._pending_rows)
        live.append(pa.total_allocated_bytes())

    def counting_load(self, batch_id):
        batch = load(self, batch_id)
        cached.append(len(self._cache))
        return batch

    monkeypatch.setattr(NewRows, "_take", counting_take)
    monkeypatch.setattr(merge._RowGroupWriter, "add", counting_add)
    monkeypatch.setattr(RowSpool, "_batch", counting_load)

    def peak_live_bytes(rows: int) -> int:
        ds = EventDataset(str(tmp_path / str(rows)))
        quarter = range(rows // 4)
        old_seconds = [LO + i for i in quarter] + [LO + 3 * rows + i for i in quarter]
        old = api_pages(old_seconds, "old", 25, seed=5)
        ds.write_day(DAY, [(LO, HI)], old, fetched_at=HI)  # the new rows merge with these
        pages = api_pages([LO + rows + 2 * i for i in range(rows)], "new", 25, seed=6)
        random.Random(7).shuffle(pages)
        with RowSpool(memory_bytes=0) as spool:  # the file, as a big day's rows
            for page in pages:
                spool.add(page)
            del pages, page, old
            live.clear()
            before = pa.total_allocated_bytes()
            ds.write_day(DAY, [(LO + rows, LO + 3 * rows)], spool, fetched_at=HI + 1)
        total = 0
        for path in ds.file_paths(DAY):  # one per hour (those without rows have no row group)
            meta = pq.read_metadata(path)
            groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            assert groups[:-1] == [60] * (len(groups) - 1) and groups[-1:] <= [60]
            total += sum(groups)
        assert total == rows + rows // 2
        return max(live) - before

    small, big = peak_live_bytes(1000), peak_live_bytes(5000)
    assert max(taken) <= 60
    assert max(pending) <= 60
    assert max(cached) <= SPOOL_CACHE_BATCHES
    one_row_group = make_batch(list(range(LO, LO + 60)), "size").nbytes
    assert big <= small + one_row_group, (small, big)


# --- damaged day files -----------------------------------------------------------------------


def quarantined_files(ds: EventDataset) -> list[Path]:
    return sorted(Path(ds.root, QUARANTINE_DIR).rglob("*"))


def write_hour(ds: EventDataset, tag: str = "a") -> None:
    ds.write_day(
        DAY, [(LO, LO + H)], [make_batch(list(range(LO, LO + 600, 3)), tag)], fetched_at=HI
    )


def test_every_page_carries_a_checksum_that_reads_verify(ds: EventDataset):
    """Bytes changed inside a page, footer intact: without a checksum they decode as other rows."""
    write_hour(ds)
    flip_inside_page(ds.hour_path(DAY, 0), "raw_event")
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.ParquetFile(ds.hour_path(DAY, 0), page_checksum_verification=True).read()


def test_a_truncated_day_reads_as_uncovered_and_is_moved_aside(
    ds: EventDataset, caplog: pytest.LogCaptureFixture
):
    write_hour(ds)
    path = ds.hour_path(DAY, 0)
    left = truncate(path)
    with caplog.at_level(logging.WARNING, logger="dropbox_team_log.dataset.day_files"):
        assert ds.read_coverage(DAY) == Coverage()
    (moved,) = quarantined_files(ds)[1:]  # [the day's folder, the file]
    assert moved.read_bytes() == left  # kept as it was, for inspection
    assert moved.parent.name == f"event_date={DAY}" and moved.name.startswith("events-00.parquet.")
    assert not os.path.exists(path) and ds.days() == []
    assert read_dataset(ds.root).num_rows == 0  # outside the readers' glob
    (entry,) = ds.quarantined
    assert (entry.day, entry.path, entry.moved_to) == (DAY, path, str(moved))
    assert "footer unreadable" in entry.reason
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert path in warning and str(moved) in warning and "fetches it again" in warning
    assert ds.has_quarantined(DAY)


def test_a_damaged_neighbour_reads_as_unknown(ds: EventDataset):
    """The density hint reads neighbours' timestamps: a damaged one is moved aside, not fatal."""
    write_hour(ds)
    flip_inside_page(ds.hour_path(DAY, 0), "timestamp")
    assert ds.read_seconds(DAY) is None
    assert [q.path for q in ds.quarantined] == [ds.hour_path(DAY, 0)]
    assert "CRC checksum" in ds.quarantined[0].reason


def test_a_write_over_a_page_damaged_file_sets_it_aside_and_claims_only_what_it_fetched(
    ds: EventDataset,
):
    write_hour(ds, "old")
    flip_inside_page(ds.hour_path(DAY, 0), "raw_event")
    assert ds.read_coverage(DAY).intervals  # the footer is intact: only the pages tell
    result = ds.write_day(DAY, [(LO + 10, LO + 20)], [make_batch([LO + 12], "new")], HI + 1)
    assert (result.rows_before, result.rows_after) == (0, 1)
    assert ids(ds.read_day(DAY)) == ["new#0"]
    assert ds.read_coverage(DAY) == Coverage(((LO + 10, LO + 20, HI + 1),))  # the rest: due
    assert len(ds.quarantined) == 1 and len(quarantined_files(ds)) == 2


def test_a_damaged_file_that_cannot_be_moved_is_a_permanent_error_naming_it(
    ds: EventDataset, monkeypatch: pytest.MonkeyPatch
):
    write_hour(ds)
    truncate(ds.hour_path(DAY, 0))

    def read_only(*_args: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(integrity, "move_aside", read_only)
    with pytest.raises(DamagedDayFileError) as raised:
        ds.read_coverage(DAY)
    assert isinstance(raised.value, PermanentError)  # a task fails at once, no retry
    message = str(raised.value)
    assert ds.hour_path(DAY, 0) in message and "footer unreadable" in message
    assert "dropbox-team-log verify --quarantine" in message


def test_a_failed_read_of_a_whole_file_is_read_again_not_moved():
    """A read error is no verdict (a dropped connection): the full check finds the file whole."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class DropsTheFirstRead(MemoryFileSystem):
        protocol = "dropsfirst"
        dropped = 0

        @classmethod
        def _strip_protocol(cls, path):
            return super()._strip_protocol(path.replace("dropsfirst://", "memory://", 1))

        def _open(self, path, mode="rb", **kwargs):
            if mode == "rb" and not DropsTheFirstRead.dropped:
                DropsTheFirstRead.dropped += 1
                raise ConnectionResetError(104, "Connection reset by peer")
            return super()._open(path, mode, **kwargs)

    fsspec.register_implementation("dropsfirst", DropsTheFirstRead, clobber=True)
    lock = threading.Lock()
    ds = EventDataset("dropsfirst://bucket/events", lock_factory=lambda day: lock)
    try:
        DropsTheFirstRead.dropped = 1  # writing reads nothing; let the first read of it fail
        write_hour(ds)
        DropsTheFirstRead.dropped = 0
        assert ds.read_coverage(DAY) == Coverage(((LO, LO + H, HI),))
        assert DropsTheFirstRead.dropped == 1 and ds.quarantined == []
    finally:
        fsspec.filesystem("memory").rm("/bucket", recursive=True)


# --- hour files, and days in the layout before them -----------------------------------------


def every_ten_minutes(tag: str) -> pa.RecordBatch:
    return make_batch(list(range(LO + 5, HI, 600)), tag)


def file_states(ds: EventDataset) -> dict[str, tuple[int, int, bytes]]:
    """Each visible file's inode, mtime (ns) and bytes."""
    out = {}
    for path in sorted(Path(ds.root).glob(DAY_FILES_GLOB)):
        info = path.stat()
        out[path.name] = (info.st_ino, info.st_mtime_ns, path.read_bytes())
    return out


def test_a_write_rewrites_only_the_hour_files_its_ranges_touch(ds: EventDataset):
    result = ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("day")], fetched_at=HI)
    assert (result.files_written, result.rows_after) == (24, 144)
    assert sorted(p.name for p in Path(ds.day_dir(DAY)).iterdir()) == [
        f"events-{hour:02d}.parquet" for hour in range(24)
    ]
    before = file_states(ds)
    time.sleep(0.01)  # a rewrite would show in the mtime too, not only in the inode
    late = make_batch([LO + 13 * H + 100, LO + 13 * H + 100], "late")
    result = ds.write_day(DAY, [(LO + 13 * H, LO + 13 * H + 900)], [late], fetched_at=HI + 60)
    assert (result.files_written, result.rows_before, result.rows_replaced) == (1, 6, 2)
    after = file_states(ds)
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["events-13.parquet"]
    assert after["events-13.parquet"][0] != before["events-13.parquet"][0]  # a new file
    table = ds.read_day(DAY)
    assert seconds_of(table) == sorted(seconds_of(table)) and table.num_rows == 144
    assert ids(read_dataset(ds.root)).count("late#1") == 1
    assert ds.read_coverage(DAY).intervals == (
        (LO, LO + 13 * H, HI),
        (LO + 13 * H, LO + 13 * H + 900, HI + 60),
        (LO + 13 * H + 900, HI, HI),
    )
    # one range across an hour boundary: the two hours' files, each holding its own rows
    result = ds.write_day(DAY, [(LO + 2 * H - 60, LO + 2 * H + 60)], [], fetched_at=HI + 120)
    assert result.files_written == 2
    assert {n for n in before if before[n] != file_states(ds)[n]} == {
        "events-01.parquet",
        "events-02.parquet",
        "events-13.parquet",
    }
    assert LO + 2 * H + 5 not in ds.read_seconds(DAY)[0] and ds.read_day(DAY).num_rows == 143


def test_each_hour_file_holds_its_hour_only(ds: EventDataset):
    ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("day")], fetched_at=HI)
    for hour, path in enumerate(ds.file_paths(DAY)):
        stored = pq.read_table(path).column("timestamp").to_pylist()
        lo = LO + hour * H
        assert [int(t.timestamp()) for t in stored] == list(range(lo + 5, lo + H, 600))
        coverage = Coverage.from_json(pq.read_metadata(path).metadata[COVERAGE_KEY])
        assert coverage == Coverage(((lo, lo + H, HI),))


def test_a_day_in_the_old_layout_is_read_and_written_as_one_file(ds: EventDataset):
    """An upgrade converts nothing: a day file of the old layout is read as it is, and a write
    keeps it one file (a day folder never mixes it with hour files), however recent the day:
    nothing lost, nothing doubled."""
    old = make_batch([LO + 5, LO + 3 * H, LO + 13 * H + 1, HI - 1], "old")
    day_file = write_day_file(ds, DAY, [(LO, HI)], [old], fetched_at=HI)
    assert ds.days() == [DAY] and ds.is_day_file(DAY) and ds.file_paths(DAY) == [day_file]
    assert ids(ds.read_day(DAY)) == ["old#0", "old#1", "old#2", "old#3"]
    assert ds.read_coverage(DAY) == Coverage(((LO, HI, HI),))
    assert ds.read_seconds(DAY)[0].tolist() == [LO + 5, LO + 3 * H, LO + 13 * H + 1, HI - 1]
    late = make_batch([LO + 13 * H + 2], "late")
    result = ds.write_day(DAY, [(LO + 13 * H, LO + 14 * H)], [late], fetched_at=HI + 1)
    assert (result.files_written, result.rows_before, result.rows_after) == (1, 4, 4)
    assert visible_files(ds.root) == ["event_date=2026-01-01/events.parquet"]
    assert ids(ds.read_day(DAY)) == ["old#0", "old#1", "late#0", "old#3"]
    assert sorted(ids(read_dataset(ds.root))) == ["late#0", "old#0", "old#1", "old#3"]
    # another day is written in hour files beside it
    next_day = date(2026, 1, 2)
    ds.write_day(next_day, [(HI, HI + 60)], [make_batch([HI + 1], "new")], fetched_at=HI + 60)
    assert visible_files(ds.root) == [
        "event_date=2026-01-01/events.parquet",
        "event_date=2026-01-02/events-00.parquet",
    ]
    assert ds.days() == [DAY, next_day] and not ds.is_day_file(next_day)
    assert [c.problem for c in ds.verify()] == [None, None]


def test_a_day_folder_mixing_both_layouts_is_refused_not_read_twice(ds: EventDataset):
    ds.write_day(DAY, [(LO, LO + H)], [make_batch([LO + 1], "hour")], fetched_at=HI)
    write_day_file(ds, DAY, [(LO, HI)], [make_batch([LO + 1], "whole")], fetched_at=HI)
    with pytest.raises(MixedLayoutError, match=r"holds both events\.parquet and hour files"):
        ds.read_coverage(DAY)


SETTLED = HI + DAY_FILE_AFTER_HOURS * H  # the first instant DAY is written as one day file


def test_a_settled_day_is_written_as_one_day_file_read_as_hour_files_would_be(tmp_path: Path):
    """A day first written DAY_FILE_AFTER_HOURS after its end (a backfill) is one file; every
    read (rows, coverage, timestamps, the readers' glob) answers as the 24 hour files of the
    same write would."""
    whole = EventDataset(str(tmp_path / "whole"))
    hours = EventDataset(str(tmp_path / "hours"), day_file_after=10**9)  # never a day file
    rows = every_ten_minutes("day")
    for dataset in (whole, hours):
        result = dataset.write_day(DAY, [(LO, HI)], [rows], SETTLED)
        assert result.rows_after == 144
    assert visible_files(whole.root) == ["event_date=2026-01-01/events.parquet"]
    assert len(visible_files(hours.root)) == 24
    assert whole.is_day_file(DAY) and not hours.is_day_file(DAY)
    assert whole.read_coverage(DAY) == hours.read_coverage(DAY) == Coverage(((LO, HI, SETTLED),))
    assert whole.read_day(DAY).equals(hours.read_day(DAY))
    assert whole.read_seconds(DAY)[0].tolist() == hours.read_seconds(DAY)[0].tolist()
    within = [(LO + 13 * H, LO + 13 * H + 60)]  # a day file answers for the whole day
    assert len(whole.read_seconds(DAY, within=within)[0]) == 144
    assert sorted(ids(read_dataset(whole.root))) == sorted(ids(read_dataset(hours.root)))
    assert [c.problem for c in whole.verify()] == [None]


def test_the_day_file_horizon_is_the_days_end_plus_the_setting(tmp_path: Path):
    """One second before the horizon a day gets hour files (a write of part of a day too);
    from the horizon on, one day file, whole day or not."""
    recent = EventDataset(str(tmp_path / "recent"))
    recent.write_day(DAY, [(LO, HI)], [every_ten_minutes("day")], fetched_at=SETTLED - 1)
    assert not recent.is_day_file(DAY) and len(recent.file_paths(DAY)) == 24
    part = EventDataset(str(tmp_path / "part"))
    part.write_day(DAY, [(LO + 10 * H, LO + 12 * H)], [make_batch([LO + 10 * H], "p")], SETTLED)
    assert part.file_paths(DAY) == [part.day_file_path(DAY)]
    assert part.read_coverage(DAY) == Coverage(((LO + 10 * H, LO + 12 * H, SETTLED),))


def test_an_hour_file_day_is_never_converted_to_a_day_file(ds: EventDataset):
    """A day with hour files keeps them, however old it is at a later write, even a refetch of
    the whole day: changing kind would take several replaces (a reader between them would see
    rows twice or none)."""
    ds.write_day(DAY, [(LO, LO + 2 * H)], [make_batch([LO + 5, LO + H + 5], "first")], HI)
    result = ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("again")], SETTLED + 30 * H)
    assert result.files_written == 24 and not ds.is_day_file(DAY)
    assert visible_files(ds.root) == [
        f"event_date=2026-01-01/events-{hour:02d}.parquet" for hour in range(24)
    ]
    assert sorted(ids(read_dataset(ds.root))) == sorted(ids(every_ten_minutes("again")))


def test_a_late_event_into_a_day_file_day_lands_exactly_once(ds: EventDataset):
    ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("day")], fetched_at=SETTLED)
    before = file_states(ds)
    late = make_batch([LO + 13 * H + 100, LO + 13 * H + 200], "late")
    result = ds.write_day(DAY, [(LO + 13 * H, LO + 13 * H + 900)], [late], fetched_at=SETTLED + 1)
    assert (result.files_written, result.rows_before, result.rows_replaced) == (1, 144, 2)
    after = file_states(ds)
    assert list(after) == ["events.parquet"] and after != before  # the one file, rewritten
    table = read_dataset(ds.root)
    assert table.num_rows == 144 and sorted(ids(table)).count("late#0") == 1
    assert ids(table).count("late#1") == 1
    assert seconds_of(ds.read_day(DAY)) == sorted(seconds_of(ds.read_day(DAY)))
    # the same refetch again (a retried task) changes no row
    ds.write_day(DAY, [(LO + 13 * H, LO + 13 * H + 900)], [late], fetched_at=SETTLED + 2)
    assert sorted(ids(read_dataset(ds.root))) == sorted(ids(table))


def test_a_damaged_day_file_is_moved_aside_and_the_day_written_anew_as_one_file(
    ds: EventDataset,
):
    ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("day")], fetched_at=SETTLED)
    truncate(ds.day_file_path(DAY))
    assert ds.read_coverage(DAY) == Coverage()  # moved aside: the whole day is due again
    (moved,) = [p for p in quarantined_files(ds) if p.is_file()]
    assert moved.name.startswith("events.parquet.") and ds.has_quarantined(DAY)
    ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("again")], fetched_at=SETTLED + H)
    assert visible_files(ds.root) == ["event_date=2026-01-01/events.parquet"]
    assert ds.read_day(DAY).num_rows == 144


def test_a_damaged_hour_file_is_moved_aside_alone(ds: EventDataset):
    ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("day")], fetched_at=HI)
    before = file_states(ds)
    truncate(ds.hour_path(DAY, 13))
    hour = (LO + 13 * H, LO + 14 * H)
    assert ds.read_coverage(DAY).intervals == ((LO, hour[0], HI), (hour[1], HI, HI))
    (moved,) = [p for p in quarantined_files(ds) if p.is_file()]
    assert moved.name.startswith("events-13.parquet.")
    after = file_states(ds)
    assert sorted(after) == sorted(set(before) - {"events-13.parquet"})
    assert all(after[name] == before[name] for name in after)  # the others untouched
    assert ds.read_day(DAY).num_rows == 144 - 6
    # the hour is due again, and the next write of it brings it back
    ds.write_day(DAY, [hour], [make_batch(list(range(hour[0] + 5, hour[1], 600)), "again")], HI)
    assert ds.read_day(DAY).num_rows == 144
    assert ds.read_coverage(DAY) == Coverage(((LO, HI, HI),))


def test_read_seconds_within_ranges_reads_only_their_hour_files(ds: EventDataset):
    """Planning a sync of an hour costs that hour, however full the day: other files unread."""
    ds.write_day(DAY, [(LO, HI)], [every_ten_minutes("day")], fetched_at=HI)
    truncate(ds.hour_path(DAY, 5))  # would be found (and moved aside) by any read of it
    hour = (LO + 13 * H + 60, LO + 13 * H + 120)
    seconds, coverage = ds.read_seconds(DAY, within=[hour])
    assert seconds.tolist() == list(range(LO + 13 * H + 5, LO + 14 * H, 600))
    assert coverage == Coverage(((LO + 13 * H, LO + 14 * H, HI),))
    assert ds.quarantined == [] and os.path.exists(ds.hour_path(DAY, 5))
    assert len(ds.read_seconds(DAY)[0]) == 144 - 6 and len(ds.quarantined) == 1
