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
  temp file and uploaded straight to its final key (one PUT, or a multipart upload sent a part
  at a time when it is large), on condition that the key still holds the object it was merged
  from (`If-Match: <etag>`, or `If-None-Match: *` for a new day): either is atomic. A writer that
  loses the race reads the winner's file and merges again, so concurrent writers serialise
  without a lock and a dead one leaves nothing visible behind (object_store.py,
  docs/design.md, "Object storage").
- Another fsspec store needs a `lock_factory`; the write then goes through a temp file too.

The merge itself (merge.py) streams the old file and the new rows (spool.py) a row group at a
time, so a write's memory is bounded by a few row groups, not by the day's size.

A day file that cannot be read back (truncated, footer broken, a page checksum wrong) never
stops a plan, a neighbour's sync or a write: a read or write that fails on it has the file
checked in full, under the day's lock, and a damaged one is moved aside (integrity.py), named
in a WARNING and in `quarantined`; the day then reads as having no file, so it is fetched again.
`verify` checks every file the readers read.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import date
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import file_format, integrity, object_store
from dropbox_team_log.dataset.columns import conform, epoch_seconds
from dropbox_team_log.dataset.file_format import coverage_of
from dropbox_team_log.dataset.files import FileDayLock, remove_stale_temps, write_atomically
from dropbox_team_log.dataset.integrity import FileCheck, Quarantined
from dropbox_team_log.dataset.ledger import Coverage, merge_ranges
from dropbox_team_log.dataset.merge import WriteResult, merge_into
from dropbox_team_log.dataset.roots import glob_under
from dropbox_team_log.dataset.spool import BatchList, NewRows
from dropbox_team_log.errors import DamagedDayFileError, DropboxTeamLogError
from dropbox_team_log.schema import DAY_FILES_GLOB, EVENT_SCHEMA, PARTITION_KEY, TIMESTAMP_TYPE
from dropbox_team_log.timeutil import Range, day_bounds

FILE_NAME = "events.parquet"
LOCK_DIR = "_locks"
#: Lost conditional PUTs in a row before a write gives up (each loss means another writer won).
MAX_WRITE_CONFLICTS = 20

log = logging.getLogger(__name__)

_DAY_DIR_RE = re.compile(rf"{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")

