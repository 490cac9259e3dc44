"""One day file's rewrite: old rows kept outside the taken ranges, new rows inside, in one pass.

`merge_into` streams the current day file (if any) a batch at a time, drops its rows that fall
in the ranges this write takes, interleaves the new rows of those ranges in timestamp order, and
writes the result as Parquet row groups of ROW_GROUP_ROWS rows to a sink. The sink is whatever
the caller gives it (store.py: a temp file that is renamed onto the day file, or an unnamed one
that is PUT to S3), so this module never decides what readers see. Memory is bounded by a few row
groups, not by the day's size: the old file is read in batches, the new rows come from a
`NewRows` in sorted pieces cut at row-group boundaries, and the writer holds one row group.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import pyarrow as pa

from dropbox_team_log.dataset import file_format
from dropbox_team_log.dataset.columns import check_schema, conform, epoch_seconds, in_ranges
from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.spool import NewRows, SortedRows
from dropbox_team_log.dataset.tail_state import TailTag
from dropbox_team_log.timeutil import Range

#: Rows of a Parquet row group, and so about the most rows a write holds at once. Larger groups
#: compress only a little better while every row they add raises a write's peak memory; this
#: size keeps the biggest day within a sync task's memory (docs/performance.md).
ROW_GROUP_ROWS = 8 * 1024
#: Old rows are streamed in batches this big: a row group of the new file pins at most two.
READ_BATCH_ROWS = 4 * 1024


@dataclass(frozen=True)
class WriteResult:
    """What one `write_day` changed: rows of the files it touched (before and after), how many
    files it rewrote (0: it took nothing) and the rows those files hold (the write's cost)."""

    rows_before: int
    rows_after: int
    rows_replaced: int
    rows_added: int
    taken_ranges: tuple[Range, ...]
    coverage: Coverage = field(default_factory=Coverage)
    files_written: int = 0
    rows_written: int = 0


def merge_into(
    sink: IO[bytes],
    source: IO[bytes] | None,
    old_path: str | None,
    new: NewRows,
    taken: list[Range],
    coverage: Coverage,
    *,
    add: bool = False,
    tail: TailTag | None = None,
) -> WriteResult:
    """Write old rows outside `taken` and new rows inside it, sorted, as one Parquet file.

    With `add` (a tail's delta) every old row is kept and the new rows inside `taken` are added
    to them. `tail` is the footer's tail tag (None: none, as after any replace write).
    """
    sorted_new = new.sorted_taken(taken)
    old = _OldRows(source, [] if add else taken, old_path)
    writer = _RowGroupWriter(sink, coverage, tail)
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
    return WriteResult(
        old.rows, after, old.replaced, len(sorted_new), tuple(taken), coverage, 1, after
    )


def _return_freed_memory() -> None:
    """Have Arrow's allocator hand the pages of freed buffers back to the OS.

    mimalloc (pyarrow's default) keeps them, and a write frees a row group's worth at a time:
    without this, what the allocator keeps adds to a merge's peak memory. On the system pool
    that a sync task uses (tasks/worker_memory.py) it is a `malloc_trim`, cheap next to
    writing a row group.
    """
    pa.default_memory_pool().release_unused()


class _OldRows:
    """The current day file read a row group at a time, minus the rows of `taken`."""

    def __init__(self, source: IO[bytes] | None, taken: Sequence[Range], path: str | None):
        # no pre_buffer: it would read every row group's bytes up front and keep them
        self.file = None if source is None else file_format.open_file(source, pre_buffer=False)
        self.taken = taken
        self.path = path
        self.rows = 0 if self.file is None else self.file.metadata.num_rows
        self.replaced = 0
        if self.file is not None:
            check_schema(self.file.schema_arrow, str(path))

    def kept(self) -> Iterator[pa.RecordBatch]:
        """Rows outside `taken`, in file order (checked sorted), counting those dropped."""
        if self.file is None:
            return
        last = np.iinfo(np.int64).min
        # one thread: each decoding thread would keep its own heap of freed pages (mimalloc)
        for stored in self.file.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False):
            _return_freed_memory()  # old batches read and dropped churn memory too
            batch = conform(stored, str(self.path))
            ts = epoch_seconds(batch.column(0))
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


class _RowGroupWriter:
    """Writes sorted pieces as row groups of ROW_GROUP_ROWS rows.

    It holds at most one row group of pieces: the row group is written as the pieces' chunks
    (no concatenated copy), and a piece that straddles the boundary is split by zero-copy slices
    (`_merge` cuts its pieces at row-group boundaries, so that does not happen on its path).
    """

    def __init__(self, sink: IO[bytes], coverage: Coverage, tail: TailTag | None) -> None:
        self._writer = file_format.open_writer(sink, coverage, tail)
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
        if table.column(0).num_chunks > 1:
            # one copy of one row group: the Parquet writer pays per chunk and column, and a
            # tail's delta cuts the old rows into a piece per late row
            table = table.combine_chunks()
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


def _merge(old: Iterator[pa.RecordBatch], new: SortedRows) -> Iterator[pa.Table]:
    """Sorted pieces of (old rows) + (new rows); none straddles a row group of the output.

    Kept old rows and new rows share no second in a replace (one lies outside the taken ranges,
    the other inside); a tail's delta adds rows to seconds the file has: both stay sorted.
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
        ts = epoch_seconds(batch.column(0))
        stop = new.position(int(ts[-1]) + 1)
        if 0 < stop - pos <= len(ts):
            # a few new rows among the batch's seconds (a tail's delta): one sort and take,
            # not a slice of old rows per new row
            both = pa.concat_tables([pa.Table.from_batches([batch]), new.take(pos, stop)])
            order = np.argsort(np.concatenate([ts, new.seconds(pos, stop)]), kind="stable")
            merged = both.take(pa.array(order))
            pos, at = stop, 0
            while at < merged.num_rows:
                size = min(room(), merged.num_rows - at)
                yield merged.slice(at, size)
                written += size
                at += size
            continue
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
