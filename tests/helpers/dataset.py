"""The dataset as a downstream reader sees it (every file through DuckDB's hive partitioning),
and a day file written directly (as the layout before hour files wrote every day)."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.merge import merge_into
from dropbox_team_log.dataset.spool import BatchList
from dropbox_team_log.schema import DAY_FILES_GLOB, READER_SCHEMA
from dropbox_team_log.timeutil import Range


def read_dataset(root: str) -> pa.Table:
    """Every row under `root` (a local path or s3://), `event_date` added as a DATE column.

    This is how analysts' tools read the data, so tests use it to prove what readers see: only
    whole day files, each row once.
    """
    fs, path = object_store.filesystem(str(root))
    pattern = f"{path.rstrip('/')}/{DAY_FILES_GLOB}"
    con = duckdb.connect()
    try:
        if not fs.glob(pattern):
            return READER_SCHEMA.empty_table()
        if not isinstance(fs, LocalFileSystem):
            con.register_filesystem(fs)
            pattern = fs.unstrip_protocol(pattern)
        query = "SELECT * FROM read_parquet($pattern, hive_partitioning = true)"
        return con.sql(query, params={"pattern": pattern}).to_arrow_table()
    finally:
        con.close()


def write_day_file(
    dataset: Any, day: date, fetched: list[Range], batches: list[pa.RecordBatch], fetched_at: int
) -> str:
    """Write a day file `events.parquet` directly, whatever the day's age (as the layout before
    hour files wrote every day: the same merge, format and footer). Returns its path."""
    coverage, taken = Coverage().apply(fetched, fetched_at)
    path = dataset.day_file_path(day)
    if dataset.is_local:
        os.makedirs(dataset.day_dir(day), exist_ok=True)
    with tempfile.TemporaryFile() as sink:
        merge_into(sink, None, None, BatchList(batches), taken, coverage)
        sink.seek(0)
        with dataset.fs.open(path, "wb") as out:
            shutil.copyfileobj(sink, out)
    return path
