"""Everything one emulator instance holds, independent of HTTP."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter

from .clock import Clock
from .config import EmulatorConfig
from .cursor import CursorCodec
from .events import EventGenerator
from .faults import FaultBook
from .oauth import OAuthService
from .store import EventStore
from .team import Team


class Stats:
    """Calls per route, responses per (route, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def call(self, route: str) -> None:
        with self._lock:
            self.calls[route] += 1

    def status(self, route: str, status: int | str) -> None:
        with self._lock:
            self.statuses[f"{route} {status}"] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"calls": dict(self.calls), "responses": dict(self.statuses)}

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.statuses.clear()


class EmulatorState:
    """Config, clock, team, events, tokens, faults and counters of one emulator."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = Clock(config.start_epoch, config.clock_rate)
        self.team = Team(config)
        self.generator = EventGenerator(config, self.team)
        self.store = EventStore(config, self.generator)
        self.oauth = OAuthService(config, self.clock, self.team)
        self.faults = FaultBook()
        self.stats = Stats()
        key = hashlib.sha256(f"cursor/{config.seed}/{self.team.team_id}".encode()).digest()
        self.cursors = CursorCodec(key)
