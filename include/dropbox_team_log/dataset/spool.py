"""A write's new rows: added page by page as the API answers, read back sorted for the merge.

The sync's page workers `add` each transformed page to a `NewRows` (in practice a `RowSpool`)
from any thread, and `discard_from` forgets what a restarted slice will read again. `write_day`
then asks for the rows of the ranges it takes, stably sorted by timestamp (`sorted_taken`), and
reads them a row group at a time (merge.py). Only each row's timestamp stays in memory for
sure; where the batches themselves live is up to the subclass: `BatchList` keeps them in memory,
`RowSpool` keeps them in memory up to a budget and spills them to an unnamed temp file past it,
so a day's size bounds the disk it uses, not the memory.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import IO, Self

import numpy as np
import pyarrow as pa

from dropbox_team_log.dataset.columns import conform, epoch_seconds, in_ranges
from dropbox_team_log.schema import EVENT_SCHEMA
from dropbox_team_log.timeutil import Range

#: RowSpool's temp file is zstd-compressed: much smaller than with lz4, and the extra CPU is
#: spent by the page worker while the slice threads wait on the API anyway.
SPOOL_COMPRESSION = "zstd"
#: A RowSpool holds its batches in memory up to this many bytes, then spills them all to its
#: temp file. A small day never spills; a big day spills at its first pages, and at that moment
#: holds the whole budget on top of the pages in flight, so the budget adds to a big day's peak.
SPOOL_MEMORY_BYTES = 32 * 1024 * 1024
#: Decoded spool batches kept for the next sorted piece (one API page each).
SPOOL_CACHE_BATCHES = 4
#: A sorted piece is read run by run while it has at most this many runs per batch it touches.
RUNS_PER_BATCH = 4

# A page is small: (de)compressing its columns on Arrow's thread pool gains little, and every
# thread that allocates keeps its own mimalloc heap of freed pages, which the process keeps.
_SPOOL_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)


def _narrow(offsets: np.ndarray) -> np.ndarray:
    """int64 seconds as int32 when they fit (a day's rows always do): half the memory."""
    info = np.iinfo(np.int32)
    if len(offsets) and (offsets.min() < info.min or offsets.max() > info.max):
        return offsets
    return offsets.astype(np.int32)


class NewRows:
    """The new rows of one write: added a batch at a time, partly discarded, read back sorted.

    Only each row's timestamp stays in this object (4 bytes: seconds from the first row added,
    8 where that does not fit); where the batches live is up to a subclass: `RowSpool` spills
    them to a temp file (a big day), `BatchList` keeps them in memory (small writes, callers
    that already hold the batches). `add` and `discard_from` are
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
        batch = conform(batch, "a batch to write")
        seconds = epoch_seconds(batch.column(0)).copy()  # a copy: must not pin the batch
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

    def sorted_taken(self, taken: Sequence[Range]) -> SortedRows:
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
        return SortedRows(self, keys, base, stride)

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


class BatchList(NewRows):
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
    next piece starts with. A small day never touches the file: compressing its pages and
    reading them back before the write would cost time and buy nothing.
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


class SortedRows:
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

    def seconds(self, start: int, stop: int) -> np.ndarray:
        """The seconds of rows [start, stop) of the sorted order."""
        return self._keys[start:stop] // self._stride + self._base

    def take(self, start: int, stop: int) -> pa.Table:
        """Rows [start, stop) of the sorted order, read from wherever the rows live."""
        return self._rows._take(self._keys[start:stop] % self._stride)


def _rows_of(batch: pa.RecordBatch, local: np.ndarray) -> pa.RecordBatch:
    """These rows of a batch: a zero-copy slice when they are consecutive and in order."""
    if len(local) and local[-1] - local[0] == len(local) - 1 and np.all(np.diff(local) == 1):
        return batch.slice(int(local[0]), len(local))
    return batch.take(pa.array(local))
