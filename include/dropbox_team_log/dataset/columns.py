"""Event rows as the dataset handles them: EVENT_SCHEMA enforced, timestamps as numpy seconds.

Every batch that enters the dataset and every batch read back from a day file passes `conform`,
so the rest of the package sees EVENT_SCHEMA only. Timestamps are then used as int64 epoch
seconds read straight from Arrow's buffer (`epoch_seconds`), and `in_ranges` says which of them
fall in a set of ranges: the two operations every merge and every plan is made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import pyarrow as pa

from dropbox_team_log.schema import EVENT_SCHEMA
from dropbox_team_log.timeutil import Range

#: Parquet has no seconds unit: `timestamp` is stored (and read back) as milliseconds.
STORED_SCHEMA = EVENT_SCHEMA.set(0, EVENT_SCHEMA.field(0).with_type(pa.timestamp("ms", tz="UTC")))

_Data = TypeVar("_Data", pa.RecordBatch, pa.Table)


def check_schema(schema: pa.Schema, what: str) -> None:
    """Every file holds exactly EVENT_SCHEMA; anything else is a bug or a foreign file."""
    if not (
        schema.equals(EVENT_SCHEMA, check_metadata=False)
        or schema.equals(STORED_SCHEMA, check_metadata=False)
    ):
        raise ValueError(f"{what} does not have the dataset schema (EVENT_SCHEMA):\n{schema}")


def conform(data: _Data, what: str) -> _Data:
    """Data as EVENT_SCHEMA: metadata dropped, stored ms timestamps cast back to whole seconds."""
    check_schema(data.schema, what)
    data = data.replace_schema_metadata(None)
    if data.schema.equals(EVENT_SCHEMA):
        return data
    return data.cast(EVENT_SCHEMA)  # safe cast: a fractional second would raise


def epoch_seconds(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The timestamp column (never null) as int64 epoch seconds: a view of Arrow's buffer.

    Read from the buffers rather than `to_numpy()`, whose conversion imports pandas (see
    tasks/worker_memory.py). The view pins the column's buffer: copy it to keep it past the batch.
    """
    values = column.cast(pa.int64())
    if values.null_count:
        raise ValueError("a timestamp column holds nulls")
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    views = [np.frombuffer(c.buffers()[1], np.int64, len(c), c.offset * 8) for c in chunks]
    if len(views) == 1:
        return views[0]
    return np.concatenate(views) if views else np.zeros(0, np.int64)


def in_ranges(ts: np.ndarray, ranges: Sequence[Range]) -> np.ndarray:
    """Boolean mask: which epoch seconds fall in one of the sorted, disjoint ranges."""
    if not ranges:
        return np.zeros(len(ts), dtype=bool)
    starts = np.array([s for s, _ in ranges], dtype=np.int64)
    ends = np.array([e for _, e in ranges], dtype=np.int64)
    idx = np.searchsorted(starts, ts, side="right") - 1
    return (idx >= 0) & (ts < ends[np.maximum(idx, 0)])
