"""Reading the dataset: a day's files found, read and summed up, damaged ones moved aside.

A day is the files of its folder (layout.py): up to 24 hour files, or one day file. A
day-level read (`read_coverage`, `read_seconds`, `read_day`) reads each file on its own and
joins the results in time order; each hour file's coverage lies inside its hour, so the day's
coverage is the union of theirs. A file that cannot be read back (truncated, footer broken, a
page checksum wrong) never stops a plan, a neighbour's sync or a write: a read that fails on it
has the file checked in full, under the day's lock, and a damaged one is moved aside alone
(integrity.py), named in a WARNING and in `quarantined`; its hour (or day) then reads as having
no file, so it is fetched again. `verify` checks every file the readers read.

Each instance is one team's (`team`: its key, None for the default team's unprefixed files;
layout.py): its listing, reads, locks, quarantines and heals touch only that team's files, so
two teams sync the same day side by side without ever touching each other's files. Only the
whole-dataset reads (`all_days`, `all_file_paths`, `verify`) see every team.

`DayFiles` holds the paths, the lock and the reads; `store.EventDataset` adds the writes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import date
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log import settings
from dropbox_team_log.dataset import file_format, integrity, layout, object_store
from dropbox_team_log.dataset.columns import conform, epoch_seconds
from dropbox_team_log.dataset.files import FileDayLock
from dropbox_team_log.dataset.integrity import FileCheck, Quarantined
from dropbox_team_log.dataset.layout import DayFile
from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.roots import glob_under
from dropbox_team_log.dataset.tail_state import TailTag
from dropbox_team_log.errors import DamagedDayFileError, DropboxTeamLogError
from dropbox_team_log.schema import DAY_FILES_GLOB, EVENT_SCHEMA, TIMESTAMP_TYPE
from dropbox_team_log.timeutil import HOUR, Range

LOCK_DIR = "_locks"

log = logging.getLogger(__name__)

LockFactory = Callable[[date], AbstractContextManager]
_Read = TypeVar("_Read")


class MixedLayoutError(DropboxTeamLogError):
    """A team's day holds both its day file and hour files: readers would see rows twice."""


