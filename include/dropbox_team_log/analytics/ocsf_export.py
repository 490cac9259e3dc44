"""Write the OCSF records as Parquet: plain hive partitions, and Amazon Security Lake's layout.

One file per OCSF class per UTC day, in either or both layouts under `out`:

    <out>/class_uid=<uid>/event_day=<YYYY-MM-DD>/records.parquet               (hive)
    <out>/ext/<source>[/<version>]/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/...

The second is what a Security Lake custom source reads (one source per class, `<source>` from
`settings.OCSF_SECURITY_LAKE_SOURCES`): with `out` the lake's bucket, the files land where the
sources' Glue crawlers look. A file's name is fixed, so re-exporting a day replaces its files
(and removes those of classes the day no longer has): re-runnable, never duplicated. Each file
appears whole: locally a temp file renamed onto it, on S3 one PUT. Local files are not fsynced:
after a power loss, run the export again. Each file is encoded once, whatever the number of
layouts. Rows stream from DuckDB a small batch at a time; a query covers days of at most
OCSF_ROW_GROUP_ROWS rows and its files are written when it ends (a bigger day: a row group each
time that many rows wait), so memory is bounded by that, not by a day's size (S3: one file's
bytes).
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import IO, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log import settings
from dropbox_team_log.analytics import ocsf
from dropbox_team_log.dataset import object_store, roots
from dropbox_team_log.dataset.files import write_atomically
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.schema import PARTITION_KEY

#: Parquet columns whose values are (nearly) all distinct: the per-event JSON text.
_UNIQUE_TEXT = frozenset(
    {"raw_data", "unmapped.details", "unmapped.assets", "unmapped.participants", "unmapped.context",
     "unmapped.access_method"}
)  # fmt: skip
EPOCH_DAY = date(1970, 1, 1)
#: Rows DuckDB hands over per Arrow batch: small, so that each batch's buffers (and its sorted
#: copy) are freed and reused while they are hot, instead of fresh memory faulted in per batch.
_BATCH_ROWS = 4096
#: A row group's rows are written in this order (see `_ClassFile.flush`).
_ROW_ORDER = [("time", "ascending"), ("raw_data", "ascending")]
#: Bytes the writer's output is buffered in before each write to a local file.
_WRITE_BUFFER = 1 << 20


@dataclass(frozen=True)
class SecurityLakeTarget:
    """Where the Security Lake layout's partitions say the data comes from."""

    region: str
    account_id: str
    #: The custom source's version, when it was created with one (its location ends `/<v>/`).
    source_version: str | None = None


@dataclass
class ExportResult:
    days: list[date] = field(default_factory=list)
    records: int = 0
    by_class: dict[int, int] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: CPU time (user + system) of the process during the export: with `threads=1`, the
    #: export's own, which a shared machine's load does not inflate as it does `seconds`.
    cpu_seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def events_per_cpu_second(self) -> float:
        return self.records / self.cpu_seconds if self.cpu_seconds else 0.0


def default_out(root: str) -> str:
    """`<root>/_ocsf`: beside the data, outside its glob."""
    return f"{str(root).rstrip('/')}/{settings.OCSF_DIR}"


def hive_path(out: str, class_uid: int, day: date) -> str:
    return f"{out}/class_uid={class_uid}/event_day={day.isoformat()}/{settings.OCSF_FILE}"


def security_lake_path(out: str, class_uid: int, day: date, target: SecurityLakeTarget) -> str:
    source = settings.OCSF_SECURITY_LAKE_SOURCES[class_uid]
    if target.source_version:
        source = f"{source}/{target.source_version}"
    return (
        f"{out}/ext/{source}/region={target.region}/accountId={target.account_id}"
        f"/eventDay={day:%Y%m%d}/{settings.OCSF_FILE}"
    )


def _leaves(prefix: str, data_type: pa.DataType) -> Iterator[str]:
    if pa.types.is_struct(data_type):
        for child in data_type.fields:
            yield from _leaves(f"{prefix}.{child.name}", child.type)
    elif pa.types.is_list(data_type):
        yield from _leaves(f"{prefix}.list.element", data_type.value_type)
    else:
        yield prefix


