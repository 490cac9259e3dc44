"""The dataset as a downstream reader sees it: every day file through DuckDB's hive partitioning."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import object_store
from dropbox_team_log.schema import DAY_FILES_GLOB, READER_SCHEMA


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
