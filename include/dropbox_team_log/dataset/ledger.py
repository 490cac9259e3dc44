"""Which seconds of a day the dataset holds exactly, as of when: the exactness core.

The API has no event id and events arrive up to 24 h late, so a day's rows can only be trusted
range by range: "the rows with timestamp in [start, end) are exactly the API's answer as of
fetched_at". A `Coverage` is the set of such statements for one day file; this module decides what
to fetch next and what a new fetch may replace. All values are epoch seconds (ints); ranges are
half-open `[start, end)`.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dropbox_team_log.timeutil import Range

Interval = tuple[int, int, int]  # (start, end, fetched_at)


def merge_ranges(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """Sorted union of ranges, adjacent or overlapping ones joined, empty ones dropped."""
    merged: list[list[int]] = []
    for start, end in sorted(r for r in map(_as_range, ranges) if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _clip(ranges: Iterable[Range], lo: int, hi: int) -> list[Range]:
    """Ranges cut to [lo, hi); empty leftovers dropped."""
    return [(max(s, lo), min(e, hi)) for s, e in ranges if max(s, lo) < min(e, hi)]


def _subtract(intervals: Iterable[Interval], ranges: Sequence[Range]) -> list[Interval]:
    """Intervals minus the (sorted, merged) ranges, keeping each piece's fetched_at."""
    out: list[Interval] = []
    for start, end, fetched_at in intervals:
        cursor = start
        for s, e in ranges:
            if e <= cursor or s >= end:
                continue
            if s > cursor:
                out.append((cursor, s, fetched_at))
            cursor = max(cursor, e)
        if cursor < end:
            out.append((cursor, end, fetched_at))
    return out


def _check_int(name: str, value: object) -> int:
    """Epoch seconds must be integers (numpy ints welcome): floats would blur seconds."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int (epoch seconds), got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int (epoch seconds), got {value!r}") from None


def _as_range(pair: Sequence[int]) -> Range:
    """A validated (start, end) from any pair (tuple, list, JSON array)."""
    start, end = pair
    return _check_range(start, end)


def _check_range(start: object, end: object) -> Range:
    """A valid half-open range; start > end is a caller bug, start == end is empty."""
    s, e = _check_int("start", start), _check_int("end", end)
    if s > e:
        raise ValueError(f"range start {s} is after its end {e}")
    return s, e


@dataclass(frozen=True)
class Coverage:
    """Sorted, non-overlapping `(start, end, fetched_at)` intervals of one day file.

    Canonical: adjacent intervals with the same fetched_at are joined, so equal coverage
    compares equal and the footer JSON stays short.
    """

    intervals: tuple[Interval, ...] = ()

    def __post_init__(self) -> None:
        joined: list[Interval] = []
        for interval in self.intervals:
            start, end, fetched_at = interval
            start, end = _check_range(start, end)
            fetched_at = _check_int("fetched_at", fetched_at)
            if start == end:
                raise ValueError(f"empty coverage interval at {start}")
            if joined and start < joined[-1][1]:
                raise ValueError("coverage intervals must be sorted and must not overlap")
            if joined and joined[-1][1] == start and joined[-1][2] == fetched_at:
                joined[-1] = (joined[-1][0], end, fetched_at)
            else:
                joined.append((start, end, fetched_at))
        object.__setattr__(self, "intervals", tuple(joined))

    @classmethod
    def of(cls, intervals: Iterable[Sequence[int]]) -> Coverage:
        """Coverage from non-overlapping intervals in any order."""
        return cls(tuple(sorted(tuple(i) for i in intervals)))  # type: ignore[misc]

    # --- serialisation (Parquet footer) ---

    def to_json(self) -> str:
        """JSON text: a list of `[start, end, fetched_at]`."""
        return json.dumps([list(i) for i in self.intervals], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Coverage:
        """Inverse of `to_json` (validates, since the text comes from a file)."""
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(i, list) and len(i) == 3 for i in data):
            raise ValueError(f"coverage JSON must be a list of [start, end, fetched_at]: {text!r}")
        return cls.of(data)

    # --- queries ---

    def _overlapping(self, lo: int, hi: int) -> list[Interval]:
        """The intervals that share at least one second with [lo, hi)."""
        return [i for i in self.intervals if i[0] < hi and i[1] > lo and lo < hi]

    def uncovered(self, lo: int, hi: int) -> list[Range]:
        """Parts of [lo, hi) that no interval covers."""
        lo, hi = _check_range(lo, hi)
        covered = [(s, e) for s, e, _ in self._overlapping(lo, hi)]
        return [(s, e) for s, e, _ in _subtract([(lo, hi, 0)], covered)]

    def is_settled(self, lo: int, hi: int, *, settle: int) -> bool:
        """True when every second of [lo, hi) is covered by a fetch made `settle` s after it."""
        lo, hi = _check_range(lo, hi)
        if self.uncovered(lo, hi):
            return False
        return all(
            fetched_at - settle >= min(end, hi) for _, end, fetched_at in self._overlapping(lo, hi)
        )

    def due_for_refetch(
        self, lo: int, hi: int, *, as_of: int, settle: int, refresh: int | None, batch: int = 1
    ) -> list[Range]:
        """Ranges of [lo, hi) worth fetching at `as_of`, merged, all before `as_of`.

        Uncovered parts always; of each covered interval only its unsettled tail
        `[max(start, fetched_at - settle), end)`: the part that has settled by now
        (before `as_of - settle`, rounded down to a multiple of `batch` seconds, so that time
        settles a whole batch per fetch: an hour at once rather than every few minutes), or the
        whole tail once it is `refresh` seconds old. An interval fetched at or after `as_of` is
        left alone, so replaying an old run never moves data back.
        """
        lo, hi = _check_range(lo, hi)
        if _check_int("batch", batch) < 1:
            raise ValueError(f"settle batch must be at least 1 second, got {batch}")
        due = list(self.uncovered(lo, hi))
        settled_now = (as_of - settle) // batch * batch
        for start, end, fetched_at in self._overlapping(lo, hi):
            if fetched_at >= as_of:
                continue
            tail_start = max(start, fetched_at - settle)
            if tail_start >= end:
                continue  # fully settled: final
            if refresh is not None and as_of - fetched_at >= refresh:
                due.append((tail_start, end))
            elif settled_now > tail_start:
                due.append((tail_start, min(end, settled_now)))
        return _clip(merge_ranges(due), lo, min(hi, as_of))

    # --- updates ---

    def apply(self, new: Iterable[Range], fetched_at: int) -> tuple[Coverage, list[Range]]:
        """Record that `new` ranges were fetched at `fetched_at`.

        Returns the new coverage and the ranges actually taken: every part of `new` except where
        the file already holds a newer fetch (an older run must not overwrite a newer one). A fetch
        at the same instant is taken again, so a retried task replaces its own rows.
        """
        _check_int("fetched_at", fetched_at)
        ranges = merge_ranges(new)
        newer = [(s, e) for s, e, f in self.intervals if f > fetched_at]
        taken = [(s, e) for s, e, _ in _subtract([(s, e, 0) for s, e in ranges], newer)]
        kept = _subtract(self.intervals, taken)
        return Coverage.of([*kept, *((s, e, fetched_at) for s, e in taken)]), taken
