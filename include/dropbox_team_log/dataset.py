"""The hive-partitioned Parquet dataset: one file per UTC day, replaced atomically.

`<root>/event_date=YYYY-MM-DD/events.parquet` holds a day's rows sorted by timestamp; its footer
key `dropbox_team_log.coverage` says which ranges those rows answer exactly (see coverage.py). A
write takes the day's lock, replaces the rows of the ranges it may take, keeps the rest, and swaps
the file in with one rename, so a reader globbing `event_date=*/*.parquet` sees the old day or the
new one: never a partial file, never a row twice. The old file is streamed row group by row group,
so a big day is not held in memory twice.

On S3 (`s3://bucket/prefix`) there is no rename and no lock: the merged file is built in a local
unnamed temp file and PUT straight to its final key, conditionally on the ETag it was merged
from (`If-Match`, or `If-None-Match: *` for a new day). A writer that loses the race re-reads the
day and merges again, so concurrent writers serialise without a lock and a dead one leaves
nothing behind (see docs/design.md, "Object storage").
"""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import IO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log import object_store
from dropbox_team_log.coverage import Coverage, Range, merge_ranges
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.transform import EVENT_SCHEMA

FILE_NAME = "events.parquet"
PARTITION_KEY = "event_date"
LOCK_DIR = "_locks"
COVERAGE_KEY = b"dropbox_team_log.coverage"
VERSION_KEY = b"dropbox_team_log.version"
FORMAT_VERSION = b"1"
ROW_GROUP_ROWS = 128 * 1024
READ_BATCH_ROWS = 16 * 1024  # old rows are streamed in small batches: less memory pinned
DIR_MODE = 0o750  # the log names people: no access for others
FILE_MODE = 0o640
DAY_SECONDS = 86_400
#: Lost conditional PUTs in a row before a write gives up (each loss means another writer won).
MAX_WRITE_CONFLICTS = 20

log = logging.getLogger(__name__)

