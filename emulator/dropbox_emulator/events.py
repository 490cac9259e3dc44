"""Deterministic event generation, one UTC day at a time: when events happen.

Each day is generated from its own RNG stream (seed + day number), so any day can be (re)built
on its own, in any order, and always to the same bytes. The schedule lives here: how many events
a day has (weekdays busier), at which second (office hours in two regions), in bursts now and
then, how late each shows up, which ones are genuine duplicates. What each event is comes from
`builders.py`. Events are serialized once with orjson (compact) and kept as bytes.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field

import orjson

from .builders import UNKNOWN_TYPES, EventBuilders
from .clock import format_ts
from .config import DAY, EmulatorConfig
from .team import Team, pick

#: UNKNOWN_TYPES is re-exported: the tests read it where the events are made.
__all__ = ["UNKNOWN_TYPES", "Day", "EventGenerator"]

# Events per hour of the (UTC) day: two overlapping office days (Europe, Americas).
HOUR_WEIGHTS = (2, 1, 1, 1, 2, 4, 7, 10, 13, 14, 14, 13, 12, 13, 15, 16, 15, 13, 10, 8, 6, 5, 4, 3)
_HOUR_CUM = list(itertools.accumulate(HOUR_WEIGHTS))


@dataclass
class Day:
    """A generated day: parallel lists in (timestamp, generation order) order.

    `cv` is 0 for generated events and the custom version for events added later.
    """

    ts: list[int] = field(default_factory=list)
    vis: list[int] = field(default_factory=list)
    cat: list[str] = field(default_factory=list)
    etype: list[str] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    cv: list[int] = field(default_factory=list)


class EventGenerator:
    """Builds the events of one day, deterministically, from the config and the team."""

    def __init__(self, config: EmulatorConfig, team: Team | None = None) -> None:
        self.config = config
        self.builders = EventBuilders(config, team)
        self.team = self.builders.team
        self.templates = self.builders.templates
        self.timeline = config.timeline

    # Days ---------------------------------------------------------------------------------

    def day_bounds(self, day: int) -> tuple[int, int]:
        lo, hi = self.timeline
        return max(day * DAY, lo), min(day * DAY + DAY, hi)

    def generate_day(self, day: int) -> Day:
        """All events with a timestamp in UTC day `day` (epoch days), sorted by timestamp."""
        lo, hi = self.day_bounds(day)
        out = Day()
        if lo >= hi or self.config.events_per_day <= 0:
            return out
        cfg = self.config
        rng = random.Random(f"{cfg.seed}/day/{day}")
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        factor = 1.2 if weekday < 5 else 0.5
        n = int(
            cfg.events_per_day * factor * rng.uniform(0.85, 1.15) * (hi - lo) / DAY + rng.random()
        )
        day_prefix = format_ts(day * DAY)[:11]
        entries: list[tuple[int, bytes, str, str]] = []
        builders = self.builders
        kinds, dumps, unknown_rate = builders.kinds, orjson.dumps, cfg.unknown_type_rate
        while len(entries) < n:
            ts = self._second(rng, day, lo, hi)
            if rng.random() < 0.01:  # a burst: one person, many file events, a few seconds
                for ts_b, ev in self._burst(rng, ts, hi, day_prefix, n - len(entries)):
                    entries.append(
                        (ts_b, dumps(ev), ev["event_category"][".tag"], ev["event_type"][".tag"])
                    )
                continue
            ts_str = self._ts_str(day_prefix, ts - day * DAY)
            if unknown_rate and rng.random() < unknown_rate:
                ev = builders.unknown_event(rng, ts_str)
            else:
                ev = kinds.pick(rng)(rng, ts_str)
            entries.append((ts, dumps(ev), ev["event_category"][".tag"], ev["event_type"][".tag"]))
        entries.sort(key=lambda e: e[0])
        dup_rate = cfg.duplicate_rate
        for ts, body, cat, etype in entries:
            copies = 2 if dup_rate and rng.random() < dup_rate else 1
            for _ in range(copies):  # a genuine repeat: same bytes, its own visibility
                out.ts.append(ts)
                out.vis.append(ts + self._delay(rng))
                out.cat.append(cat)
                out.etype.append(etype)
                out.body.append(body)
        out.cv = [0] * len(out.ts)
        return out

    @staticmethod
    def _ts_str(prefix: str, second_of_day: int) -> str:
        h, rem = divmod(second_of_day, 3600)
        m, s = divmod(rem, 60)
        return f"{prefix}{h:02d}:{m:02d}:{s:02d}Z"

    @staticmethod
    def _second(rng: random.Random, day: int, lo: int, hi: int) -> int:
        hour = bisect.bisect_right(_HOUR_CUM, rng.random() * _HOUR_CUM[-1])
        ts = day * DAY + hour * 3600 + int(rng.random() * 3600)
        if lo <= ts < hi:
            return ts
        return rng.randrange(lo, hi)

    def _delay(self, rng: random.Random) -> int:
        """Seconds until an event shows up: mostly minutes, some hours, a few up to a day."""
        cfg = self.config
        if rng.random() < cfg.late_rate:
            if rng.random() < 0.2:
                delay = rng.randrange(12 * 3600, max(12 * 3600 + 1, cfg.max_delay + 1))
            else:
                delay = rng.randrange(3600, 12 * 3600)
        else:
            delay = min(5 + int(rng.lognormvariate(5.0, 0.9)), 3599)
        return min(delay, cfg.max_delay)

    def _burst(self, rng: random.Random, ts: int, hi: int, prefix: str, room: int):
        """Bulk file operation: many events of one type by one person within seconds."""
        m = self.builders.member(rng)
        tag = pick(rng, ("file_delete", "file_move", "file_add", "file_download", "file_add"))
        count = min(room, rng.randrange(5, 60))
        day_start = ts - ts % DAY
        for _ in range(count):
            t = min(ts + rng.randrange(0, 4), hi - 1)
            yield t, self.builders.file_op(rng, self._ts_str(prefix, t - day_start), tag, m)
