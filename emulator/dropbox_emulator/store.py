"""Which events exist, which are visible when, and how they are cut into pages.

Days are generated lazily and kept in an LRU bounded by event count; any evicted day is
regenerated to the same bytes. Custom events (control API) are merged into their day in
(timestamp, insertion) order after the generated ones of the same second.

A page walks the snapshot's order - (timestamp, generation order) over the days of the range,
keeping only events the cursor's window can see - from the cursor's (day, k) position. Only
the days a page touches (plus a look-ahead for `has_more`) are ever generated.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from .config import DAY, EmulatorConfig
from .cursor import Query, Window
from .events import Day, EventGenerator


@dataclass(frozen=True)
class CustomEvent:
    ts: int
    vis: int
    category: str
    event_type: str
    body: bytes


@dataclass
class PageSlice:
    """The events of one page, in snapshot order, and where the next page starts."""

    ts: list[int]
    bodies: list[bytes]
    day: int
    k: int
    has_more: bool


class EventStore:
    """Lazily generated days + custom events, with visibility-aware paging."""

    def __init__(
        self, config: EmulatorConfig, generator: EventGenerator, cache_events: int | None = None
    ) -> None:
        self.config = config
        self.generator = generator
        self.cache_events = cache_events if cache_events is not None else config.cache_events
        self._lock = threading.RLock()
        self._days: OrderedDict[int, Day] = OrderedDict()
        self._cached = 0
        self._custom: dict[int, list[tuple[int, CustomEvent]]] = {}  # day -> [(cv, event)]
        self.custom_version = 0
        self._positions: OrderedDict[tuple, list[int]] = OrderedDict()
        lo, hi = config.timeline
        self._tl_days = (lo // DAY, (hi - 1) // DAY) if hi > lo else (0, -1)

    # Days ---------------------------------------------------------------------------------

    def day(self, d: int) -> Day:
        """Day `d` with its custom events merged; generated (or regenerated) on demand."""
        with self._lock:
            cached = self._days.get(d)
            if cached is not None:
                self._days.move_to_end(d)
                return cached
            day = self.generator.generate_day(d)
            for cv, ev in self._custom.get(d, ()):
                self._insert(day, cv, ev)
            self._days[d] = day
            self._cached += len(day.ts)
            while self._cached > self.cache_events and len(self._days) > 2:
                _, old = self._days.popitem(last=False)
                self._cached -= len(old.ts)
            return day

    @staticmethod
    def _insert(day: Day, cv: int, ev: CustomEvent) -> None:
        i = bisect.bisect_right(day.ts, ev.ts)
        day.ts.insert(i, ev.ts)
        day.vis.insert(i, ev.vis)
        day.cat.insert(i, ev.category)
        day.etype.insert(i, ev.event_type)
        day.body.insert(i, ev.body)
        day.cv.insert(i, cv)

    def add_events(self, events: list[CustomEvent]) -> int:
        """Add custom events; they get increasing custom versions (cv) and never change what
        an existing cursor's snapshot sees."""
        with self._lock:
            for ev in events:
                self.custom_version += 1
                d = ev.ts // DAY
                self._custom.setdefault(d, []).append((self.custom_version, ev))
                cached = self._days.get(d)
                if cached is not None:
                    self._insert(cached, self.custom_version, ev)
                    self._cached += 1
                # indices into the day shift: forget them (cached or not)
                for key in [k for k in self._positions if k[0] == d]:
                    del self._positions[key]
            return self.custom_version

    def candidate_days(self, start: int | None, end: int | None) -> list[int]:
        """Days that may hold events with timestamp in [start, end)."""
        first, last = self._tl_days
        days = set(range(first, last + 1))
        with self._lock:
            days.update(self._custom)
        lo = start // DAY if start is not None else None
        hi = (end - 1) // DAY if end is not None else None
        return sorted(d for d in days if (lo is None or d >= lo) and (hi is None or d <= hi))

    def window_days(self, q: Query, w: Window) -> list[int]:
        """The candidate days of `q` that can hold an event the window sees.

        An event is never visible before its timestamp (vis >= ts), so no day after `w.hi`
        qualifies (a query without end_time would otherwise walk the timeline's future days).
        A poll window sees only events that became visible after `w.lo`: a day of generated
        events all visible by then (its last second + max_delay <= lo) is skipped, unless it
        holds custom events (their visibility is set freely). Pure pruning: the same events,
        in the same order, as walking every candidate day.
        """
        days = self.candidate_days(q.start, q.end)
        last = w.hi // DAY
        if w.lo is None:
            return [d for d in days if d <= last]
        settled_before = w.lo - self.config.max_delay  # days ending by then are all seen
        with self._lock:
            custom = set(self._custom)
        return [
            d for d in days if d <= last and (d in custom or (d + 1) * DAY - 1 > settled_before)
        ]

    # Visibility ---------------------------------------------------------------------------

    def positions(self, d: int, q: Query, w: Window) -> list[int]:
        """Indices (into day d) of the events in the query and the window, in order."""
        key = (
            d,
            q.start,
            q.end,
            q.category,
            q.event_type,
            q.account_id,
            w.lo,
            w.hi,
            w.cv_lo,
            w.cv_hi,
        )
        with self._lock:
            hit = self._positions.get(key)
            if hit is not None:
                self._positions.move_to_end(key)
                return hit
            day = self.day(d)
            ts, vis, cv = day.ts, day.vis, day.cv
            a = bisect.bisect_left(ts, q.start) if q.start is not None else 0
            b = bisect.bisect_left(ts, q.end) if q.end is not None else len(ts)
            hi, cvh = w.hi, w.cv_hi
            idx = [i for i in range(a, b) if vis[i] <= hi and cv[i] <= cvh]
            if w.lo is not None:
                lo, cvl = w.lo, w.cv_lo
                idx = [i for i in idx if not (vis[i] <= lo and cv[i] <= cvl)]
            if q.category is not None:
                idx = [i for i in idx if day.cat[i] == q.category]
            if q.event_type is not None:
                idx = [i for i in idx if day.etype[i] == q.event_type]
            if q.account_id is not None:
                needle = q.account_id.encode()
                idx = [i for i in idx if needle in day.body[i]]
            self._positions[key] = idx
            while len(self._positions) > 256:
                self._positions.popitem(last=False)
            return idx

    def page(self, q: Query, w: Window, day: int, k: int, size: int) -> PageSlice:
        """Up to `size` events from position (day, k), and whether any remain after them."""
        days = [d for d in self.window_days(q, w) if d >= day]
        out_ts: list[int] = []
        out_body: list[bytes] = []
        pos_day, pos_k = day, k
        i = 0
        with self._lock:
            while i < len(days) and len(out_ts) < size:
                d = days[i]
                start_k = k if d == day else 0
                idx = self.positions(d, q, w)
                take = idx[start_k : start_k + size - len(out_ts)]
                if take:
                    data = self.day(d)
                    out_ts.extend(data.ts[j] for j in take)
                    out_body.extend(data.body[j] for j in take)
                pos_day, pos_k = d, start_k + len(take)
                if pos_k < len(idx):
                    break
                i += 1
            has_more = False
            if i < len(days):
                d = days[i]
                if pos_day == d:
                    has_more = pos_k < len(self.positions(d, q, w)) or any(
                        self.positions(nd, q, w) for nd in days[i + 1 :]
                    )
                else:
                    has_more = any(self.positions(nd, q, w) for nd in days[i:])
            if not has_more:
                pos_day, pos_k = (days[-1] + 1 if days else day), 0
        return PageSlice(out_ts, out_body, pos_day, pos_k, has_more)

    def truth_window(self, start: int, end: int, as_of: int) -> tuple[Query, Window]:
        """The ground truth as a query: events in [start, end) visible at `as_of`, including
        every custom event added so far, duplicates included."""
        with self._lock:
            return Query(start, end, None, None, None, 1000), Window(
                None, as_of, 0, self.custom_version
            )

    def truth_plan(self, q: Query, w: Window) -> list[tuple[int, int, int]]:
        """(day, event count, NDJSON byte length) per day of the ground truth."""
        plan = []
        for d in self.candidate_days(q.start, q.end):
            bodies = self._visible_bodies(d, q, w)
            plan.append((d, len(bodies), sum(map(len, bodies)) + len(bodies)))
        return plan

    def truth_chunks(self, q: Query, w: Window, days: list[int]) -> Iterator[bytes]:
        """The ground truth as NDJSON, one chunk per day (an evicted day is regenerated, so
        memory stays bounded by the day cache)."""
        for d in days:
            bodies = self._visible_bodies(d, q, w)
            if bodies:
                yield b"".join(body + b"\n" for body in bodies)

    def _visible_bodies(self, d: int, q: Query, w: Window) -> list[bytes]:
        with self._lock:
            data = self.day(d)
            return [data.body[i] for i in self.positions(d, q, w)]
