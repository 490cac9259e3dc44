"""Readers globbing `event_date=*/*.parquet` while writers rewrite hour files (and a settled
day's one day file): every read sees each row exactly once, on a local disk and on S3 (moto).

The writers replay a simulated day of syncs: fresh pieces of a few minutes, refetches of what is
stored (the same events again: what a refresh or a settle of an unchanged range does) and late
events. Events only ever come, never go, so every row written before a read started is in that
read exactly once, and no row is in any read twice, whatever the moment.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.roots import glob_under
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.schema import DAY_FILES_GLOB
from dropbox_team_log.timeutil import day_bounds
from tests.dataset.test_store import ids, make_batch
from tests.dataset.test_store_s3 import bucket, s3_endpoint
from tests.helpers.dataset import read_dataset

__all__ = ["bucket", "s3_endpoint"]  # fixtures

DAY, SETTLED_DAY = date(2026, 5, 2), date(2026, 4, 28)  # 4 days apart: a day file
H = 3600
DESCRIPTION = "event_type_description"  # each row's unique id (tests.dataset.test_store.ids)


class Truth:
    """The API's events: (second, id) pairs, only ever added; what a fetch of a range returns."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def add(self, second: int, tag: str) -> None:
        with self.lock:
            self.events.append((second, f"{tag}#{len(self.events)}"))

    def fetch(self, lo: int, hi: int) -> list[pa.RecordBatch]:
        with self.lock:
            chosen = sorted(e for e in self.events if lo <= e[0] < hi)
        if not chosen:
            return []
        batch = make_batch([s for s, _ in chosen], "x")
        names = pa.array([name for _, name in chosen])
        column = batch.schema.get_field_index("event_type_description")
        return [batch.set_column(column, "event_type_description", names)]


def duckdb_ids(root: str) -> list[str]:
    """Every row's id as DuckDB reads the glob (a local dataset)."""
    return ids(read_dataset(root))


def object_ids(root: str) -> list[str]:
    """Every row's id as an S3 reader that lists the glob and GETs each object whole reads it:
    one GET is one version of an object, old or new, never a mix (docs/querying.md)."""
    fs, path = object_store.filesystem(root)
    out: list[str] = []
    for key in sorted(fs.glob(glob_under(path, DAY_FILES_GLOB))):
        table = pq.read_table(pa.BufferReader(fs.cat_file(key)), columns=[DESCRIPTION])
        out += table.column(0).to_pylist()
    return out


class GlobReader(threading.Thread):
    """Reads the whole dataset through the glob again and again, checking each read."""

    def __init__(self, read: Callable[[], list[str]], written: set[str], lock: threading.Lock):
        super().__init__(daemon=True)
        self.read, self.written, self.lock = read, written, lock
        self.stop = threading.Event()
        self.reads = 0
        #: Reads that raised a DuckDB error: it opens a file once to bind and again to scan, so a
        #: query that races a replace of one of its files may fail (docs/querying.md: retry).
        #: A failed read is not a wrong one; only wrong rows are problems.
        self.failed_reads: list[str] = []
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set() and not self.problems:
            with self.lock:
                must_see = set(self.written)  # written (the write returned) before this read
            try:
                seen = Counter(self.read())
            except duckdb.Error as exc:
                self.failed_reads.append(f"read {self.reads}: {type(exc).__name__}: {exc}")
                continue
            except Exception as exc:
                self.problems.append(f"read {self.reads}: {type(exc).__name__}: {exc}")
                break
            twice = [name for name, n in seen.items() if n > 1]
            missing = must_see - set(seen)
            if twice or missing:
                self.problems.append(f"read {self.reads}: twice {twice[:3]}, missing {missing}")
            self.reads += 1


def simulate(
    dataset: EventDataset, read: Callable[[], list[str]], seed: int, runs: int, reads: int
) -> GlobReader:
    """At least `runs` syncs on DAY (and refetches of SETTLED_DAY), as many more as it takes for
    a reader hammering the glob to finish `reads` reads meanwhile."""
    rng = random.Random(seed)
    lo, hi = day_bounds(DAY)
    settled_lo, settled_hi = day_bounds(SETTLED_DAY)
    truth = Truth()
    for _ in range(40):
        truth.add(rng.randrange(settled_lo, settled_hi), "old")
    backfill = truth.fetch(settled_lo, settled_hi)
    dataset.write_day(SETTLED_DAY, [(settled_lo, settled_hi)], backfill, fetched_at=lo)
    assert dataset.is_day_file(SETTLED_DAY)
    written = {name for _, name in truth.events}
    lock = threading.Lock()
    reader = GlobReader(read, written, lock)
    reader.start()
    now, covered = lo + 5 * H, lo
    try:
        for run in itertools.count():
            if (run >= runs and reader.reads >= reads) or reader.problems or run > 50 * runs:
                break
            now = min(hi, now + rng.randint(60, 240))
            for _ in range(rng.randint(0, 6)):  # new events, some of them late
                truth.add(rng.randrange(max(lo, now - 6 * H), now), "new")
            if (
                run % 3 == 2 or covered == now
            ):  # a refetch of stored time: the same events, and the late ones
                start = rng.randrange(lo, covered)
                ranges = [(start, min(covered, start + rng.randint(60, 3 * H)))]
            else:  # what is new since the last run
                ranges = [(covered, now)]
                covered = now
            batches = [b for s, e in ranges for b in truth.fetch(s, e)]
            dataset.write_day(DAY, ranges, batches, fetched_at=now)
            if run % 5 == 4:  # the settled day's refetch, its one file rewritten whole
                start = rng.randrange(settled_lo, settled_hi - H)
                old = truth.fetch(start, start + H)
                dataset.write_day(SETTLED_DAY, [(start, start + H)], old, fetched_at=now)
            with lock:
                written |= {
                    n for b in batches for n in b.column("event_type_description").to_pylist()
                }
    finally:
        reader.stop.set()
        reader.join(timeout=120)
    final = Counter(read())
    assert max(final.values()) == 1 and set(final) == written
    return reader


def test_local_readers_see_every_row_exactly_once_while_hours_are_rewritten(tmp_path):
    root = str(tmp_path / "events")
    reader = simulate(EventDataset(root), lambda: duckdb_ids(root), seed=3, runs=120, reads=30)
    assert reader.problems == []
    assert reader.reads >= 30, "the reader barely ran: the test proved little"


def test_s3_readers_see_every_row_exactly_once_while_hours_are_rewritten(bucket):
    root = f"s3://{bucket}/events"
    reader = simulate(EventDataset(root), lambda: object_ids(root), seed=4, runs=30, reads=5)
    assert reader.problems == []
    assert reader.reads >= 5, "the reader barely ran: the test proved little"