_TEMP_PREFIX = f".{FILE_NAME}."
_TEMP_SUFFIX = ".tmp"
_DAY_DIR_RE = re.compile(rf"{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
# raw_event is unique per row: a dictionary would only be built to be thrown away.
_DICTIONARY_COLUMNS = [name for name in EVENT_SCHEMA.names if name != "raw_event"]

LockFactory = Callable[[date], AbstractContextManager]
_Data = TypeVar("_Data", pa.RecordBatch, pa.Table)


@dataclass(frozen=True)
class WriteResult:
    """What one `write_day` changed (counts are rows of the day file)."""

    rows_before: int
    rows_after: int
    rows_replaced: int
    rows_added: int
    taken_ranges: tuple[Range, ...]
    coverage: Coverage = field(default_factory=Coverage)


class ConcurrentWriteError(DropboxTeamLogError):
    """Other writers kept replacing the day while this one merged: retry the task later."""


class FileDayLock:
    """Exclusive per-day lock on a local lock file (`fcntl.flock`).

    flock belongs to the open file description, so it serialises threads of one process as well
    as processes, and the kernel drops it when a killed writer dies. An object-store lock can
    stand in for this class via `EventDataset(lock_factory=...)`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> FileDayLock:
        _make_dirs(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _make_dirs(path: str) -> None:
    """Create a folder (and parents) so the folder itself gets DIR_MODE despite makedirs."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        _make_dirs(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)


def day_bounds(day: date) -> Range:
    """[start, end) of a UTC day in epoch seconds."""
    start = calendar.timegm(day.timetuple())
    return start, start + DAY_SECONDS


def _in_ranges(ts: np.ndarray, ranges: Sequence[Range]) -> np.ndarray:
    """Boolean mask: which epoch seconds fall in one of the sorted, disjoint ranges."""
    if not ranges:
        return np.zeros(len(ts), dtype=bool)
    starts = np.array([s for s, _ in ranges], dtype=np.int64)
    ends = np.array([e for _, e in ranges], dtype=np.int64)
    idx = np.searchsorted(starts, ts, side="right") - 1
    return (idx >= 0) & (ts < ends[np.maximum(idx, 0)])


def _seconds(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The timestamp column as int64 epoch seconds."""
    return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)


# Parquet has no seconds unit: `timestamp` is stored (and read back) as milliseconds.
_STORED_SCHEMA = EVENT_SCHEMA.set(0, EVENT_SCHEMA.field(0).with_type(pa.timestamp("ms", tz="UTC")))


def _check_schema(schema: pa.Schema, what: str) -> None:
    """Every file holds exactly EVENT_SCHEMA; anything else is a bug or a foreign file."""
    if not (
        schema.equals(EVENT_SCHEMA, check_metadata=False)
        or schema.equals(_STORED_SCHEMA, check_metadata=False)
    ):
        raise ValueError(f"{what} does not have the dataset schema (EVENT_SCHEMA):\n{schema}")


def _conform(data: _Data, what: str) -> _Data:
    """Data as EVENT_SCHEMA: metadata dropped, stored ms timestamps cast back to whole seconds."""
    _check_schema(data.schema, what)
    data = data.replace_schema_metadata(None)
    if data.schema.equals(EVENT_SCHEMA):
        return data
    return data.cast(EVENT_SCHEMA)  # safe cast: a fractional second would raise


class _NewRows:
    """The fetched rows of one write: validated, then handed out sorted in bounded pieces."""

    def __init__(self, batches: Iterable[pa.RecordBatch], fetched: Sequence[Range]) -> None:
        self.batches: list[pa.RecordBatch] = []
        seconds: list[np.ndarray] = []
        for given in batches:
            batch = _conform(given, "a batch to write")
            if batch.num_rows:
                self.batches.append(batch)
                seconds.append(_seconds(batch.column(0)))
        self.offsets = np.cumsum([0] + [b.num_rows for b in self.batches], dtype=np.int64)
        self.ts = np.concatenate(seconds) if seconds else np.zeros(0, dtype=np.int64)
        outside = ~_in_ranges(self.ts, fetched)
        if outside.any():
            first = int(self.ts[outside][0])
            raise ValueError(
                f"{int(outside.sum())} rows lie outside every fetched range {fetched} "
                f"(e.g. timestamp {first}): the fetch and the ranges disagree"
            )

    def sorted_taken(self, taken: Sequence[Range]) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the rows inside `taken`, stably sorted by timestamp, and their seconds."""
        idx = np.flatnonzero(_in_ranges(self.ts, taken))
        order = idx[np.argsort(self.ts[idx], kind="stable")]
        return order, self.ts[order]

    def take(self, indices: np.ndarray) -> pa.Table:
        """Rows at these global indices, in this order, without concatenating all batches.

        Copies as little as it can: API pages are chronological chunks, so a sorted piece
        usually reads each batch once, in batch order, and needs no final reordering.
        """
        batch_of = np.searchsorted(self.offsets, indices, side="right") - 1
        grouping = np.argsort(batch_of, kind="stable")
        grouped, groups = indices[grouping], batch_of[grouping]
        bounds = np.flatnonzero(np.diff(groups)) + 1
        pieces = [
            _rows_of(self.batches[int(ids[0])], part - self.offsets[int(ids[0])])
            for part, ids in zip(np.split(grouped, bounds), np.split(groups, bounds), strict=True)
        ]
        table = pa.Table.from_batches(pieces, schema=EVENT_SCHEMA)
        if np.all(grouping[1:] > grouping[:-1]):
            return table  # grouping was the identity: already in the requested order
        inverse = np.empty_like(grouping)
        inverse[grouping] = np.arange(len(grouping))
        return table.take(pa.array(inverse))


def _rows_of(batch: pa.RecordBatch, local: np.ndarray) -> pa.RecordBatch:
    """These rows of a batch: a zero-copy slice when they are consecutive and in order."""
    if len(local) and local[-1] - local[0] == len(local) - 1 and np.all(np.diff(local) == 1):
        return batch.slice(int(local[0]), len(local))
    return batch.take(pa.array(local))


class _RowGroupWriter:
    """Buffers sorted pieces and writes them as full row groups of ROW_GROUP_ROWS."""

    def __init__(self, sink: IO[bytes], coverage: Coverage) -> None:
        schema = EVENT_SCHEMA.with_metadata(
            {COVERAGE_KEY: coverage.to_json().encode(), VERSION_KEY: FORMAT_VERSION}
        )
        self._writer = pq.ParquetWriter(
            sink,
            schema,
            compression="zstd",
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=True,
            sorting_columns=[pq.SortingColumn(0)],
        )
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def add(self, piece: pa.Table) -> None:
        if piece.num_rows == 0:
            return
        self._pending.append(piece)
        self._pending_rows += piece.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        table = pa.concat_tables(self._pending)
        full = table.num_rows if final else table.num_rows - table.num_rows % ROW_GROUP_ROWS
        if full:
            self._writer.write_table(table.slice(0, full), row_group_size=ROW_GROUP_ROWS)
            self.rows += full
        rest = table.slice(full)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self, *, flush: bool = True) -> None:
        """Write what is buffered (unless giving up after an error) and the footer."""
        try:
            if flush and self._pending:
                self._flush(final=True)
        finally:
            self._writer.close()


def _merge(
    old: Iterator[pa.RecordBatch], new: _NewRows, new_order: np.ndarray, new_ts: np.ndarray
) -> Iterator[pa.Table]:
    """Sorted pieces of (old rows) + (new rows), each of at most ROW_GROUP_ROWS rows.

    Kept old rows and new rows never share a second (one lies outside the taken ranges, the
    other inside), so interleaving by timestamp is unambiguous and the result stays stable.
    """
    pos, n_new = 0, len(new_order)

    def new_until(stop: int) -> Iterator[pa.Table]:
        nonlocal pos
        while pos < stop:
            end = min(stop, pos + ROW_GROUP_ROWS)
            yield new.take(new_order[pos:end])
            pos = end

    for batch in old:
        ts = _seconds(batch.column(0))
        i = 0
        while i < len(ts):
            yield from new_until(int(np.searchsorted(new_ts, ts[i], side="left")))
            next_new = new_ts[pos] if pos < n_new else np.iinfo(np.int64).max
            k = int(np.searchsorted(ts, next_new, side="left"))
            k = min(max(k, i + 1), i + ROW_GROUP_ROWS)  # max: progress even on a shared second
            yield pa.Table.from_batches([batch.slice(i, k - i)])
            i = k
    yield from new_until(n_new)


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
            return _coverage_of(pq.read_metadata(f), path)

    def read_day(self, day: date) -> pa.Table:
        """All rows of one day, sorted by timestamp (empty table when there is no file)."""
        path = self.day_path(day)
        if not self.fs.exists(path):
            return EVENT_SCHEMA.empty_table()
        with self.fs.open(path, "rb") as f:
            return _conform(pq.read_table(f), path)

    # --- writing ---

    def write_day(
        self,
        day: date,
        fetched: Sequence[Range],
        batches: Iterable[pa.RecordBatch],
        fetched_at: int,
    ) -> WriteResult:
        """Record that `fetched` ranges of `day` were read at `fetched_at`; `batches` hold them.

        Rows of the ranges this fetch may take replace the file's rows there; rows in ranges a
        newer fetch already holds are dropped; rows outside every fetched range raise ValueError.
        """
        ranges = _check_fetched(day, fetched, fetched_at)
        new = _NewRows(batches, ranges)  # before the lock: validation needs no lock
        with self.lock(day):
            if self.is_object_store:
                return self._write_conditional(day, ranges, new, fetched_at)
            self._remove_stale_temps(day)
            path = self.day_path(day)
            exists = self.fs.exists(path)
            before = self.read_coverage(day) if exists else Coverage()
            coverage, taken = before.apply(ranges, fetched_at)
            if not taken:
                rows = self._row_count(path) if exists else 0
                return WriteResult(rows, rows, 0, 0, (), before)
            return self._rewrite(day, path if exists else None, new, taken, coverage)

    def _row_count(self, path: str) -> int:
        with self.fs.open(path, "rb") as f:
            return pq.read_metadata(f).num_rows

    def _rewrite(
        self,
        day: date,
        old_path: str | None,
        new: _NewRows,
        taken: list[Range],
        coverage: Coverage,
    ) -> WriteResult:
        """Stream old rows outside `taken` and new rows inside it into a fresh file; swap it in."""
        with contextlib.ExitStack() as stack:
            source = None if old_path is None else stack.enter_context(self.fs.open(old_path, "rb"))
            with self._atomic_writer(day) as sink:
                return _merge_into(sink, source, old_path, new, taken, coverage)

    def _write_conditional(
        self, day: date, ranges: list[Range], new: _NewRows, fetched_at: int
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
                        before = _coverage_of(pq.read_metadata(source), path)
                    coverage, taken = before.apply(ranges, fetched_at)
                    if not taken:
                        rows = 0 if source is None else pq.read_metadata(source).num_rows
                        return WriteResult(rows, rows, 0, 0, (), before)
                    sink = stack.enter_context(tempfile.TemporaryFile())  # unnamed: dies with us
                    result = _merge_into(sink, source, path, new, taken, coverage)
                    sink.seek(0)
                    object_store.put_if(self.fs, path, sink.read(), etag)
                    return result
            except (object_store.WriteConflict, object_store.FileExpired) as exc:
                log.info("%s: another writer committed first (%s); merging again", day, exc)
                self.fs.invalidate_cache(path)
        raise ConcurrentWriteError(
            f"{path} changed {MAX_WRITE_CONFLICTS} times while this write merged: too many "
            "concurrent writers of one day (let the task retry)"
        )

    @contextlib.contextmanager
    def _atomic_writer(self, day: date) -> Generator[IO[bytes], None, None]:
        """A hidden temp file in the day folder, renamed onto events.parquet on success."""
        folder = self.day_dir(day)
        temp = f"{folder}/{_TEMP_PREFIX}{uuid.uuid4().hex}{_TEMP_SUFFIX}"
        final = self.day_path(day)
        if not self.is_local:  # an fsspec store with an explicit lock_factory
            try:
                with self.fs.open(temp, "wb") as sink:
                    yield sink
                self.fs.mv(temp, final)  # a copy + delete
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(temp)
            return
        _make_dirs(folder)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as sink:
                yield sink
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        _fsync_dir(folder)

    def _remove_stale_temps(self, day: date) -> None:
        """Temp files left by killed writers (safe: we hold the day's lock)."""
        for path in self.fs.glob(f"{self.day_dir(day)}/{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)


def _merge_into(
    sink: IO[bytes],
    source: IO[bytes] | None,
    old_path: str | None,
    new: _NewRows,
    taken: list[Range],
    coverage: Coverage,
) -> WriteResult:
    """Write old rows outside `taken` and new rows inside it, sorted, as one Parquet file."""
    new_order, new_ts = new.sorted_taken(taken)
    old = _OldRows(source, taken, old_path)
    writer = _RowGroupWriter(sink, coverage)
    try:
        for piece in _merge(old.kept(), new, new_order, new_ts):
            writer.add(piece)
    except BaseException:
        writer.close(flush=False)
        raise
    writer.close()
    after = old.rows - old.replaced + len(new_order)
    if writer.rows != after:  # pragma: no cover - an invariant: never swap it in
        raise AssertionError(f"wrote {writer.rows} rows, expected {after}")
    return WriteResult(old.rows, after, old.replaced, len(new_order), tuple(taken), coverage)


class _OldRows:
    """The current day file read a row group at a time, minus the rows of `taken`."""

    def __init__(self, source: IO[bytes] | None, taken: Sequence[Range], path: str | None):
        self.file = None if source is None else pq.ParquetFile(source)
        self.taken = taken
        self.path = path
        self.rows = 0 if self.file is None else self.file.metadata.num_rows
        self.replaced = 0
        if self.file is not None:
            _check_schema(self.file.schema_arrow, str(path))

    def kept(self) -> Iterator[pa.RecordBatch]:
        """Rows outside `taken`, in file order (checked sorted), counting those dropped."""
        if self.file is None:
            return
        last = np.iinfo(np.int64).min
        for stored in self.file.iter_batches(batch_size=READ_BATCH_ROWS):
            batch = _conform(stored, str(self.path))
            ts = _seconds(batch.column(0))
            if not len(ts):
                continue
            if ts[0] < last or np.any(np.diff(ts) < 0):
                raise ValueError(f"{self.path} is not sorted by timestamp: refusing to merge")
            last = int(ts[-1])
            drop = _in_ranges(ts, self.taken)
            self.replaced += int(drop.sum())
            kept = batch.filter(pa.array(~drop)) if drop.any() else batch
            if kept.num_rows:
                yield kept


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


def _coverage_of(metadata: pq.FileMetaData, path: str) -> Coverage:
    """Coverage from a footer; a day file without it is foreign or corrupt, never guessed."""
    kv = metadata.metadata or {}
    if kv.get(VERSION_KEY) != FORMAT_VERSION or COVERAGE_KEY not in kv:
        raise ValueError(
            f"{path} has no {COVERAGE_KEY.decode()} metadata of format version "
            f"{FORMAT_VERSION.decode()}: not written by this package"
        )
    return Coverage.from_json(kv[COVERAGE_KEY])


def _fsync_dir(path: str) -> None:
    """Make the rename itself durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_all(root: str) -> pa.Table:
    """The whole dataset through DuckDB's hive partitioning (`event_date` as a DATE column).

    This is how downstream readers see the data, so tests use it to prove what they see.
    """
    import duckdb  # imported here: only readers and tests need it

    fs, path = object_store.filesystem(str(root))
    pattern = f"{path.rstrip('/')}/{PARTITION_KEY}=*/*.parquet"
    con = duckdb.connect()
    try:
        if not fs.glob(pattern):
            return EVENT_SCHEMA.append(pa.field(PARTITION_KEY, pa.date32())).empty_table()
        if not isinstance(fs, LocalFileSystem):
            con.register_filesystem(fs)
            pattern = fs.unstrip_protocol(pattern)
        query = "SELECT * FROM read_parquet($pattern, hive_partitioning = true)"
        return con.sql(query, params={"pattern": pattern}).to_arrow_table()
    finally:
        con.close()
