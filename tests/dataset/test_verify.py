"""EventDataset.verify and the full check behind it: every file the readers read, every page's
checksum; bad files named, and moved aside on request (locally, on another fsspec store, on S3)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dropbox_team_log.dataset import integrity
from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.settings import QUARANTINE_DIR
from tests.dataset.test_store import DAY, HI, LO, ids, make_batch
from tests.dataset.test_store_s3 import bucket, objects, s3_endpoint
from tests.helpers.damage import flip_inside_page, truncate
from tests.helpers.dataset import read_dataset

__all__ = ["bucket", "s3_endpoint"]  # the S3 fixtures, shared with test_store_s3

DAYS = [DAY + timedelta(days=i) for i in range(4)]


def write_days(ds: EventDataset) -> None:
    """Four days of 20 rows each."""
    for n, day in enumerate(DAYS):
        lo = LO + n * 86_400
        rows = make_batch(list(range(lo, lo + 200, 10)), f"d{n}")
        ds.write_day(day, [(lo, lo + 3600)], [rows], fetched_at=HI + n * 86_400)


@pytest.fixture
def damaged(tmp_path: Path) -> EventDataset:
    """Day 0 whole, day 1 cut short, day 2 with a page changed behind its intact footer, and a
    file no writer of ours made beside day 3's."""
    ds = EventDataset(str(tmp_path / "events"))
    write_days(ds)
    truncate(ds.hour_path(DAYS[1], 0))
    flip_inside_page(ds.hour_path(DAYS[2], 0), "raw_event")
    pq.write_table(pa.table({"x": [1]}), f"{ds.day_dir(DAYS[3])}/extra.parquet")
    return ds


def test_verify_names_each_bad_file_and_why(damaged: EventDataset):
    checks = {Path(c.path).relative_to(damaged.root).as_posix(): c for c in damaged.verify()}
    assert sorted(checks) == [
        f"event_date={DAYS[0]}/events-00.parquet",
        f"event_date={DAYS[1]}/events-00.parquet",
        f"event_date={DAYS[2]}/events-00.parquet",
        f"event_date={DAYS[3]}/events-00.parquet",
        f"event_date={DAYS[3]}/extra.parquet",
    ]
    whole, cut, flipped, whole_too, foreign = checks.values()
    assert (whole.problem, whole.rows, whole_too.problem) == (None, 20, None)
    assert cut.damaged and cut.problem.startswith("footer unreadable: Parquet magic bytes")
    assert flipped.damaged and flipped.problem.startswith("row group 1 of 1: ")
    assert "CRC checksum verification failed" in flipped.problem
    assert not foreign.damaged and "not a day file of this package" in foreign.problem
    assert not any(c.moved_to for c in checks.values())
    assert not Path(damaged.root, QUARANTINE_DIR).exists()  # reporting moves nothing


def test_verify_quarantine_moves_every_bad_file_and_readers_see_the_whole_days(
    damaged: EventDataset,
):
    checks = damaged.verify(quarantine=True)
    moved = sorted(Path(c.moved_to) for c in checks if c.moved_to)
    assert [p.relative_to(damaged.root).parent.as_posix() for p in moved] == [
        f"{QUARANTINE_DIR}/event_date={DAYS[1]}",
        f"{QUARANTINE_DIR}/event_date={DAYS[2]}",
        f"{QUARANTINE_DIR}/event_date={DAYS[3]}",
    ]
    assert sorted(ids(read_dataset(damaged.root))) == sorted(
        [f"d0#{i}" for i in range(20)] + [f"d3#{i}" for i in range(20)]
    )
    assert [q.day for q in damaged.quarantined] == DAYS[1:]
    assert damaged.read_coverage(DAYS[1]) == Coverage() and damaged.has_quarantined(DAYS[2])
    again = damaged.verify(quarantine=True)
    assert [c.problem for c in again] == [None, None]


def test_a_file_replaced_before_it_is_moved_stays(
    damaged: EventDataset, monkeypatch: pytest.MonkeyPatch
):
    """verify checks a bad file again under its day's lock: a writer may have replaced it
    between the first check and the lock (here: right after the first check)."""
    path = damaged.hour_path(DAYS[1], 0)
    lo = LO + 86_400
    first_check = integrity.check_file
    replaced = threading.Event()

    def check_then_a_writer_replaces_it(fs, checked):
        check = first_check(fs, checked)
        if checked == path and check.problem and not replaced.is_set():
            replaced.set()
            Path(path).unlink()
            damaged.write_day(DAYS[1], [(lo, lo + 10)], [make_batch([lo + 5], "w")], HI + 86_400)
        return check

    monkeypatch.setattr(integrity, "check_file", check_then_a_writer_replaces_it)
    checks = {c.path: c for c in damaged.verify(quarantine=True)}
    assert replaced.is_set()
    assert checks[path].problem is None and checks[path].moved_to is None
    assert ids(damaged.read_day(DAYS[1])) == ["w#0"]


def test_on_another_fsspec_store_the_check_reads_a_local_copy_and_the_move_is_a_copy():
    import fsspec

    fs = fsspec.filesystem("memory")
    lock = threading.Lock()
    ds = EventDataset("memory://verify/events", lock_factory=lambda day: lock)
    try:
        write_days(ds)
        day_file = ds.hour_path(DAYS[1], 0)
        fs.pipe_file(day_file, fs.cat_file(day_file)[:100])
        (bad,) = [c for c in ds.verify(quarantine=True) if c.problem]
        assert bad.path == day_file and bad.moved_to.startswith(f"/verify/events/{QUARANTINE_DIR}")
        assert fs.cat_file(bad.moved_to) and not fs.exists(day_file)
        assert ds.days() == [DAYS[0], DAYS[2], DAYS[3]]
    finally:
        fs.rm("/verify", recursive=True)


def test_on_s3_a_write_over_a_damaged_day_object_copies_it_aside_and_writes_anew(bucket: str):
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # one cached for another module's server: not ours
    ds = EventDataset(f"s3://{bucket}/events")
    ds.write_day(DAY, [(LO, LO + 3600)], [make_batch([LO + 1, LO + 2], "old")], fetched_at=HI)
    key = f"events/event_date={DAY}/events-00.parquet"
    s3 = boto3.client("s3")
    whole = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=whole[: len(whole) // 2])
    result = ds.write_day(DAY, [(LO + 10, LO + 20)], [make_batch([LO + 11], "new")], HI + 1)
    assert (result.rows_before, result.rows_after) == (0, 1)
    assert ids(ds.read_day(DAY)) == ["new#0"]
    (moved,) = [k for k in objects(bucket) if k.startswith(f"events/{QUARANTINE_DIR}/")]
    assert moved.startswith(f"events/{QUARANTINE_DIR}/event_date={DAY}/events-00.parquet.")
    assert s3.get_object(Bucket=bucket, Key=moved)["Body"].read() == whole[: len(whole) // 2]
    assert [c.problem for c in ds.verify()] == [None]
