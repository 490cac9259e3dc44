r"""Where a day's rows live: the names of the dataset's folders and files, and their parsing.

A day folder `event_date=YYYY-MM-DD/` holds either

- hour files `events-HH.parquet` (HH = 00..23 UTC), each holding the rows of `[hour start,
  hour end)` and a footer whose coverage lies inside that hour; a write replaces only the hour
  files its ranges touch, each on its own (store.py). Hours nothing was written for have no file.
- or one day file `events.parquet` holding the whole day: settled history (a day first written
  when it was already DAY_FILE_AFTER_HOURS old, e.g. by a backfill; store.py), or a day written
  before hour files existed. Every write of it rewrites that one file. A team's day never mixes
  the two and never changes kind (a change could only be made by several replaces, and a reader
  between them would see rows twice or not at all).

Each team of the deployment has its own files in the same day folders, named by its team key:

- the default team (the connection the deployment had before the team registry; key None) keeps
  the unprefixed names above, so a dataset written before several teams keeps working as it is;
- every other team's files carry its connection id as a prefix: `<conn_id>.events-HH.parquet`
  or `<conn_id>.events.parquet` (its day file). Names are parsed from the right: the kind from
  the suffix, then the key is whatever precedes `.events`, checked against TEAM_KEY_RE (a conn
  id: `[\w.-]+`, not starting with `.` or `-`).

So a team's writes, locks, quarantines and heals touch only its own files, while all of them
match the readers' glob `event_date=*/*.parquet` (schema.DAY_FILES_GLOB): every row is in
exactly one file of exactly one team. This module only names and parses: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from dropbox_team_log.schema import PARTITION_KEY
from dropbox_team_log.timeutil import HOUR, Range, day_start

#: The one file of a whole day (settled history, or a day written before hour files existed).
DAY_FILE = "events.parquet"
HOURS = range(24)
#: The hour files of one day folder, as a glob of names (the folder taken literally).
HOUR_FILES_PATTERN = "events-[0-2][0-9].parquet"

#: A team key (a connection id) as file names carry it: ASCII word characters, '.' and '-',
#: not starting with '.' or '-' (a hidden temp file starts with '.'), at most 200 characters.
TEAM_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")

_FOLDER_RE = re.compile(rf"^{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_HOUR_FILE_RE = re.compile(r"^events-([0-2][0-9])\.parquet$")
_FILE_RE = re.compile(r"^(?:(?P<key>.+)\.)?events(?:-(?P<hour>[0-2][0-9]))?\.parquet$")


class TeamKeyError(ValueError):
    """A team key that cannot name a team's files: says what is allowed."""


def check_team_key(key: str | None) -> str | None:
    """`key` if it can prefix a file name (None: the default team's unprefixed files), else
    TeamKeyError saying what is allowed."""
    if key is None:
        return None
    if not isinstance(key, str) or not TEAM_KEY_RE.match(key):
        raise TeamKeyError(
            f"team key {key!r} cannot name a team's files: use 1-200 characters of ASCII "
            "letters, digits, '_', '.' and '-', not starting with '.' or '-' (the team's "
            "connection id)"
        )
    return key


@dataclass(frozen=True)
class DayFile:
    """One file of the layout: its day, its hour (None: the day file of the whole day) and
    its team's key (None: the default team's unprefixed files)."""

    day: date
    hour: int | None
    team: str | None = None

    @property
    def name(self) -> str:
        base = DAY_FILE if self.hour is None else hour_file_name(self.hour)
        return base if self.team is None else f"{check_team_key(self.team)}.{base}"

    @property
    def sort_key(self) -> tuple[date, int]:
        """Time order: by day, the day file (the whole day) before the hour files."""
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


def parse_file_name(name: str) -> tuple[str | None, int | None] | None:
    """(team key, hour) of a file name of the layout (hour None: a day file; key None:
    the default team); None for any other name, a bad key included."""
    match = _FILE_RE.match(name)
    if not match:
        return None
    key, hour = match.group("key"), match.group("hour")
    if key is not None and not TEAM_KEY_RE.match(key):
        return None
    if hour is not None and int(hour) not in HOURS:
        return None
    return key, None if hour is None else int(hour)


def parse_path(path: str) -> DayFile | None:
    """The `DayFile` a path (`.../event_date=D/<name>`) names; None if it is not one of ours."""
    parts = path.rstrip("/").rsplit("/", 2)
    if len(parts) < 2:
        return None
    day = parse_day_folder(parts[-2])
    parsed = parse_file_name(parts[-1])
    if day is None or parsed is None:
        return None
    team, hour = parsed
    return DayFile(day, hour, team)


def lock_name(day: date, team: str | None) -> str:
    """The name of the lock file of one team's day (in the root's `_locks/` folder)."""
    folder = day_folder(day)
    return f"{folder}.lock" if team is None else f"{folder}.{check_team_key(team)}.lock"


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