LockFactory = Callable[[date], AbstractContextManager]
_Read = TypeVar("_Read")


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
        #: Damaged day files this object moved aside, in order (also logged as WARNING).
        self.quarantined: list[Quarantined] = []

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
        for path in self.fs.glob(glob_under(self.root, f"{PARTITION_KEY}=*/{FILE_NAME}")):
            match = _DAY_DIR_RE.search(path.rstrip("/").rsplit("/", 2)[-2])
            if match:
                found.append(date.fromisoformat(match.group(1)))
        return sorted(found)

    def has_quarantined(self, day: date) -> bool:
        """Whether a file of this day was ever moved aside (and is still kept for inspection)."""
        folder = integrity.quarantine_folder(self.root, f"{PARTITION_KEY}={day.isoformat()}")
        return bool(self.fs.exists(folder))

    def read_coverage(self, day: date) -> Coverage:
        """The day's coverage from the file footer only (cheap); empty when there is no file
        (or the file was damaged, and is now moved aside)."""
        return self._read_healing(day, self._coverage_at, Coverage())

    def _coverage_at(self, path: str) -> Coverage:
        with self.fs.open(path, "rb") as f:
            return coverage_of(pq.read_metadata(f), path)

    def read_seconds(self, day: date) -> tuple[np.ndarray, Coverage] | None:
        """The day's row timestamps (epoch seconds, sorted) and coverage; None without a file
        (or with a damaged one, now moved aside).

        One column of one file: cheap enough to plan a sync by (where events are expected).
        """
        return self._read_healing(day, self._seconds_at, None)

    def _seconds_at(self, path: str) -> tuple[np.ndarray, Coverage]:
        with self.fs.open(path, "rb") as f:
            file = file_format.open_file(f)
            coverage = coverage_of(file.metadata, path)
            stored = file.read(columns=["timestamp"]).column(0)  # milliseconds in Parquet
            return epoch_seconds(stored.cast(TIMESTAMP_TYPE)), coverage

    def read_day(self, day: date) -> pa.Table:
        """All rows of one day, sorted by timestamp (empty table when there is no file, or a
        damaged one, now moved aside)."""
        return self._read_healing(day, self._rows_at, EVENT_SCHEMA.empty_table())

    def _rows_at(self, path: str) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return conform(file_format.read_table(f), path)

    def _read_healing(self, day: date, read: Callable[[str], _Read], missing: _Read) -> _Read:
        """`read(path)` of the day file; `missing` when there is none, or it was damaged.

        A failed read has the file checked in full under the day's lock: a damaged file is moved
        aside; a whole one (replaced meanwhile, or the failure was not its bytes') is read
        again, and a second failure is raised as it is.
        """
        path = self.day_path(day)
        try:
            return read(path)
        except FileNotFoundError:
            return missing
        except integrity.READ_ERRORS as exc:
            if not integrity.may_be_damage(exc):
                raise
            with self.lock(day):
                if self._set_aside_if_damaged(day, path, exc):
                    return missing
        try:
            return read(path)
        except FileNotFoundError:
            return missing

    def _set_aside_if_damaged(self, day: date, path: str, error: BaseException) -> bool:
        """After `error` reading or writing the day: move its file aside if it is damaged (the
        caller holds the day's lock). False when the error cannot come from the file's bytes, or
        the file is whole, not a day file of ours, or gone."""
        if not integrity.may_be_damage(error):
            return False
        try:
            return self._move_if_bad(day, path, damaged_only=True).moved_to is not None
        except FileNotFoundError:
            return False

    def _move_if_bad(self, day: date | None, path: str, *, damaged_only: bool) -> FileCheck:
        """Check `path` in full; move it aside if damaged (unless `damaged_only`: if it has any
        problem). The caller holds the day's lock. Raises FileNotFoundError when it is gone, and
        DamagedDayFileError when it cannot be moved: reading it again cannot help."""
        check = integrity.check_file(self.fs, path)
        if check.problem is None or (damaged_only and not check.damaged):
            return check
        try:
            moved_to = integrity.move_aside(self.fs, self.root, path)
        except OSError as exc:
            raise DamagedDayFileError(path, check.problem) from exc
        self.quarantined.append(Quarantined(day, path, moved_to, check.problem))
        log.warning(
            "QUARANTINED day file %s (%s): moved to %s, kept for inspection. Its day has no "
            "coverage now: the next sync whose window covers %s fetches it again (for a day "
            "older than the incremental window, trigger the backfill for that day).",
            path,
            check.problem,
            moved_to,
            day or "the day",
        )
        return replace(check, moved_to=moved_to)

    def verify(self, *, quarantine: bool = False) -> list[FileCheck]:
        """Check every file the readers read (`event_date=*/*.parquet`) in full, in path order.

        With `quarantine`, every file with a problem is moved aside (one that is not a day file
        of this package too: readers would read it). A file is checked again under its day's
        lock before it is moved, so one that a writer has just replaced stays.
        """
        checks = []
        for path in sorted(self.fs.glob(glob_under(self.root, DAY_FILES_GLOB))):
            try:
                check = integrity.check_file(self.fs, path)
                if check.problem is not None and quarantine:
                    day = integrity.day_of_file(path)
                    with self.lock(day) if day else contextlib.nullcontext():
                        check = self._move_if_bad(day, path, damaged_only=False)
            except FileNotFoundError:  # replaced or moved since it was listed
                continue
            checks.append(check)
        return checks

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
            try:
                return self._write_locked(path, ranges, new, fetched_at)
            except integrity.READ_ERRORS as exc:
                # the old file may be damaged: if so it is moved aside and the day written anew
                if not self._set_aside_if_damaged(day, path, exc):
                    raise
            return self._write_locked(path, ranges, new, fetched_at)

    def _write_locked(
        self, path: str, ranges: list[Range], new: NewRows, fetched_at: int
    ) -> WriteResult:
        exists = self.fs.exists(path)
        before = self._coverage_at(path) if exists else Coverage()
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
                    object_store.upload_if(self.fs, path, sink, etag)  # a part at a time
                    return result
            except object_store.lost_race_errors() as exc:
                log.info("%s: another writer committed first (%s); merging again", day, exc)
                self.fs.invalidate_cache(path)
            except integrity.READ_ERRORS as exc:
                # a damaged day object is copied aside and deleted: the next attempt writes anew
                if not self._set_aside_if_damaged(day, path, exc):
                    raise
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
