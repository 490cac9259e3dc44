"""The dataset's store: where each day file lives, how it is read, and where a write happens.

`<root>/event_date=YYYY-MM-DD/events.parquet` holds a day's rows sorted by timestamp; its footer
says which ranges those rows answer exactly (file_format.py, ledger.py). `EventDataset` names
the paths, reads a day (its coverage, its timestamps, its rows) and writes one: `write_day` is
where every write of the dataset happens. (Analysts read the files directly, e.g. with DuckDB.)

A write replaces the rows of the ranges it may take (`Coverage.apply`: never those a newer fetch
holds), keeps the rest, and lands as a whole new file, so a reader globbing
`event_date=*/*.parquet` (`schema.DAY_FILES_GLOB`) sees the old day or the new one: never a
partial file, never a row twice. How the new file becomes the day file depends on the root:

- A local folder: under the day's lock (`FileDayLock`, flock on `_locks/`), the merged file is
  written to a hidden temp file in the day folder and renamed onto `events.parquet`
  (files.py, `write_atomically`). A killed writer leaves a temp file that no reader's glob
  matches, and its lock dies with it; the next writer removes the temp file.
- S3 (`s3://bucket/prefix`): no rename and no lock. The merged file is built in a local unnamed
  temp file and PUT straight to its final key, on condition that the key still holds the object
  it was merged from (`If-Match: <etag>`, or `If-None-Match: *` for a new day): one PUT is
  atomic. A writer that loses the race reads the winner's file and merges again, so concurrent
  writers serialise without a lock and a dead one leaves nothing behind (object_store.py,
  docs/design.md, "Object storage").
- Another fsspec store needs a `lock_factory`; the write then goes through a temp file too.

The merge itself (merge.py) streams the old file and the new rows (spool.py) a row group at a
time, so a write's memory is bounded by a few row groups, not by the day's size.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.columns import conform, epoch_seconds
from dropbox_team_log.dataset.file_format import coverage_of
from dropbox_team_log.dataset.files import FileDayLock, remove_stale_temps, write_atomically
from dropbox_team_log.dataset.ledger import Coverage, merge_ranges
from dropbox_team_log.dataset.merge import WriteResult, merge_into
from dropbox_team_log.dataset.spool import BatchList, NewRows
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.schema import EVENT_SCHEMA, PARTITION_KEY, TIMESTAMP_TYPE
from dropbox_team_log.timeutil import Range, day_bounds

FILE_NAME = "events.parquet"
LOCK_DIR = "_locks"
#: Lost conditional PUTs in a row before a write gives up (each loss means another writer won).
MAX_WRITE_CONFLICTS = 20

log = logging.getLogger(__name__)

_DAY_DIR_RE = re.compile(rf"{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")

LockFactory = Callable[[date], AbstractContextManager]


class ConcurrentWriteError(DropboxTeamLogError):
    """Other writers kept replacing the day while this one merged: retry the task later."""


class EventDataset:
    """The day-partitioned event dataset under `root` (a local path or an fsspec URL)."""

    def __init__(self, root: str, *, lock_factory: LockFactory | None = None) -> None:
        self.fs, path = object_store.filesystem(str(root))
        self.root = path.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        #: S3: writes are conditional PUTs of the final key (no temp objects, no lock needed).
        self.is_object_store = object_store.is_object_store(self.fs)
        self._lock_factory = lock_factory

    def __repr__(self) -> str:
        return f"EventDataset({self.root!r})"

    # --- paths ---

    def day_dir(self, day: date) -> str:
        return f"{self.root}/{PARTITION_KEY}={day.isoformat()}"

    def day_path(self, day: date) -> str:
        return f"{self.day_dir(day)}/{FILE_NAME}"

    def lock(self, day: date) -> AbstractContextManager:
        """The exclusive lock of one day: flock locally; none on S3, where the conditional PUT
        fences writers; other fsspec stores need a lock_factory."""
        if self._lock_factory is not None:
            return self._lock_factory(day)
        if self.is_object_store:
            return contextlib.nullcontext()
        if not self.is_local:
            raise NotImplementedError(
                f"no cross-process lock for {self.fs.protocol!r} roots: pass lock_factory="
            )
        return FileDayLock(f"{self.root}/{LOCK_DIR}/{PARTITION_KEY}={day.isoformat()}.lock")

    # --- reading ---

    def days(self) -> list[date]:
        """Days that have a file, ascending."""
        found = []
        for path in self.fs.glob(f"{self.root}/{PARTITION_KEY}=*/{FILE_NAME}"):
            match = _DAY_DIR_RE.search(path.rstrip("/").rsplit("/", 2)[-2])
            if match:
                found.append(date.fromisoformat(match.group(1)))
        return sorted(found)

    def read_coverage(self, day: date) -> Coverage:
        """The day's coverage from the file footer only (cheap); empty when there is no file."""
        path = self.day_path(day)
        if not self.fs.exists(path):
            return Coverage()
        with self.fs.open(path, "rb") as f:
            return coverage_of(pq.read_metadata(f), path)

    def read_seconds(self, day: date) -> tuple[np.ndarray, Coverage] | None:
        """The day's row timestamps (epoch seconds, sorted) and coverage; None without a file.

        One column of one file: cheap enough to plan a sync by (where events are expected).
        """
        path = self.day_path(day)
        try:
            with self.fs.open(path, "rb") as f:
                file = pq.ParquetFile(f)
                coverage = coverage_of(file.metadata, path)
                stored = file.read(columns=["timestamp"]).column(0)  # milliseconds in Parquet
                return epoch_seconds(stored.cast(TIMESTAMP_TYPE)), coverage
        except FileNotFoundError:
            return None

    def read_day(self, day: date) -> pa.Table:
        """All rows of one day, sorted by timestamp (empty table when there is no file)."""
        path = self.day_path(day)
        if not self.fs.exists(path):
            return EVENT_SCHEMA.empty_table()
        with self.fs.open(path, "rb") as f:
            return conform(pq.read_table(f), path)

    # --- writing ---

    def write_day(
        self,
        day: date,
        fetched: Sequence[Range],
        rows: NewRows | Iterable[pa.RecordBatch],
        fetched_at: int,
    ) -> WriteResult:
        """Record that `fetched` ranges of `day` were read at `fetched_at`; `rows` hold them.

        `rows` is a `RowSpool` (a big day: its rows are read back a row group at a time) or the
        record batches themselves. Rows of the ranges this fetch may take replace the file's rows
        there; rows in ranges a newer fetch already holds are dropped; rows outside every fetched
        range raise ValueError. The rows are only read: the caller still owns (and closes) them.
        """
        ranges = _check_fetched(day, fetched, fetched_at)
        new = rows if isinstance(rows, NewRows) else BatchList(rows)
        new.check_inside(ranges)  # before the lock: validation needs no lock
        with self.lock(day):
            if self.is_object_store:
                return self._write_conditional(day, ranges, new, fetched_at)
            path = self.day_path(day)
            remove_stale_temps(self.fs, path)  # safe: we hold the day's lock
            exists = self.fs.exists(path)
            before = self.read_coverage(day) if exists else Coverage()
            coverage, taken = before.apply(ranges, fetched_at)
            if not taken:
                rows = self._row_count(path) if exists else 0
                return WriteResult(rows, rows, 0, 0, (), before)
            return self._rewrite(path, exists, new, taken, coverage)

    def _row_count(self, path: str) -> int:
        with self.fs.open(path, "rb") as f:
            return pq.read_metadata(f).num_rows

    def _rewrite(
        self, path: str, exists: bool, new: NewRows, taken: list[Range], coverage: Coverage
    ) -> WriteResult:
        """Stream old rows outside `taken` and new rows inside it into a fresh file; swap it in."""
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(self.fs.open(path, "rb")) if exists else None
            with write_atomically(self.fs, path) as sink:
                return merge_into(sink, source, path if exists else None, new, taken, coverage)

    def _write_conditional(
        self, day: date, ranges: list[Range], new: NewRows, fetched_at: int
    ) -> WriteResult:
        """Merge against the day object as read, PUT the result only if it is still that object.

        A lost race (the ETag moved, the object appeared, or it changed while being read) means
        another writer committed first: read its result and merge again, as a lock would have.
        """
        path = self.day_path(day)
        for _attempt in range(MAX_WRITE_CONFLICTS):
            try:
                with contextlib.ExitStack() as stack:
                    try:  # s3fs pins the ETag at open and reads with If-Match: one version only
                        source = stack.enter_context(self.fs.open(path, "rb"))
                    except FileNotFoundError:
                        source, etag, before = None, None, Coverage()
                    else:
                        etag = source.details["ETag"]
                        before = coverage_of(pq.read_metadata(source), path)
                    coverage, taken = before.apply(ranges, fetched_at)
                    if not taken:
                        rows = 0 if source is None else pq.read_metadata(source).num_rows
                        return WriteResult(rows, rows, 0, 0, (), before)
                    sink = stack.enter_context(tempfile.TemporaryFile())  # unnamed: dies with us
                    result = merge_into(sink, source, path, new, taken, coverage)
                    sink.seek(0)
                    object_store.put_if(self.fs, path, sink.read(), etag)
                    return result
            except object_store.lost_race_errors() as exc:
                log.info("%s: another writer committed first (%s); merging again", day, exc)
                self.fs.invalidate_cache(path)
        raise ConcurrentWriteError(
            f"{path} changed {MAX_WRITE_CONFLICTS} times while this write merged: too many "
            "concurrent writers of one day (let the task retry)"
        )


def _check_fetched(day: date, fetched: Sequence[Range], fetched_at: int) -> list[Range]:
    """Fetched ranges must lie inside the day and before the fetch: else the caller erred."""
    lo, hi = day_bounds(day)
    ranges = merge_ranges(fetched)
    for s, e in ranges:
        if s < lo or e > hi:
            raise ValueError(f"fetched range [{s}, {e}) is not inside {day} [{lo}, {hi})")
        if e > fetched_at:
            raise ValueError(f"fetched range [{s}, {e}) ends after fetched_at {fetched_at}")
    return ranges
