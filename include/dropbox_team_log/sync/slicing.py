"""How a day's due ranges are cut into time slices that several API calls read side by side.

A slice is read page after page through its own cursor, so a day's wall time is set by its
longest slice, and each slice ends with one partly filled page. The network floor (pages x
latency / concurrency) is only reached when every worker stays busy to the end: many slices of
about one page each, in a number that the workers share evenly. Their bounds come from where the
day's events are expected to fall (`DensityProfile`), so a busy office hour is cut finer than the
night; without any expectation the caller reads one page first and cuts by what it showed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from dropbox_team_log.timeutil import Range

#: A slice is planned to fill this share of a page, so one that turns out a little denser than
#: expected still costs one call, not two.
PAGE_FILL = 0.85
#: Above this many planned slices per worker, slices grow to several pages each: a balanced tail
#: needs only a few slices per worker, and every slice costs one partly filled page.
SLICES_PER_WORKER = 8


@dataclass(frozen=True)
class DensityProfile:
    """Epoch seconds where a range's events are expected (sorted), each standing for `weight`
    events: rows already on disk for this time, or a neighbouring day's rows moved onto it."""

    seconds: np.ndarray
    weight: float = 1.0

    @classmethod
    def uniform(cls, lo: int, hi: int, rows: float) -> DensityProfile:
        """`rows` events spread evenly over `[lo, hi)`: all a single probe page can tell."""
        n = max(1, min(math.ceil(rows), 100_000))
        points = lo + (np.arange(n, dtype=np.float64) + 0.5) * ((hi - lo) / n)
        return cls(np.floor(points).astype(np.int64), rows / n)

    @classmethod
    def from_day(
        cls, seconds: np.ndarray, *, shift: int = 0, weight: float = 1.0
    ) -> DensityProfile:
        """A day's row timestamps, moved by `shift` seconds (a neighbour day onto this one)."""
        return cls(np.sort(np.asarray(seconds, dtype=np.int64) + shift), weight)

    def expected(self, lo: int, hi: int) -> float:
        """Events expected in `[lo, hi)`."""
        left, right = np.searchsorted(self.seconds, [lo, hi], side="left")
        return float(right - left) * self.weight


def slice_count(expected_rows: float, *, page_limit: int, concurrency: int) -> int:
    """How many slices a range of `expected_rows` is cut into.

    One slice when it fits in one page. Otherwise slices of about one page, rounded up to a
    multiple of `concurrency` so the last round of calls is a full one; past SLICES_PER_WORKER
    per worker, slices of several pages instead (the tail of a few slices per worker is short).
    """
    per_slice = PAGE_FILL * page_limit
    if concurrency <= 1 or expected_rows <= per_slice:
        return 1
    slices = math.ceil(expected_rows / per_slice)
    most = SLICES_PER_WORKER * concurrency
    if slices >= most:
        return most
    return concurrency * math.ceil(slices / concurrency)


def cut(lo: int, hi: int, profile: DensityProfile, pieces: int) -> list[Range]:
    """`[lo, hi)` cut into up to `pieces` slices of about equal expected events.

    Bounds are whole seconds at the profile's quantiles; a second is never split (the API
    filters by whole seconds), so a range with fewer distinct busy seconds gets fewer slices.
    Seconds the profile knows nothing about go to the slice around them.
    """
    if pieces <= 1 or hi - lo <= 1:
        return [(lo, hi)]
    inside = profile.seconds[
        np.searchsorted(profile.seconds, lo, "left") : np.searchsorted(profile.seconds, hi, "left")
    ]
    if len(inside) < 2:
        return [(lo, hi)]
    quantiles = (np.arange(1, pieces) * len(inside)) // pieces
    bounds = np.unique(inside[quantiles])
    bounds = bounds[(bounds > max(lo, int(inside[0]))) & (bounds < hi)]  # no empty first slice
    edges = [lo, *(int(b) for b in bounds), hi]
    return list(itertools.pairwise(edges))


def plan(
    ranges: list[Range], profile: DensityProfile, *, page_limit: int, concurrency: int
) -> list[tuple[Range, float]]:
    """Slices of all `ranges` with the events each is expected to hold, largest first.

    Largest first: a pool that starts the longest slices first finishes with short ones, so the
    workers run out of work at about the same moment (longest processing time first).
    """
    total = sum(profile.expected(lo, hi) for lo, hi in ranges)
    count = slice_count(total, page_limit=page_limit, concurrency=concurrency)
    slices: list[tuple[Range, float]] = []
    for lo, hi in ranges:
        rows = profile.expected(lo, hi)
        share = max(1, round(count * rows / total)) if total > 0 else 1
        slices += [(piece, profile.expected(*piece)) for piece in cut(lo, hi, profile, share)]
    return sorted(slices, key=lambda item: -item[1])
