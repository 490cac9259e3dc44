"""Is a day file whole? The full check of one file, and moving a damaged one aside.

Day files carry a CRC32 per Parquet page (file_format.py) and every read of this package
verifies them, so damage shows up as a read error: a truncated file or a broken footer fails at
the footer, bytes changed inside a page fail that page's checksum. DuckDB does not verify page
checksums (it may read changed bytes as other values), so `check_file`, a full read of every
page, is what `dropbox-team-log verify` runs over the whole dataset.

A read error alone proves nothing: an S3 connection drops, a writer replaces the file while it is
read. So a file is only called damaged when `check_file` cannot read it back from bytes already
on local disk: a local file is read in place, another store's file is first copied to a private
temp folder, and a failed copy is an I/O error, raised as such, never a verdict.

A damaged file is moved alone to `<root>/_quarantine/event_date=D/<name>.<UTC stamp>`
(settings.QUARANTINE_DIR; `<name>` is `events-HH.parquet`, or a day file `events.parquet`, with
its team's prefix if it has one: layout.py), where no reader's glob finds it and where it is
kept for inspection. Its hour (or its day, for a day file) then has no file, hence no coverage:
the next sync whose window covers it fetches it again. Locally the move is a rename, made under
the day's lock by the caller (day_files.py); on S3 it is a copy then a delete, with no lock: a
writer that replaces the file between the two loses its file, which costs a re-fetch, never an
exact row.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import file_format
from dropbox_team_log.dataset.columns import check_schema
from dropbox_team_log.dataset.files import fsync_dir, make_dirs
from dropbox_team_log.schema import PARTITION_KEY
from dropbox_team_log.settings import QUARANTINE_DIR

#: What reading a damaged file can raise (pyarrow: ArrowInvalid, OSError; ours: ValueError).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, pa.ArrowException)
#: Rows decoded at a time by the full check: its memory is a batch, not a day.
CHECK_BATCH_ROWS = 4 * 1024
#: A reason is the reader's message, cut to one line of about this many characters.
MAX_REASON = 200

_DAY_FOLDER_RE = re.compile(rf"^{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_QUARANTINED_RE = re.compile(r"^(.+\.parquet)\.\d{8}T\d{6}Z(?:\.\d+)?$")


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file of the readers' glob.

    `problem` is None for a whole day file. `damaged` says the bytes are broken (the pipeline
    moves such a file aside by itself); a problem that is not damage is a readable file that is
    not a day file of this format version (written by something else: refused, never guessed at).
    """

    path: str
    problem: str | None = None
    damaged: bool = False
    rows: int = 0
    moved_to: str | None = None


@dataclass(frozen=True)
class Quarantined:
    """A damaged day file this process moved aside."""

    day: date | None
    path: str
    moved_to: str
    reason: str

    def to_xcom(self) -> dict[str, str]:
        return {"file": self.path, "moved_to": self.moved_to, "reason": self.reason}


def may_be_damage(exc: BaseException) -> bool:
    """Whether a failed read is worth a full check: not a missing file, not a refused one."""
    return isinstance(exc, READ_ERRORS) and not isinstance(
        exc, FileNotFoundError | PermissionError | IsADirectoryError
    )


def day_of_file(path: str) -> date | None:
    """The day of a file in an `event_date=YYYY-MM-DD` folder; None for any other folder."""
    folder = path.rstrip("/").rsplit("/", 2)[-2] if "/" in path else ""
    match = _DAY_FOLDER_RE.match(folder)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def check_file(fs: fsspec.AbstractFileSystem, path: str) -> FileCheck:
    """Read `path` back whole: footer, format keys, schema, then every page (checksums).

    Raises FileNotFoundError / PermissionError, and on a remote store the errors of copying the
    file: those say nothing about its bytes.
    """
    if isinstance(fs, LocalFileSystem):
        return _check_local(path, path)
    with tempfile.TemporaryDirectory(prefix="dropbox_team_log_check_") as folder:
        local = os.path.join(folder, "day.parquet")
        fs.get_file(path, local)
        return _check_local(local, path)


def _reason(what: str, exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(first_line) > MAX_REASON:
        first_line = first_line[: MAX_REASON - 3] + "..."
    return f"{what}: {first_line}"


def _check_local(local: str, path: str) -> FileCheck:
    try:
        file = file_format.open_file(local, pre_buffer=False)
    except READ_ERRORS as exc:
        if not may_be_damage(exc):
            raise
        return FileCheck(path, _reason("footer unreadable", exc), damaged=True)
    metadata = file.metadata
    version = (metadata.metadata or {}).get(file_format.VERSION_KEY)
    if version != file_format.FORMAT_VERSION:
        found = "none" if version is None else version.decode(errors="replace")
        return FileCheck(
            path,
            f"not a day file of this package: format version {found} in its footer, "
            f"expected {file_format.FORMAT_VERSION.decode()}",
        )
    try:
        file_format.coverage_of(metadata, path)
        check_schema(file.schema_arrow, path)
    except ValueError as exc:
        return FileCheck(path, _reason("footer metadata unreadable", exc), damaged=True)
    rows = 0
    for group in range(metadata.num_row_groups):
        try:
            for batch in file.iter_batches(
                batch_size=CHECK_BATCH_ROWS, row_groups=[group], use_threads=False
            ):
                rows += batch.num_rows
        except READ_ERRORS as exc:
            where = f"row group {group + 1} of {metadata.num_row_groups}"
            return FileCheck(path, _reason(where, exc), damaged=True, rows=rows)
    if rows != metadata.num_rows:
        problem = f"{rows} rows read back, the footer says {metadata.num_rows}"
        return FileCheck(path, problem, damaged=True, rows=rows)
    return FileCheck(path, rows=rows)


def quarantine_folder(root: str, folder: str) -> str:
    """Where the files of `root/<folder>/` (`event_date=D`) go when they are moved aside."""
    return f"{root}/{QUARANTINE_DIR}/{folder}"


def quarantined_name(name: str) -> str | None:
    """The name a file had before `move_aside` (`<name>.<stamp>[.<n>]`); None for another."""
    match = _QUARANTINED_RE.match(name)
    return match.group(1) if match else None


def move_aside(fs: fsspec.AbstractFileSystem, root: str, path: str) -> str:
    """Move `path` (a file of `root/<folder>/`) to `root/_quarantine/<folder>/<name>.<stamp>`.

    The caller holds the day's lock where there is one. Returns the new path.
    """
    parent, _, name = path.rpartition("/")
    folder = quarantine_folder(root, parent.rpartition("/")[2])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = f"{folder}/{name}.{stamp}"
    copies = 1
    while fs.exists(target):  # the same file damaged twice in one second: keep both
        target = f"{folder}/{name}.{stamp}.{copies}"
        copies += 1
    if isinstance(fs, LocalFileSystem):
        make_dirs(folder)
        os.rename(path, target)
        fsync_dir(folder)
        fsync_dir(parent)
    else:
        fs.cp_file(path, target)  # one file, its name taken literally (no glob expansion)
        fs.rm_file(path)
    return target
