"""The hive-partitioned Parquet dataset: one file per UTC day, replaced atomically.

`<root>/event_date=YYYY-MM-DD/events.parquet` holds a day's rows sorted by timestamp; its footer
key `dropbox_team_log.coverage` says which ranges those rows answer exactly (see coverage.py). A
write takes the day's lock, replaces the rows of the ranges it may take, keeps the rest, and swaps
the file in with one rename, so a reader globbing `event_date=*/*.parquet` sees the old day or the
new one: never a partial file, never a row twice. The old file is streamed row group by row group,
and the new rows come from a `RowSpool` (what the sync's page worker adds to: memory for a small
day, a temp file past its budget) a row group at a time in timestamp order, so memory is bounded
by a few row groups and that budget, not by the day's size.

On S3 (`s3://bucket/prefix`) there is no rename and no lock: the merged file is built in a local
unnamed temp file and PUT straight to its final key, conditionally on the ETag it was merged
from (`If-Match`, or `If-None-Match: *` for a new day). A writer that loses the race re-reads the
day and merges again, so concurrent writers serialise without a lock and a dead one leaves
nothing behind (see docs/design.md, "Object storage").
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Self, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.ledger import Coverage, merge_ranges
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.schema import EVENT_SCHEMA, PARTITION_KEY
from dropbox_team_log.timeutil import Range, day_bounds

FILE_NAME = "events.parquet"
LOCK_DIR = "_locks"
COVERAGE_KEY = b"dropbox_team_log.coverage"
VERSION_KEY = b"dropbox_team_log.version"
FORMAT_VERSION = b"1"
#: Rows of a Parquet row group, and so about the most rows a write holds at once (~2 KB a row
#: in memory: ~17 MB). Bigger groups barely compress better: 128k saves 10%, 12k 3%, and 12k
#: costs ~8 MB more peak, which a 2M-event day in 300 MB cannot spare (docs/design.md).
ROW_GROUP_ROWS = 8 * 1024
#: Old rows are streamed in batches this big: a row group of the new file pins at most two.
READ_BATCH_ROWS = 4 * 1024
#: RowSpool's temp file: zstd makes it half lz4's size (~200 B a row: 400 MB for 2M events) for
#: ~1 ms more per 1000-row page, added by the page worker while slice threads wait on the API.
SPOOL_COMPRESSION = "zstd"
#: A RowSpool holds its batches in memory up to this many bytes (~16k events), then spills them
#: all to its temp file. A big day spills at its first pages, yet the moment it does holds the
#: budget on top of the pages in flight: the 2M-event day peaks at 268 MB with 32 MB, 291 MB
#: with 64 MB (docs/performance.md).
SPOOL_MEMORY_BYTES = 32 * 1024 * 1024
#: Decoded spool batches kept for the next sorted piece (one API page each, ~2 MB).
SPOOL_CACHE_BATCHES = 4
#: A sorted piece is read run by run while it has at most this many runs per batch it touches.
RUNS_PER_BATCH = 4
DIR_MODE = 0o750  # the log names people: no access for others
FILE_MODE = 0o640
#: Lost conditional PUTs in a row before a write gives up (each loss means another writer won).
MAX_WRITE_CONFLICTS = 20

log = logging.getLogger(__name__)

_TEMP_PREFIX = f".{FILE_NAME}."
_TEMP_SUFFIX = ".tmp"
_DAY_DIR_RE = re.compile(rf"{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
# raw_event is unique per row, and a day's sorted timestamps nearly so: a dictionary would only be
# built to be thrown away (plain timestamps are also smaller: ~1.9 B a row against ~3.3).
_DICTIONARY_COLUMNS = [n for n in EVENT_SCHEMA.names if n not in ("raw_event", "timestamp")]
# Min/max of JSON text prune nothing and put two event-sized values per row group in the footer:
# statistics for the other columns only (-4% bytes, -4% write time).
_JSON_COLUMNS = ("raw_event", "assets", "participants", "details")
_STATISTICS_COLUMNS = [n for n in EVENT_SCHEMA.names if n not in _JSON_COLUMNS]

# A page is ~2 MB: (de)compressing its columns on Arrow's thread pool gains little, and every
# thread that allocates keeps its own mimalloc heap of freed pages (measured: +40 MB RSS a day).
_SPOOL_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)

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


def in_ranges(ts: np.ndarray, ranges: Sequence[Range]) -> np.ndarray:
    """Boolean mask: which epoch seconds fall in one of the sorted, disjoint ranges."""
    if not ranges:
        return np.zeros(len(ts), dtype=bool)
    starts = np.array([s for s, _ in ranges], dtype=np.int64)
    ends = np.array([e for _, e in ranges], dtype=np.int64)
    idx = np.searchsorted(starts, ts, side="right") - 1
    return (idx >= 0) & (ts < ends[np.maximum(idx, 0)])


def _seconds(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The timestamp column (never null) as int64 epoch seconds: a view of Arrow's buffer.

    Read from the buffers rather than `to_numpy()`, whose conversion imports pandas (see
    `task_memory`). The view pins the column's buffer: copy it to keep it past the batch.
    """
    values = column.cast(pa.int64())
    if values.null_count:
        raise ValueError("a timestamp column holds nulls")
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    views = [np.frombuffer(c.buffers()[1], np.int64, len(c), c.offset * 8) for c in chunks]
    if len(views) == 1:
        return views[0]
    return np.concatenate(views) if views else np.zeros(0, np.int64)


