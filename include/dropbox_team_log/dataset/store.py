"""The dataset's store: where every write of the dataset happens (`EventDataset.write_day`).

A day folder `event_date=YYYY-MM-DD/` holds hour files `events-HH.parquet` (layout.py), each
sorted by timestamp, each with a footer saying which ranges of its hour its rows answer exactly
(file_format.py, ledger.py), or one day file `events.parquet` holding the whole day. The reads
are day_files.py's; analysts read the files directly (DuckDB).

Each `EventDataset` is one team's (`team=`: its key; None, the default, for the unprefixed
files): its writes, locks and quarantines touch only that team's files (layout.py).

`write_day` cuts the fetched ranges and the new rows at hour boundaries and rewrites only the
hour files those ranges touch: a refetch of 13:00-13:15 rewrites `events-13.parquet` and no
other file. In each file the write replaces the rows of the ranges it may take
(`Coverage.apply`: never those a newer fetch holds), keeps the rest, and lands as a whole new
file, replaced atomically on its own, so a reader globbing `event_date=*/*.parquet`
(`schema.DAY_FILES_GLOB`) sees each hour old or new, never a partial file, never a row twice
(every row lies in exactly one hour, hence in exactly one file).

Which kind a day gets is decided by its first write, and kept (`writes_day_file`): a day the
team has no hour files of, whose end lies `day_file_after` (settings.DAY_FILE_AFTER_HOURS)
before the write's `fetched_at`, is settled history: it is written as one day file (a backfill's
first write of an old day: one file instead of 24, faster to write, smaller, fewer to read).
Every later write of a day-file day rewrites that one file (rare: the day is settled); every
other day gets hour files. A day never changes kind: splitting or joining files takes several
replaces, and a reader between them would see rows twice or miss them. Day files written before
hour files existed are the same kind. How a new file becomes the file depends on the root:

- A local folder: under the day's lock (`FileDayLock`, flock on `_locks/`), the merged file is
  written to a hidden temp file in the day folder and renamed onto its name (files.py,
  `write_atomically`). A killed writer leaves a temp file that no reader's glob matches, and its
  lock dies with it; the next writer of that file removes the temp file.
- S3 (`s3://bucket/prefix`): no rename and no lock. Each merged file is built in a local
  unnamed temp file and uploaded straight to its final key (one PUT, or a multipart upload sent
  a part at a time when it is large), on condition that the key still holds the object it was
  merged from (`If-Match: <etag>`, or `If-None-Match: *` for a new file): either is atomic. A
  writer that loses the race reads the winner's file and merges again, so concurrent writers
  serialise per file without a lock and a dead one leaves nothing visible behind
  (object_store.py, docs/design.md, "Object storage").
- Another fsspec store needs a `lock_factory`; the write then goes through a temp file too.

The merge itself (merge.py) streams the old file and the new rows (spool.py) a row group at a
time, so a write's memory is bounded by a few row groups, not by the day's size. A file that
cannot be read back is moved aside alone (day_files.py) and its hour written anew.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from dropbox_team_log.dataset import integrity, layout, object_store
from dropbox_team_log.dataset.day_files import DayFiles
from dropbox_team_log.dataset.file_format import coverage_of, tail_of
from dropbox_team_log.dataset.files import remove_stale_temps, write_atomically
from dropbox_team_log.dataset.layout import DayFile
from dropbox_team_log.dataset.ledger import Coverage, merge_ranges
from dropbox_team_log.dataset.merge import WriteResult, merge_into
from dropbox_team_log.dataset.spool import BatchList, NewRows
from dropbox_team_log.dataset.tail_state import TailTag
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.timeutil import Range, day_bounds

#: Lost conditional PUTs in a row before a write gives up (each loss means another writer won).
MAX_WRITE_CONFLICTS = 20

log = logging.getLogger(__name__)


class ConcurrentWriteError(DropboxTeamLogError):
    """Other writers kept replacing a file while this one merged: retry the task later."""


class EventDataset(DayFiles):
    """The day-partitioned event dataset under `root` (a local path or an fsspec URL)."""

    # --- writing ---

    def write_day(
        self,
        day: date,
        fetched: Sequence[Range],
        rows: NewRows | Iterable[pa.RecordBatch],
        fetched_at: int,
        *,
        tail: TailTag | None = None,
        keep_tail_before: int | None = None,
    ) -> WriteResult:
        """Record that `fetched` ranges of `day` were read at `fetched_at`; `rows` hold them.

        `rows` is a `RowSpool` (a big day: its rows are read back a row group at a time) or the
        record batches themselves. Rows of the ranges this fetch may take replace the stored rows
        there; rows in ranges a newer fetch already holds are dropped; rows outside every fetched
        range raise ValueError. Only the hour files the ranges touch are rewritten (a day-file
        day, or a settled day without hour files: its one day file, `writes_day_file`), each
        atomically on its own; the result sums up those files. The
        rows are only read: the caller still owns (and closes) them. Each file written gets
        `tail` as its tail tag (a tail chain's start), or none: a replace write clears it,
        unless all it replaced lies before `keep_tail_before` (the chain's start: time the
        chain does not hold, so its rows stay as the chain left them).
        """
        ranges = _check_fetched(day, fetched, fetched_at)
        new = rows if isinstance(rows, NewRows) else BatchList(rows)
        new.check_inside(ranges)  # before the lock: validation needs no lock
        with self.lock(day):
            if self.writes_day_file(day, fetched_at):
                targets = {self.file_of(day, None): ranges}
            else:
                split = layout.split_by_hour(day, ranges)
                targets = {self.file_of(day, hour): pieces for hour, pieces in split.items()}
            results = [
                self._write_file(f, new, _replacing(part, fetched_at, tail, keep_tail_before))
                for f, part in targets.items()
            ]
        return _summed(results)

    def writes_day_file(self, day: date, as_of: int) -> bool:
        """Whether a write of this team's `day` at `as_of` goes to its one day file: the day
        has it already, or has no hour files and ended `day_file_after` before `as_of`. The
        caller holds the day's lock (S3 has none: two writers could only choose differently
        across the horizon; docs/design.md, "A day never changes kind")."""
        files = self.day_files(day)  # MixedLayoutError if both: never written so
        if files:
            return files[0].hour is None
        return day_bounds(day)[1] + self.day_file_after <= as_of

    def rewrite_at(self, day: date, second: int, rows: NewRows, plan: Plan) -> WriteResult:
        """Rewrite the file of this team's `day` that holds `second` (its day file if it has
        one, else that hour's file) as `plan` decides from its footer, atomically, under the
        day's lock (the tail's delta: dataset/tail_rows.py). The file is chosen under the lock,
        so a write that makes the day a day-file day meanwhile is seen."""
        with self.lock(day):
            hour = None if self.is_day_file(day) else layout.hour_of(day, second)
            return self._write_file(self.file_of(day, hour), rows, plan)

    def _write_file(self, file: DayFile, new: NewRows, plan: Plan) -> WriteResult:
        """Merge the new rows into one file of the day as `plan` says, and replace it."""
        path = self.path_of(file)
        if self.is_object_store:
            return self._write_conditional(file.day, path, new, plan)
        remove_stale_temps(self.fs, path)  # safe: we hold the day's lock
        try:
            return self._write_locked(path, new, plan)
        except integrity.READ_ERRORS as exc:
            # the old file may be damaged: if so it is moved aside and its time written anew
            if not self._set_aside_if_damaged(file.day, path, exc):
                raise
        return self._write_locked(path, new, plan)

    def _write_locked(self, path: str, new: NewRows, plan: Plan) -> WriteResult:
        exists = self.fs.exists(path)
        meta = self._footer(path) if exists else None
        before = coverage_of(meta, path) if meta is not None else Coverage()
        step = plan(before, tail_of(meta, path) if meta is not None else None, exists)
        if step is None:
            rows = meta.num_rows if meta is not None else 0
            return WriteResult(rows, rows, 0, 0, (), before)
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(self.fs.open(path, "rb")) if exists else None
            with write_atomically(self.fs, path) as sink:
                return step.merge(sink, source, path if exists else None, new)

    def _footer(self, path: str) -> pq.FileMetaData:
        with self.fs.open(path, "rb") as f:
            return pq.read_metadata(f)

    def _write_conditional(self, day: date, path: str, new: NewRows, plan: Plan) -> WriteResult:
        """Merge against the object as read, PUT the result only if it is still that object.

        A lost race (the ETag moved, the object appeared, or it changed while being read) means
        another writer committed first: read its result and plan and merge again, as a lock
        would have.
        """
        for _attempt in range(MAX_WRITE_CONFLICTS):
            try:
                with contextlib.ExitStack() as stack:
                    try:  # s3fs pins the ETag at open and reads with If-Match: one version only
                        source = stack.enter_context(self.fs.open(path, "rb"))
                    except FileNotFoundError:
                        source, etag, meta = None, None, None
                    else:
                        etag = source.details["ETag"]
                        meta = pq.read_metadata(source)
                    before = coverage_of(meta, path) if meta is not None else Coverage()
                    tag = tail_of(meta, path) if meta is not None else None
                    step = plan(before, tag, source is not None)
                    if step is None:
                        rows = 0 if meta is None else meta.num_rows
                        return WriteResult(rows, rows, 0, 0, (), before)
                    sink = stack.enter_context(tempfile.TemporaryFile())  # unnamed: dies with us
                    result = step.merge(sink, source, path, new)
                    object_store.upload_if(self.fs, path, sink, etag)  # a part at a time
                    return result
            except object_store.lost_race_errors() as exc:
                log.info("%s: another writer committed first (%s); merging again", path, exc)
                self.fs.invalidate_cache(path)
            except integrity.READ_ERRORS as exc:
                # a damaged object is copied aside and deleted: the next attempt writes anew
                if not self._set_aside_if_damaged(day, path, exc):
                    raise
                self.fs.invalidate_cache(path)
        raise ConcurrentWriteError(
            f"{path} changed {MAX_WRITE_CONFLICTS} times while this write merged: too many "
            "concurrent writers of one day (let the task retry)"
        )


@dataclass(frozen=True)
class FileWrite:
    """How one file is rewritten: new rows of `taken` in (replacing the old rows there, or
    `add`ed to them), the footer's new coverage and tail tag."""

    taken: list[Range]
    coverage: Coverage
    add: bool = False
    tail: TailTag | None = None

    def merge(
        self, sink: IO[bytes], source: IO[bytes] | None, path: str | None, new: NewRows
    ) -> WriteResult:
        return merge_into(
            sink, source, path, new, self.taken, self.coverage, add=self.add, tail=self.tail
        )