class DayFiles:
    """The day-partitioned event dataset under `root` (a local path or an fsspec URL): reads."""

    def __init__(
        self,
        root: str,
        *,
        team: str | None = None,
        lock_factory: LockFactory | None = None,
        day_file_after: int | None = None,
    ) -> None:
        #: The team whose files this instance reads and writes (None: the default team).
        self.team = layout.check_team_key(team)
        #: Seconds after its end from which a day without hour files is written as one day
        #: file (store.py; default settings.DAY_FILE_AFTER_HOURS).
        self.day_file_after = (
            settings.DAY_FILE_AFTER_HOURS * HOUR if day_file_after is None else day_file_after
        )
        self.fs, path = object_store.filesystem(str(root))
        self.root = path.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        #: S3: writes are conditional PUTs of the final key (no temp objects, no lock needed).
        self.is_object_store = object_store.is_object_store(self.fs)
        self._lock_factory = lock_factory
        #: Damaged files this object moved aside, in order (also logged as WARNING).
        self.quarantined: list[Quarantined] = []

    def __repr__(self) -> str:
        team = "" if self.team is None else f", team={self.team!r}"
        return f"{type(self).__name__}({self.root!r}{team})"

    # --- paths ---

    def day_dir(self, day: date) -> str:
        return f"{self.root}/{layout.day_folder(day)}"

    def path_of(self, file: DayFile) -> str:
        """Where one file of the layout lives (whether or not it exists)."""
        return f"{self.day_dir(file.day)}/{file.name}"

    def file_of(self, day: date, hour: int | None) -> DayFile:
        """This team's file of an hour of `day` (None: its day file)."""
        return DayFile(day, hour, self.team)

    def hour_path(self, day: date, hour: int) -> str:
        return self.path_of(self.file_of(day, hour))

    def day_file_path(self, day: date) -> str:
        """This team's one file of the whole day (whether or not it exists)."""
        return self.path_of(self.file_of(day, None))

    def lock(self, day: date) -> AbstractContextManager:
        """The exclusive lock of this team's day: flock locally; none on S3, where the
        conditional PUT fences writers; other fsspec stores need a lock_factory."""
        return self._lock_of(day, self.team)

    def _lock_of(self, day: date, team: str | None) -> AbstractContextManager:
        if self._lock_factory is not None:
            return self._lock_factory(day) if team == self.team else contextlib.nullcontext()
        if self.is_object_store:
            return contextlib.nullcontext()
        if not self.is_local:
            raise NotImplementedError(
                f"no cross-process lock for {self.fs.protocol!r} roots: pass lock_factory="
            )
        return FileDayLock(f"{self.root}/{LOCK_DIR}/{layout.lock_name(day, team)}")

    # --- listing ---

    def day_files(self, day: date) -> list[DayFile]:
        """This team's files of the day as they are now: its day file, or its hour files
        ascending.

        Raises MixedLayoutError if the folder holds both (never written so: see layout.py).
        """
        # the team's own names only: on S3 a LIST of that prefix, not of every team's files
        own = "events*.parquet" if self.team is None else f"{self.team}.events*.parquet"
        found = [f for f in self._files_in(day, own) if f.team == self.team]
        if len(found) > 1 and found[0].hour is None:
            whole = self.day_file_path(day).rpartition("/")[2]
            raise MixedLayoutError(
                f"{self.day_dir(day)} holds both {whole} and hour files of the same team: "
                "readers see the rows of both; move one aside (a writer of this package never "
                "mixes them)"
            )
        return found

    def _files_in(self, day: date, pattern: str = "*.parquet") -> list[DayFile]:
        """The day's files matching `pattern` (default: every team's), by team then in time
        order (one listing). Team keys hold no glob character (layout.TEAM_KEY_RE)."""
        return sorted(
            (
                f
                for path in self.fs.glob(glob_under(self.day_dir(day), pattern))
                if (f := layout.parse_path(path)) is not None and f.day == day
            ),
            key=lambda f: (f.team or "", f.team is not None, f.sort_key),
        )

    def all_file_paths(self, day: date) -> list[str]:
        """Paths of every team's files of the day (what the readers' glob reads there)."""
        return [self.path_of(f) for f in self._files_in(day)]

    def file_paths(self, day: date) -> list[str]:
        """Paths of the day's files, in time order (see `day_files`)."""
        return [self.path_of(f) for f in self.day_files(day)]

    def is_day_file(self, day: date) -> bool:
        """Whether this team's day is stored as one day file (written so, never split)."""
        return bool(self.fs.exists(self.day_file_path(day)))

    def days(self) -> list[date]:
        """Days that have a file of this team, ascending."""
        return sorted({f.day for f in self._all_files() if f.team == self.team})

    def all_days(self) -> list[date]:
        """Days that have a file of any team, ascending."""
        return sorted({f.day for f in self._all_files()})

    def teams(self) -> list[str | None]:
        """The keys of the teams that have a file (None: the default team first)."""
        keys = {f.team for f in self._all_files()}
        return sorted(keys, key=lambda k: (k is not None, k or ""))

    def _all_files(self) -> list[DayFile]:
        return [
            f
            for path in self.fs.glob(glob_under(self.root, DAY_FILES_GLOB))
            if (f := layout.parse_path(path)) is not None
        ]

    def has_quarantined(self, day: date) -> bool:
        """Whether a file of this team's day was ever moved aside (and is still kept for
        inspection)."""
        folder = integrity.quarantine_folder(self.root, layout.day_folder(day))
        if not self.fs.exists(folder):
            return False
        for path in self.fs.ls(folder, detail=False):
            name = path.rstrip("/").rpartition("/")[2]
            kept = integrity.quarantined_name(name)
            parsed = layout.parse_file_name(kept) if kept else None
            if parsed is not None and parsed[0] == self.team:
                return True
        return False

    # --- reading a day ---

    def read_coverage(self, day: date) -> Coverage:
        """The day's coverage from the files' footers only (cheap); empty where there is no
        file (or the file was damaged, and is now moved aside)."""
        parts = self._read_each(day, self._coverage_at)
        return Coverage.of([i for part in parts for i in part.intervals])

    def _coverage_at(self, file: DayFile, path: str) -> Coverage:
        with self.fs.open(path, "rb") as f:
            return _coverage_inside(file, pq.read_metadata(f), path)

    def read_tags(self, day: date) -> dict[Range, TailTag | None]:
        """The tail tag of each of the day's files (file_format.TAIL_KEY), by the time the file
        may hold (an hour, or the whole day of a day file)."""
        return dict(self._read_each(day, self._tag_at))

    def _tag_at(self, file: DayFile, path: str) -> tuple[Range, TailTag | None]:
        with self.fs.open(path, "rb") as f:
            return file.bounds, file_format.tail_of(pq.read_metadata(f), path)

    def read_seconds(
        self, day: date, *, within: Sequence[Range] | None = None
    ) -> tuple[np.ndarray, Coverage] | None:
        """The day's row timestamps (epoch seconds, sorted) and coverage; None without a file
        (or with only damaged ones, now moved aside). With `within`, only the files whose time
        overlaps those ranges are read (their rows and coverage: what planning a sync of those
        ranges needs, however full the rest of the day is).

        One column of each file: cheap enough to plan a sync by (where events are expected).
        """
        parts = self._read_each(day, self._seconds_at, within)
        if not parts:
            return None
        seconds = np.concatenate([s for s, _ in parts])
        return seconds, Coverage.of([i for _, c in parts for i in c.intervals])

    def _seconds_at(self, file: DayFile, path: str) -> tuple[np.ndarray, Coverage]:
        with self.fs.open(path, "rb") as f:
            opened = file_format.open_file(f)
            coverage = _coverage_inside(file, opened.metadata, path)
            stored = opened.read(columns=["timestamp"]).column(0)  # milliseconds in Parquet
            return epoch_seconds(stored.cast(TIMESTAMP_TYPE)), coverage

    def read_day(self, day: date) -> pa.Table:
        """All rows of one day, sorted by timestamp (empty table when there is no file, or only
        damaged ones, now moved aside)."""
        parts = self._read_each(day, self._rows_at)
        return pa.concat_tables(parts) if parts else EVENT_SCHEMA.empty_table()

    def _rows_at(self, file: DayFile, path: str) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return conform(file_format.read_table(f), path)

    def _read_each(
        self,
        day: date,
        read: Callable[[DayFile, str], _Read],
        within: Sequence[Range] | None = None,
    ) -> list[_Read]:
        """`read(file, path)` of each of the day's files in time order (with `within`: of those
        whose time overlaps one of these ranges); none for a file that is gone or was damaged
        (and is now moved aside)."""
        out = []
        for file in self.day_files(day):
            lo, hi = file.bounds
            if within is not None and not any(s < hi and e > lo for s, e in within):
                continue
            result = self._read_healing(file, read)
            if result is not None:
                out.append(result)
        return out

    def _read_healing(self, file: DayFile, read: Callable[[DayFile, str], _Read]) -> _Read | None:
        """`read(file, path)`; None when the file is gone, or was damaged.

        A failed read has the file checked in full under the day's lock: a damaged file is moved
        aside; a whole one (replaced meanwhile, or the failure was not its bytes') is read
        again, and a second failure is raised as it is.
        """
        path = self.path_of(file)
        try:
            return read(file, path)
        except FileNotFoundError:
            return None
        except integrity.READ_ERRORS as exc:
            if not integrity.may_be_damage(exc):
                raise
            with self.lock(file.day):
                if self._set_aside_if_damaged(file.day, path, exc):
                    return None
        try:
            return read(file, path)
        except FileNotFoundError:
            return None

    # --- damage ---

    def _set_aside_if_damaged(self, day: date, path: str, error: BaseException) -> bool:
        """After `error` reading or writing a file of the day: move it aside if it is damaged
        (the caller holds the day's lock). False when the error cannot come from the file's
        bytes, or the file is whole, not a day file of ours, or gone."""
        if not integrity.may_be_damage(error):
            return False
        try:
            return self._move_if_bad(day, path, damaged_only=True).moved_to is not None
        except FileNotFoundError:
            return False

    def _move_if_bad(self, day: date | None, path: str, *, damaged_only: bool) -> FileCheck:
        """Check `path` in full; move it aside if damaged (unless `damaged_only`: if it has any
        problem). The caller holds the day's lock. Raises FileNotFoundError when it is gone, and
        DamagedDayFileError when it cannot be moved: reading it again cannot help."""
        check = integrity.check_file(self.fs, path)
        if check.problem is None or (damaged_only and not check.damaged):
            return check
        try:
            moved_to = integrity.move_aside(self.fs, self.root, path)
        except OSError as exc:
            raise DamagedDayFileError(path, check.problem) from exc
        self.quarantined.append(Quarantined(day, path, moved_to, check.problem))
        log.warning(
            "QUARANTINED day file %s (%s): moved to %s, kept for inspection. The time it held "
            "has no coverage now: the next sync whose window covers %s fetches it again (for a "
            "day older than the incremental window, trigger the backfill for that day).",
            path,
            check.problem,
            moved_to,
            day or "the day",
        )
        return replace(check, moved_to=moved_to)

    def verify(self, *, quarantine: bool = False) -> list[FileCheck]:
        """Check every file the readers read (`event_date=*/*.parquet`, every team's) in full,
        in path order.

        With `quarantine`, every file with a problem is moved aside (one that is not a day file
        of this package too: readers would read it). A file is checked again under its day's
        lock before it is moved, so one that a writer has just replaced stays.
        """
        checks = []
        for path in sorted(self.fs.glob(glob_under(self.root, DAY_FILES_GLOB))):
            try:
                check = integrity.check_file(self.fs, path)
                if check.problem is not None and quarantine:
                    day = integrity.day_of_file(path)
                    file = layout.parse_path(path)  # its own team's lock (any other: none)
                    with (
                        self._lock_of(day, file.team) if day and file else contextlib.nullcontext()
                    ):
                        check = self._move_if_bad(day, path, damaged_only=False)
            except FileNotFoundError:  # replaced or moved since it was listed
                continue
            checks.append(check)
        return checks


def _coverage_inside(file: DayFile, metadata: pq.FileMetaData, path: str) -> Coverage:
    """A file's footer coverage, which must lie inside the time the file may hold."""
    coverage = file_format.coverage_of(metadata, path)
    lo, hi = file.bounds
    if coverage.intervals and (coverage.intervals[0][0] < lo or coverage.intervals[-1][1] > hi):
        raise ValueError(f"{path}: its footer's coverage reaches outside [{lo}, {hi})")
    return coverage