def _narrow(offsets: np.ndarray) -> np.ndarray:
    """int64 seconds as int32 when they fit (a day's rows always do): half the memory."""
    info = np.iinfo(np.int32)
    if len(offsets) and (offsets.min() < info.min or offsets.max() > info.max):
        return offsets
    return offsets.astype(np.int32)


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


class NewRows:
    """The new rows of one write: added a batch at a time, partly discarded, read back sorted.

    Only each row's timestamp stays in this object (4 bytes: seconds from the first row added,
    8 where that does not fit); where the batches live is up to a
    subclass: `RowSpool` spills them to a temp file (a big day), `_BatchList` keeps them in
    memory (small writes, callers that already hold the batches). `add` and `discard_from` are
    thread-safe, so pages can be added from any thread as they arrive. A batch's id is its
    position in add order, and rows of one second keep that order in the file.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: list[np.ndarray] = []  # per batch: its rows' seconds from _epoch
        self._epoch = 0  # the first row's epoch second (set by the first add)
        self._cutoffs: list[int | None] = []  # per batch: its rows at/after this are discarded
        self._offsets: list[int] = [0]  # global number of each batch's first row
        self._sealed = False  # read back: no more batches
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release what holds the rows (idempotent; later adds and reads raise)."""
        self.closed = True

    def add(self, batch: pa.RecordBatch) -> int:
        """Keep a batch (checked and conformed to EVENT_SCHEMA); returns its id for discards."""
        batch = _conform(batch, "a batch to write")
        seconds = _seconds(batch.column(0)).copy()  # a copy: must not pin the batch's buffers
        batch, seconds = self._arrange(batch, seconds)
        with self._lock:
            if self.closed:
                raise ValueError("these rows are closed: nothing can be added")
            if self._sealed:
                raise ValueError("rows were already read back: add every batch before write_day")
            self._store(batch)
            if not self._seconds and len(seconds):
                self._epoch = int(seconds[0])
            self._seconds.append(_narrow(seconds - self._epoch))
            self._cutoffs.append(None)
            self._offsets.append(self._offsets[-1] + len(seconds))
            return len(self._seconds) - 1

    def discard_from(self, batch_ids: Iterable[int], cutoff: int) -> None:
        """Forget the rows of these batches with timestamp >= cutoff (epoch seconds).

        This is how a cursor restart is applied: the reader re-reads from `cutoff`, so what its
        earlier batches hold from there on would otherwise be there twice.
        """
        with self._lock:
            for batch_id in batch_ids:
                current = self._cutoffs[batch_id]
                self._cutoffs[batch_id] = cutoff if current is None else min(current, cutoff)

    def live_rows(self, batch_ids: Iterable[int] | None = None) -> int:
        """Rows not discarded, of these batches (default: of all)."""
        with self._lock:
            ids = range(len(self._seconds)) if batch_ids is None else batch_ids
            return sum(int(np.count_nonzero(self._live(batch_id))) for batch_id in ids)

    def _batch_seconds(self, batch_id: int) -> np.ndarray:
        """A batch's rows' epoch seconds (int64)."""
        return self._seconds[batch_id] + np.int64(self._epoch)

    def _live(self, batch_id: int, seconds: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of a batch's rows that were not discarded."""
        cutoff = self._cutoffs[batch_id]
        if cutoff is None:
            return np.ones(len(self._seconds[batch_id]), dtype=bool)
        return (self._batch_seconds(batch_id) if seconds is None else seconds) < cutoff

    def check_inside(self, fetched: Sequence[Range]) -> None:
        """Raise ValueError if a live row lies outside every fetched range (the caller erred)."""
        outside, example = 0, 0
        with self._lock:
            for batch_id in range(len(self._seconds)):
                seconds = self._batch_seconds(batch_id)
                live = seconds[self._live(batch_id, seconds)]
                stray = live[~in_ranges(live, fetched)]
                if len(stray) and not outside:
                    example = int(stray[0])
                outside += len(stray)
        if outside:
            raise ValueError(
                f"{outside} rows lie outside every fetched range {list(fetched)} "
                f"(e.g. timestamp {example}): the fetch and the ranges disagree"
            )

    def sorted_taken(self, taken: Sequence[Range]) -> _SortedRows:
        """The live rows inside `taken`, stably sorted by timestamp (ties keep add order).

        One int64 key per row, (second - first taken second) * total rows + row number, sorts in
        place with no argsort index and no copy of the timestamps: stable because row numbers are
        unique, and a day's 86,400 seconds times any row count fits in 63 bits.
        """
        with self._lock:
            if self.closed:
                raise ValueError("these rows are closed: write_day needs them open")
            if not self._sealed:
                self._seal()
                self._sealed = True
            total = self._offsets[-1]
            stride = max(total, 1)
            base = taken[0][0] if taken else 0
            keys = np.empty(total, dtype=np.int64)
            count = 0
            for batch_id in range(len(self._seconds)):
                seconds = self._batch_seconds(batch_id)
                local = np.flatnonzero(self._live(batch_id, seconds) & in_ranges(seconds, taken))
                end = count + len(local)
                first_row = self._offsets[batch_id]
                keys[count:end] = (seconds[local] - base) * stride + (first_row + local)
                count = end
        keys = keys[:count]
        keys.sort()
        return _SortedRows(self, keys, base, stride)

    def _take(self, rows: np.ndarray) -> pa.Table:
        """Rows at these global row numbers, in this order, copying as little as it can.

        API pages are chronological chunks and slices are disjoint in time, so a sorted piece
        visits a few batches at a time in long runs (a second split over two pages interleaves
        them briefly): each run is one piece, a zero-copy slice when the batch was stored sorted
        (RowSpool), and they are already in order. Rows in no such order (runs of a row or two)
        are gathered batch by batch and reordered at the end, which holds the piece twice.
        """
        if not len(rows):
            return EVENT_SCHEMA.empty_table()
        offsets = np.asarray(self._offsets, dtype=np.int64)
        batch_of = np.searchsorted(offsets, rows, side="right") - 1
        breaks = np.flatnonzero(np.diff(batch_of)) + 1
        run_batches = batch_of[np.concatenate(([0], breaks))]
        if len(run_batches) <= RUNS_PER_BATCH * len(np.unique(run_batches)):
            pieces = [
                _rows_of(self._batch(int(b)), run - offsets[b])
                for run, b in zip(np.split(rows, breaks), run_batches, strict=True)
            ]
            return pa.Table.from_batches(pieces, schema=EVENT_SCHEMA)
        grouping = np.argsort(batch_of, kind="stable")
        grouped, groups = rows[grouping], batch_of[grouping]
        bounds = np.flatnonzero(np.diff(groups)) + 1
        pieces = [
            _rows_of(self._batch(int(ids[0])), part - offsets[int(ids[0])])
            for part, ids in zip(np.split(grouped, bounds), np.split(groups, bounds), strict=True)
        ]
        inverse = np.empty_like(grouping)
        inverse[grouping] = np.arange(len(grouping))
        return pa.Table.from_batches(pieces, schema=EVENT_SCHEMA).take(pa.array(inverse))

    def _arrange(
        self, batch: pa.RecordBatch, seconds: np.ndarray
    ) -> tuple[pa.RecordBatch, np.ndarray]:
        """The batch as it is to be stored (called by the adding thread, without the lock)."""
        return batch, seconds

    def _store(self, batch: pa.RecordBatch) -> None:
        """Keep a batch as number len(self._seconds) (called with the lock held)."""
        raise NotImplementedError

    def _seal(self) -> None:
        """No more batches will come: get ready to read them back (called with the lock held)."""

    def _batch(self, batch_id: int) -> pa.RecordBatch:
        """A stored batch, whole."""
        raise NotImplementedError


class _BatchList(NewRows):
    """New rows whose batches stay in memory: for small writes and callers that hold them."""

    def __init__(self, batches: Iterable[pa.RecordBatch] = ()) -> None:
        super().__init__()
        self._batches: list[pa.RecordBatch] = []
        for batch in batches:
            self.add(batch)

    def _store(self, batch: pa.RecordBatch) -> None:
        self._batches.append(batch)

    def _batch(self, batch_id: int) -> pa.RecordBatch:
        return self._batches[batch_id]


class RowSpool(NewRows):
    """New rows kept in memory while they are few, else spilled to an unnamed temp file.

    A day's write stays in bounded memory: once the batches held pass `memory_bytes`, they and
    every later batch go to a compressed Arrow IPC file in `tempfile.TemporaryFile()` (the
    system temp dir, TMPDIR), in add order, so a batch's id stays its position. The file has no
    name: the kernel frees it when the spool is closed or the process dies. Reading back uses
    ordinary reads of one batch at a time, never a memory map (mapped pages count as the
    process's memory), with a small cache: a sorted piece usually ends inside the batch the
    next piece starts with. A small day never touches the file: compressing its pages while the
    API answers and reading them back before the write cost ~15 ms a day for nothing.
    Use it as a context manager.
    """

    def __init__(self, *, memory_bytes: int | None = None) -> None:
        super().__init__()
        self._memory_bytes = SPOOL_MEMORY_BYTES if memory_bytes is None else memory_bytes
        self._held: list[pa.RecordBatch] | None = []  # None once spilled
        self._held_bytes = 0
        self._file: IO[bytes] | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._reader: pa.ipc.RecordBatchFileReader | None = None
        self._cache: OrderedDict[int, pa.RecordBatch] = OrderedDict()

    @property
    def spilled(self) -> bool:
        """Whether the rows went to the temp file (past `memory_bytes`)."""
        return self._held is None

    def close(self) -> None:
        """Delete the temp file, drop held batches (idempotent; later adds and reads raise)."""
        with self._lock:
            super().close()
            self._cache.clear()
            if self._held is not None:
                self._held.clear()
            self._reader = None
            try:
                self._close_writer()  # else its destructor would write to a closed file
            finally:
                if self._file is not None:
                    self._file.close()

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _arrange(
        self, batch: pa.RecordBatch, seconds: np.ndarray
    ) -> tuple[pa.RecordBatch, np.ndarray]:
        """Sorted by timestamp (stable: a second's rows keep their order) by the adding thread.

        Rows of one batch then come back as runs of consecutive rows, which are zero-copy
        slices of the decoded batch rather than copies gathered row by row.
        """
        if len(seconds) < 2 or np.all(seconds[1:] >= seconds[:-1]):
            return batch, seconds
        order = np.argsort(seconds, kind="stable")
        return batch.take(pa.array(order)), seconds[order]

    def _store(self, batch: pa.RecordBatch) -> None:
        if self._held is None:
            if self._writer is None:  # pragma: no cover - add checks closed and sealed first
                raise ValueError("the spool is no longer open for adding")
            self._writer.write_batch(batch)
            return
        self._held.append(batch)
        self._held_bytes += batch.nbytes
        if self._held_bytes > self._memory_bytes:
            self._spill()

    def _spill(self) -> None:
        """Move the held batches to a new temp file, in id order; later batches follow them."""
        # it lives until close(), not for one block:
        self._file = tempfile.TemporaryFile()  # ruff: ignore[open-file-with-context-handler]
        options = pa.ipc.IpcWriteOptions(compression=SPOOL_COMPRESSION, use_threads=False)
        self._writer = pa.ipc.new_file(self._file, EVENT_SCHEMA, options=options)
        held, self._held = self._held, None
        for batch in held or ():
            self._writer.write_batch(batch)

    def _seal(self) -> None:
        if self._held is not None:
            return  # read straight from memory
        self._close_writer()  # writes the footer: the batches can now be read by number
        if self._file is not None:  # else close() came first: _batch says so
            self._file.flush()
            self._reader = pa.ipc.open_file(self._file, options=_SPOOL_READ_OPTIONS)

    def _batch(self, batch_id: int) -> pa.RecordBatch:
        if self._held is not None:
            if self.closed:
                raise ValueError("the spool is closed")
            return self._held[batch_id]
        batch = self._cache.get(batch_id)
        if batch is not None:
            self._cache.move_to_end(batch_id)
            return batch
        if self._reader is None:
            raise ValueError("the spool is closed")
        batch = self._reader.get_batch(batch_id)
        self._cache[batch_id] = batch
        if len(self._cache) > SPOOL_CACHE_BATCHES:
            self._cache.popitem(last=False)
        return batch


class _SortedRows:
    """The new rows of one merge in file order, handed out in bounded pieces.

    Keys pack (second, row number): see `NewRows.sorted_taken`.
    """

    def __init__(self, rows: NewRows, keys: np.ndarray, base: int, stride: int) -> None:
        self._rows = rows
        self._keys = keys
        self._base = base
        self._stride = stride

    def __len__(self) -> int:
        return len(self._keys)

    def position(self, second: int) -> int:
        """Index of the first row at or after this second."""
        return int(np.searchsorted(self._keys, (second - self._base) * self._stride, "left"))

    def second_at(self, index: int) -> int:
        return int(self._keys[index] // self._stride + self._base)

    def take(self, start: int, stop: int) -> pa.Table:
        """Rows [start, stop) of the sorted order, read from wherever the rows live."""
        return self._rows._take(self._keys[start:stop] % self._stride)


def _rows_of(batch: pa.RecordBatch, local: np.ndarray) -> pa.RecordBatch:
    """These rows of a batch: a zero-copy slice when they are consecutive and in order."""
    if len(local) and local[-1] - local[0] == len(local) - 1 and np.all(np.diff(local) == 1):
        return batch.slice(int(local[0]), len(local))
    return batch.take(pa.array(local))


class _RowGroupWriter:
    """Writes sorted pieces as row groups of ROW_GROUP_ROWS rows.

    It holds at most one row group of pieces: the row group is written as the pieces' chunks
    (no concatenated copy), and a piece that straddles the boundary is split by zero-copy slices
    (`_merge` cuts its pieces at row-group boundaries, so that does not happen on its path).
    """

    def __init__(self, sink: IO[bytes], coverage: Coverage) -> None:
        schema = EVENT_SCHEMA.with_metadata(
            {COVERAGE_KEY: coverage.to_json().encode(), VERSION_KEY: FORMAT_VERSION}
        )
        self._writer = pq.ParquetWriter(
            sink,
            schema,
            compression="zstd",
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=_STATISTICS_COLUMNS,
            sorting_columns=[pq.SortingColumn(0)],
        )
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def add(self, piece: pa.Table) -> bool:
        """Buffer a piece; True when that completed (and wrote) a row group."""
        wrote = False
        while piece.num_rows:
            room = ROW_GROUP_ROWS - self._pending_rows
            head, piece = piece.slice(0, room), piece.slice(room)
            self._pending.append(head)
            self._pending_rows += head.num_rows
            if self._pending_rows == ROW_GROUP_ROWS:
                self._flush()
                wrote = True
        return wrote

    def _flush(self) -> None:
        table, self._pending = pa.concat_tables(self._pending), []  # chunks side by side, no copy
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows
        self._pending_rows = 0

    def close(self, *, flush: bool = True) -> None:
        """Write what is buffered (unless giving up after an error) and the footer."""
        try:
            if flush and self._pending:
                self._flush()
        finally:
            self._writer.close()


def _merge(old: Iterator[pa.RecordBatch], new: _SortedRows) -> Iterator[pa.Table]:
    """Sorted pieces of (old rows) + (new rows); none straddles a row group of the output.

    Kept old rows and new rows never share a second (one lies outside the taken ranges, the
    other inside), so interleaving by timestamp is unambiguous and the result stays stable.
    Cutting at row-group boundaries lets the writer hold exactly one row group.
    """
    pos, n_new, written = 0, len(new), 0

    def room() -> int:
        return ROW_GROUP_ROWS - written % ROW_GROUP_ROWS

    def new_until(stop: int) -> Iterator[pa.Table]:
        nonlocal pos, written
        while pos < stop:
            end = min(stop, pos + room())
            yield new.take(pos, end)
            written += end - pos
            pos = end

    for batch in old:
        ts = _seconds(batch.column(0))
        i = 0
        while i < len(ts):
            yield from new_until(new.position(int(ts[i])))
            next_new = new.second_at(pos) if pos < n_new else np.iinfo(np.int64).max
            k = int(np.searchsorted(ts, next_new, side="left"))
            k = min(max(k, i + 1), i + room())  # max: progress even on a shared second
            yield pa.Table.from_batches([batch.slice(i, k - i)])
            written += k - i
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

    def read_seconds(self, day: date) -> tuple[np.ndarray, Coverage] | None:
        """The day's row timestamps (epoch seconds, sorted) and coverage; None without a file.

        One column of one file: cheap enough to plan a sync by (where events are expected).
        """
        path = self.day_path(day)
        try:
            with self.fs.open(path, "rb") as f:
                file = pq.ParquetFile(f)
                coverage = _coverage_of(file.metadata, path)
                stored = file.read(columns=["timestamp"]).column(0)  # milliseconds in Parquet
                return _seconds(stored.cast(EVENT_SCHEMA.field(0).type)), coverage
        except FileNotFoundError:
            return None

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
        new = rows if isinstance(rows, NewRows) else _BatchList(rows)
        new.check_inside(ranges)  # before the lock: validation needs no lock
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
        new: NewRows,
        taken: list[Range],
        coverage: Coverage,
    ) -> WriteResult:
        """Stream old rows outside `taken` and new rows inside it into a fresh file; swap it in."""
        with contextlib.ExitStack() as stack:
            source = None if old_path is None else stack.enter_context(self.fs.open(old_path, "rb"))
            with self._atomic_writer(day) as sink:
                return _merge_into(sink, source, old_path, new, taken, coverage)

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
            except object_store.lost_race_errors() as exc:
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
    new: NewRows,
    taken: list[Range],
    coverage: Coverage,
) -> WriteResult:
    """Write old rows outside `taken` and new rows inside it, sorted, as one Parquet file."""
    sorted_new = new.sorted_taken(taken)
    old = _OldRows(source, taken, old_path)
    writer = _RowGroupWriter(sink, coverage)
    try:
        for piece in _merge(old.kept(), sorted_new):
            wrote = writer.add(piece)
            del piece  # else it stays alive while the next piece is built
            if wrote:  # that row group's pieces are gone
                _return_freed_memory()
    except BaseException:
        writer.close(flush=False)
        raise
    writer.close()
    after = old.rows - old.replaced + len(sorted_new)
    if writer.rows != after:  # pragma: no cover - an invariant: never swap it in
        raise AssertionError(f"wrote {writer.rows} rows, expected {after}")
    return WriteResult(old.rows, after, old.replaced, len(sorted_new), tuple(taken), coverage)