#: Given a file's footer coverage, tail tag and whether it exists: how to rewrite it, or None.
Plan = Callable[[Coverage, TailTag | None, bool], FileWrite | None]


def _replacing(
    ranges: list[Range], fetched_at: int, tail: TailTag | None, keep_before: int | None
) -> Plan:
    """The plan of a replace write: take what no newer fetch holds; tag the file `tail` (or
    keep its tag if all it takes lies before `keep_before`)."""

    def plan(before: Coverage, tag: TailTag | None, _exists: bool) -> FileWrite | None:
        coverage, taken = before.apply(ranges, fetched_at)
        if not taken:
            return None
        if tail is None and keep_before is not None and all(e <= keep_before for _, e in taken):
            return FileWrite(taken, coverage, tail=tag)
        return FileWrite(taken, coverage, tail=tail)

    return plan


def _summed(results: list[WriteResult]) -> WriteResult:
    """One write's result over the files it touched (their rows, before and after)."""
    return WriteResult(
        rows_before=sum(r.rows_before for r in results),
        rows_after=sum(r.rows_after for r in results),
        rows_replaced=sum(r.rows_replaced for r in results),
        rows_added=sum(r.rows_added for r in results),
        taken_ranges=tuple(merge_ranges(t for r in results for t in r.taken_ranges)),
        coverage=Coverage.of([i for r in results for i in r.coverage.intervals]),
        files_written=sum(r.files_written for r in results),
        rows_written=sum(r.rows_written for r in results),
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
