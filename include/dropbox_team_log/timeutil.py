"""Time as the pipeline counts it: epoch seconds, half-open ranges, UTC days, the wire format.

Every instant inside the pipeline is an int of epoch seconds (Dropbox's granularity); a range is
`(start, end)`, end excluded. The API's wire form is `YYYY-MM-DDTHH:MM:SSZ`, parsed strictly:
anything else is refused rather than guessed at.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta

DAY = 86_400
HOUR = 3_600
#: `[start, end)` in epoch seconds.
Range = tuple[int, int]
WIRE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_wire(epoch_seconds: int) -> str:
    """The API's wire form of an epoch second (also how logs show instants)."""
    return (_EPOCH + timedelta(seconds=epoch_seconds)).strftime(WIRE_FORMAT)


def day_start(day: date) -> int:
    """00:00 UTC of `day`, in epoch seconds."""
    return calendar.timegm(day.timetuple())


def day_bounds(day: date) -> Range:
    """`[start, end)` of a UTC day."""
    start = day_start(day)
    return start, start + DAY


def day_of(epoch_seconds: int) -> date:
    """The UTC day an instant falls on."""
    return datetime.fromtimestamp(epoch_seconds, UTC).date()


# --- parsing the wire form --------------------------------------------------------------------
# Pages hold thousands of events from a handful of days, so the date and the time of day are
# each validated once and then looked up, instead of a strptime per event.

_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_TIME_RE = re.compile(r"(\d{2}):(\d{2}):(\d{2})", re.ASCII)
_MAX_CACHED_DATES = 4096
_date_seconds: dict[str, int] = {}
_time_seconds: dict[str, int] = {}


def _parse_date(text: str) -> int:
    """Epoch seconds of a strict `YYYY-MM-DD` at 00:00 UTC (validated once, then cached)."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad date part {text!r}")
    y, mo, d = (int(g) for g in m.groups())
    datetime(y, mo, d)  # range check: raises ValueError for e.g. month 13 or Feb 30
    seconds = calendar.timegm((y, mo, d, 0, 0, 0))
    if len(_date_seconds) >= _MAX_CACHED_DATES:
        _date_seconds.clear()
    _date_seconds[text] = seconds
    return seconds


def _parse_time(text: str) -> int:
    """Seconds since midnight of a strict `HH:MM:SS` (at most 86,400 distinct keys are cached)."""
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad time part {text!r}")
    h, mi, s = (int(g) for g in m.groups())
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"time out of range {text!r}")
    seconds = h * 3600 + mi * 60 + s
    _time_seconds[text] = seconds
    return seconds


def from_wire(text: str) -> int:
    """Epoch seconds of a wire timestamp `YYYY-MM-DDTHH:MM:SSZ`; ValueError for anything else."""
    if text.__class__ is not str or len(text) != 20 or text[10] != "T" or text[19] != "Z":
        raise ValueError(f"timestamp {text!r} is not {WIRE_FORMAT}")
    date_part = text[:10]
    time_part = text[11:19]
    day = _date_seconds.get(date_part)
    if day is None:
        day = _parse_date(date_part)
    seconds = _time_seconds.get(time_part)
    if seconds is None:
        seconds = _parse_time(time_part)
    return day + seconds
