"""Where a day's rows live: the names of the dataset's folders and files, and their parsing.

A day folder `event_date=YYYY-MM-DD/` holds either

- hour files `events-HH.parquet` (HH = 00..23 UTC), each holding the rows of `[hour start,
  hour end)` and a footer whose coverage lies inside that hour; a write replaces only the hour
  files its ranges touch, each on its own (store.py). Hours nothing was written for have no file.
- or, for a day written before hour files existed, one legacy day file `events.parquet` holding
  the whole day. It is read as it is and written as it is: a folder never mixes the two (a mix
  could only be made by two replaces, and a reader between them would see rows twice or not at
  all).

Both match the readers' glob `event_date=*/*.parquet` (schema.DAY_FILES_GLOB), and every row is
in exactly one file. This module only names and parses: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from dropbox_team_log.schema import PARTITION_KEY
from dropbox_team_log.timeutil import HOUR, Range, day_start

#: The one file of a day written in the layout before hour files (read and written as it is).
LEGACY_FILE = "events.parquet"
HOURS = range(24)
#: The hour files of one day folder, as a glob of names (the folder taken literally).
HOUR_FILES_PATTERN = "events-[0-2][0-9].parquet"

_FOLDER_RE = re.compile(rf"^{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_HOUR_FILE_RE = re.compile(r"^events-([0-2][0-9])\.parquet$")


@dataclass(frozen=True)
class DayFile:
    """One file of the layout: its day, and its hour (None: the legacy file of the whole day)."""

    day: date
    hour: int | None

    @property
    def name(self) -> str:
        return LEGACY_FILE if self.hour is None else hour_file_name(self.hour)

    @property
    def sort_key(self) -> tuple[date, int]:
        """Time order: by day, the legacy file (the whole day) before the hour files."""
        return self.day, -1 if self.hour is None else self.hour

    @property
    def bounds(self) -> Range:
        """The seconds this file may hold: its hour, or its whole day."""
        return hour_bounds(self.day, self.hour) if self.hour is not None else _day_range(self.day)


def day_folder(day: date) -> str:
    """The folder name of a day: `event_date=YYYY-MM-DD`."""
    return f"{PARTITION_KEY}={day.isoformat()}"


def hour_file_name(hour: int) -> str:
    """The file name of an hour of a day: `events-HH.parquet`."""
    if hour not in HOURS:
        raise ValueError(f"hour {hour!r} is not 0..23")
    return f"events-{hour:02d}.parquet"


def parse_day_folder(name: str) -> date | None:
    """The day of an `event_date=YYYY-MM-DD` folder name; None for any other name."""
    match = _FOLDER_RE.match(name)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def parse_hour_file_name(name: str) -> int | None:
    """The hour of an hour file's name (`events-HH.parquet`); None for any other name."""
    match = _HOUR_FILE_RE.match(name)
    if match and int(match.group(1)) in HOURS:
        return int(match.group(1))
    return None


def parse_path(path: str) -> DayFile | None:
    """The `DayFile` a path (`.../event_date=D/<name>`) names; None if it is not one of ours."""
    parts = path.rstrip("/").rsplit("/", 2)
    if len(parts) < 2:
        return None
    day = parse_day_folder(parts[-2])
    hour = parse_hour_file_name(parts[-1])
    if day is None or (hour is None and parts[-1] != LEGACY_FILE):
        return None
    return DayFile(day, hour)


def hour_bounds(day: date, hour: int) -> Range:
    """`[start, end)` of one UTC hour of `day`, in epoch seconds."""
    if hour not in HOURS:
        raise ValueError(f"hour {hour!r} is not 0..23")
    start = day_start(day) + hour * HOUR
    return start, start + HOUR


def hour_of(day: date, second: int) -> int:
    """The hour of `day` an instant falls in (ValueError outside the day)."""
    hour = (second - day_start(day)) // HOUR
    if hour not in HOURS:
        raise ValueError(f"{second} is not inside {day}")
    return hour


def split_by_hour(day: date, ranges: Iterable[Range]) -> dict[int, list[Range]]:
    """Ranges of `day` cut at hour boundaries: {hour: its pieces, in order}, hours ascending."""
    out: dict[int, list[Range]] = {}
    for start, end in sorted(ranges):
        cursor = start
        while cursor < end:
            hour = hour_of(day, cursor)
            stop = min(end, hour_bounds(day, hour)[1])
            out.setdefault(hour, []).append((cursor, stop))
            cursor = stop
    return dict(sorted(out.items()))


def _day_range(day: date) -> Range:
    start = day_start(day)
    return start, start + 24 * HOUR