def _return_freed_memory() -> None:
    """Have Arrow's allocator hand the pages of freed buffers back to the OS.

    mimalloc (pyarrow's default) keeps them, and a write frees a row group's worth at a time:
    without this, a day's merge peaked ~50 MB higher. On the system pool that a sync task uses
    (`task_memory`) it is a `malloc_trim`. It costs ~1 ms a call.
    """
    pa.default_memory_pool().release_unused()


class _OldRows:
    """The current day file read a row group at a time, minus the rows of `taken`."""

    def __init__(self, source: IO[bytes] | None, taken: Sequence[Range], path: str | None):
        # no pre_buffer: it would read every row group's bytes up front and keep them
        self.file = None if source is None else pq.ParquetFile(source, pre_buffer=False)
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
        # one thread: each decoding thread would keep its own heap of freed pages (mimalloc)
        for stored in self.file.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False):
            _return_freed_memory()  # old batches read and dropped churn memory too
            batch = _conform(stored, str(self.path))
            ts = _seconds(batch.column(0))
            if not len(ts):
                continue
            if ts[0] < last or np.any(np.diff(ts) < 0):
                raise ValueError(f"{self.path} is not sorted by timestamp: refusing to merge")
            last = int(ts[-1])
            drop = in_ranges(ts, self.taken)
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