@functools.cache
def _writer_options(schema: pa.Schema) -> dict[str, Any]:
    """How each Parquet column is written. The per-event JSON text (the bulk of the bytes):
    zstd, no dictionary, no min/max. The other columns repeat few values: dictionary-encoded,
    with statistics, and snappy, whose per-column setup costs less than zstd's (a class's file
    of a day often holds a handful of rows, so that setup is most of its cost)."""
    leaves = [path for f in schema for path in _leaves(f.name, f.type)]
    repeated = [path for path in leaves if path not in _UNIQUE_TEXT]
    return {
        "compression": {path: "zstd" if path in _UNIQUE_TEXT else "snappy" for path in leaves},
        "use_dictionary": repeated,
        "write_statistics": repeated,
    }


class _Fanout:
    """A binary file that writes to several (every layout's copy of a file): each file is
    encoded once, whatever the number of layouts."""

    closed = False

    def __init__(self, sinks: list[IO[bytes]]) -> None:
        self._sinks = sinks
        self._position = 0

    def write(self, data: bytes) -> int:
        for sink in self._sinks:
            sink.write(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """The sinks are flushed where they are finished (`_Output.sink`)."""

    def close(self) -> None:
        """The sinks are closed where they are finished (`_Output.sink`)."""

    def detach(self) -> None:
        """Drop whatever comes from now on: the file is discarded, and the writer's buffers,
        flushed when they are destroyed, must not reach its closed sinks."""
        self._sinks = []


class _ClassFile:
    """One class's Parquet file of one day, in every layout. Rows wait until `flush` writes
    them as one row group; the file is in place once `close` returns, and `discard` leaves
    whatever was there before."""

    def __init__(self, output: _Output, paths: list[str], schema: pa.Schema) -> None:
        self._sinks = contextlib.ExitStack()
        self._fanout = _Fanout([])
        try:
            self._fanout = _Fanout([self._sinks.enter_context(output.sink(p)) for p in paths])
            # The writer makes many small writes: Arrow gathers them, one Python call per buffer.
            self._stream = pa.BufferedOutputStream(
                pa.PythonFile(self._fanout, mode="w"), _WRITE_BUFFER
            )
            self._writer = pq.ParquetWriter(self._stream, schema, **_writer_options(schema))
        except BaseException:
            self.discard()
            raise
        self._pending: list[pa.RecordBatch] = []
        self.pending = 0
        self.records = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self.pending += batch.num_rows
        self.records += batch.num_rows

    def flush(self) -> None:
        """Write what is pending as one row group (OCSF_ROW_GROUP_ROWS at most), sorted by time
        (then by raw record): the order DuckDB's threads hand rows over in, from a day's many
        hour files, varies from run to run; a re-export must write the same bytes."""
        if self._pending:
            table = pa.Table.from_batches(self._pending).sort_by(_ROW_ORDER)
            self._writer.write_table(table, row_group_size=settings.OCSF_ROW_GROUP_ROWS)
        self._pending, self.pending = [], 0

    def close(self) -> None:
        self.flush()
        self._writer.close()
        self._stream.flush()
        self._sinks.close()

    def discard(self) -> None:
        self._fanout.detach()
        with contextlib.suppress(_Discarded):
            self._sinks.__exit__(_Discarded, _Discarded(), None)


class _Discarded(Exception):
    """Raised into a file's sinks so that they drop what was written to them."""


class _Output:
    """The export's destination: its filesystem, and how a file becomes visible whole there."""

    def __init__(self, out: str) -> None:
        self.fs, path = object_store.filesystem(out)
        self.out = path.rstrip("/")
        self.is_object_store = object_store.is_object_store(self.fs)

    @contextlib.contextmanager
    def sink(self, path: str) -> Generator[IO[bytes], None, None]:
        """Yields where the file's bytes go; they replace `path` only when the block ends well.
        Locally not fsynced: an export is re-run, not recovered (docs/ocsf.md)."""
        if self.is_object_store:
            buffer = io.BytesIO()
            yield buffer  # ruff: ignore[fallible-context-manager] (an error: no PUT, wanted)
            self.fs.pipe_file(path, buffer.getvalue())
            return
        with write_atomically(self.fs, path, durable=False) as file:
            yield file

    def remove(self, path: str) -> bool:
        if not self.fs.exists(path):
            return False
        if self.is_object_store:
            object_store.delete(self.fs, path)
        else:
            self.fs.rm_file(path)
        return True

    def display(self, path: str) -> str:
        """The path as the user would name it (a URL unless local)."""
        return path if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(path)


@dataclass
class _Chunk:
    """The days of one query and their files (every team's day file or hour files), listed
    once: for the query's row count and for its source."""

    days: list[date] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _source(dataset: EventDataset, paths: list[str]) -> str:
    if not dataset.is_local:
        paths = [dataset.fs.unstrip_protocol(path) for path in paths]
    quoted = ", ".join("'" + roots.literal(path).replace("'", "''") + "'" for path in paths)
    return (
        f"read_parquet([{quoted}], hive_partitioning = true, hive_types = {{'event_date': DATE}})"
    )


def _chunks(dataset: EventDataset, days: list[date]) -> Iterator[_Chunk]:
    """Consecutive days, as many per query as OCSF_CHUNK_DAYS and the rows bound allow (a
    query has a fixed cost, ~50 ms: per day, it would weigh as much as the records on small
    days). The rows bound is OCSF_CHUNK_ROWS, and at most OCSF_ROW_GROUP_ROWS: a query's rows
    then all wait in memory until it ends, so each file is written whole (see `_export_chunk`)."""
    chunk = _Chunk()
    rows = 0
    limit = min(settings.OCSF_CHUNK_ROWS, settings.OCSF_ROW_GROUP_ROWS)
    for day in days:
        paths = dataset.all_file_paths(day)
        day_rows = 0
        for path in paths:
            with dataset.fs.open(path, "rb") as handle:
                day_rows += pq.ParquetFile(handle).metadata.num_rows
        if chunk.days and (rows + day_rows > limit or len(chunk.days) >= settings.OCSF_CHUNK_DAYS):
            yield chunk
            chunk, rows = _Chunk(), 0
        chunk.days.append(day)
        chunk.paths.extend(paths)
        rows += day_rows
    if chunk.days:
        yield chunk


@dataclass
class _Layouts:
    output: _Output
    hive: bool
    lake: SecurityLakeTarget | None

    def paths(self, class_uid: int, day: date) -> list[str]:
        out = self.output.out
        paths = [hive_path(out, class_uid, day)] if self.hive else []
        if self.lake is not None:
            paths.append(security_lake_path(out, class_uid, day, self.lake))
        return paths


def _split(batch: pa.RecordBatch) -> Iterator[tuple[int, date, pa.RecordBatch]]:
    """The batch's rows by (class, day), each part with its class's columns: one sort and one
    copy of the batch, then zero-copy slices (a filter per part would copy it once per part)."""
    keys = pa.table({"day": batch.column(PARTITION_KEY), "class": batch.column("class_uid")})
    order = pc.sort_indices(keys, sort_keys=[("day", "ascending"), ("class", "ascending")])
    rows, keys = batch.take(order), keys.take(order)
    days = keys.column("day").combine_chunks().cast(pa.int32()).to_numpy()
    classes = keys.column("class").to_numpy()
    starts = np.flatnonzero((np.diff(days) != 0) | (np.diff(classes) != 0)) + 1
    bounds = [0, *starts.tolist(), len(days)]
    for start, end in itertools.pairwise(bounds):
        class_uid = int(classes[start])
        day = EPOCH_DAY + timedelta(days=int(days[start]))
        part = rows.slice(start, end - start).select(list(ocsf.CLASS_COLUMNS[class_uid]))
        yield class_uid, day, part


class _Files:
    """The open files of one query, one per (class, day) it has rows of."""

    def __init__(self, layouts: _Layouts, result: ExportResult) -> None:
        self._layouts = layouts
        self._result = result
        self.by_key: dict[tuple[int, date], _ClassFile] = {}

    def add(self, class_uid: int, day: date, part: pa.RecordBatch) -> None:
        if (class_uid, day) not in self.by_key:
            paths = self._layouts.paths(class_uid, day)
            self.by_key[class_uid, day] = _ClassFile(self._layouts.output, paths, part.schema)
            self._result.written.extend(self._layouts.output.display(path) for path in paths)
        self.by_key[class_uid, day].add(part)

    def flush(self) -> None:
        """Write every file's pending rows (as a row group each)."""
        for class_file in self.by_key.values():
            class_file.flush()

    @property
    def pending(self) -> int:
        return sum(class_file.pending for class_file in self.by_key.values())


def _export_chunk(
    con: duckdb.DuckDBPyConnection,
    dataset: EventDataset,
    chunk: _Chunk,
    layouts: _Layouts,
    result: ExportResult,
) -> None:
    """One query over the chunk's days; its rows go to one file per (class, day) and layout.
    A file's rows wait until the query ends and are written as one row group, sorted: the
    query's days hold at most OCSF_ROW_GROUP_ROWS rows (`_chunks`), so that is the memory
    bound, and the file's bytes do not depend on the order DuckDB hands rows over in (its
    threads, and even one thread's hash join over a day's many hour files, interleave days).
    Only a day bigger than the bound (a query of its own) is written as several row groups,
    whenever that many rows wait."""
    files = _Files(layouts, result)
    try:
        source = _source(dataset, chunk.paths)
        reader = con.sql(ocsf.select_sql(source)).to_arrow_reader(_BATCH_ROWS)
        for batch in reader:
            for class_uid, day, part in _split(batch):
                files.add(class_uid, day, part)
            if files.pending >= settings.OCSF_ROW_GROUP_ROWS:
                files.flush()
        for class_file in files.by_key.values():
            class_file.close()
    except BaseException:
        for class_file in files.by_key.values():
            class_file.discard()
        raise
    for (class_uid, _), class_file in files.by_key.items():
        result.by_class[class_uid] = result.by_class.get(class_uid, 0) + class_file.records
        result.records += class_file.records
    output = layouts.output
    for day in chunk.days:
        for class_uid in ocsf.CLASS_COLUMNS:
            if (class_uid, day) in files.by_key:
                continue
            for path in layouts.paths(class_uid, day):
                if output.remove(path):
                    result.removed.append(output.display(path))


def export(
    root: str,
    out: str | None = None,
    *,
    days: Iterable[date] | None = None,
    hive: bool = True,
    security_lake: SecurityLakeTarget | None = None,
    threads: int | None = None,
) -> ExportResult:
    """Export the days of the dataset at `root` (default: every day it has) as OCSF Parquet
    under `out` (default `<root>/_ocsf`): hive partitions with `hive`, Security Lake's layout
    with a `security_lake` target. `threads` caps DuckDB's threads (the benchmark uses 1)."""
    if not hive and security_lake is None:
        raise ValueError("nothing to write: choose the hive layout, Security Lake's, or both")
    dataset = EventDataset(str(root))
    wanted = set(days) if days is not None else None
    chosen = [day for day in dataset.all_days() if wanted is None or day in wanted]
    layouts = _Layouts(_Output(out or default_out(root)), hive, security_lake)
    result = ExportResult(days=chosen)
    started, cpu_started = time.perf_counter(), time.process_time()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        if not dataset.is_local:
            con.register_filesystem(dataset.fs)
        ocsf.register_function(con)
        for chunk in _chunks(dataset, chosen):
            _export_chunk(con, dataset, chunk, layouts, result)
    finally:
        con.close()
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result
