"""How a day file is encoded: Parquet options, and the footer that carries its coverage.

A day file is zstd Parquet, sorted by timestamp (declared as its sorting column). Its footer's
key-value metadata holds two keys: COVERAGE_KEY, the JSON of the day's `Coverage` (which ranges
its rows answer exactly, as of when: see ledger.py), and VERSION_KEY, the format version. A file
without them was not written by this package and is refused rather than guessed at, since
"exact" could no longer be checked. Every page carries a CRC32 of its bytes, and every read of
this package verifies them (`open_file`, `read_table`), so bytes changed inside a page fail the
read instead of becoming other rows (integrity.py says what happens then). Changing anything
here changes the bytes every deployment writes; the row-group size is set by the writer
(merge.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.tail_state import TailTag
from dropbox_team_log.schema import EVENT_SCHEMA, JSON_COLUMNS, RAW_EVENT_COLUMN

COVERAGE_KEY = b"dropbox_team_log.coverage"
#: Optional: the tail chain and poll the file's rows are current to (tail_state.TailTag).
TAIL_KEY = b"dropbox_team_log.tail"
VERSION_KEY = b"dropbox_team_log.version"
FORMAT_VERSION = b"1"

# raw_event is unique per row, and a day's sorted timestamps nearly so: a dictionary would only be
# built to be thrown away (and plain sorted timestamps are smaller than dictionary-encoded ones).
_DICTIONARY_COLUMNS = [n for n in EVENT_SCHEMA.names if n not in (RAW_EVENT_COLUMN, "timestamp")]
# Min/max of JSON text prune nothing and put two event-sized values per row group in the footer:
# statistics for the other columns only, which makes the files smaller and the writes faster.
_STATISTICS_COLUMNS = [n for n in EVENT_SCHEMA.names if n not in (RAW_EVENT_COLUMN, *JSON_COLUMNS)]


def open_writer(
    sink: IO[bytes], coverage: Coverage, tail: TailTag | None = None
) -> pq.ParquetWriter:
    """A Parquet writer of a day file into `sink`, its footer stating `coverage` (and the
    tail's tag, if the rows are a tail chain's)."""
    metadata = {COVERAGE_KEY: coverage.to_json().encode(), VERSION_KEY: FORMAT_VERSION}
    if tail is not None:
        metadata[TAIL_KEY] = tail.to_json()
    schema = EVENT_SCHEMA.with_metadata(metadata)
    return pq.ParquetWriter(
        sink,
        schema,
        compression="zstd",
        use_dictionary=_DICTIONARY_COLUMNS,
        write_statistics=_STATISTICS_COLUMNS,
        sorting_columns=[pq.SortingColumn(0)],
        write_page_checksum=True,
    )


def open_file(source: str | IO[bytes], *, pre_buffer: bool = True) -> pq.ParquetFile:
    """A day file opened for reading: each page's checksum is verified as the page is read."""
    return pq.ParquetFile(source, pre_buffer=pre_buffer, page_checksum_verification=True)


def read_table(source: IO[bytes], columns: Sequence[str] | None = None) -> pa.Table:
    """A day file's rows (these columns, else all), every page's checksum verified."""
    return open_file(source).read(columns=columns)


def coverage_of(metadata: pq.FileMetaData, path: str) -> Coverage:
    """Coverage from a footer; a day file without it is foreign or corrupt, never guessed."""
    kv = metadata.metadata or {}
    if kv.get(VERSION_KEY) != FORMAT_VERSION or COVERAGE_KEY not in kv:
        raise ValueError(
            f"{path} has no {COVERAGE_KEY.decode()} metadata of format version "
            f"{FORMAT_VERSION.decode()}: not written by this package"
        )
    return Coverage.from_json(kv[COVERAGE_KEY])


def tail_of(metadata: pq.FileMetaData, path: str) -> TailTag | None:
    """The tail tag of a footer; None when the file has none (a replace write's file)."""
    text = (metadata.metadata or {}).get(TAIL_KEY)
    if text is None:
        return None
    try:
        return TailTag.from_json(text)
    except ValueError as exc:  # orjson's decode error is a ValueError too
        raise ValueError(f"{path}: its {TAIL_KEY.decode()} metadata is broken: {exc}") from None
