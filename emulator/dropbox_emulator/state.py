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
    """Calls per route, responses per (route, status), and calls per team and route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.team_calls: dict[str, Counter[str]] = {}

    def call(self, route: str, team: str | None = None) -> None:
        with self._lock:
            self.calls[route] += 1
            if team is not None:
                self.team_calls.setdefault(team, Counter())[route] += 1

    def status(self, route: str, status: int | str) -> None:
        with self._lock:
            self.statuses[f"{route} {status}"] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "responses": dict(self.statuses),
                "team_calls": {team: dict(c) for team, c in self.team_calls.items()},
            }

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.statuses.clear()
            self.team_calls.clear()


class TeamState:
    """One team's world: its config, members, generated and injected events, cursor key.

    Cursors are signed with a key of the team's own, so one team's cursor is a `bad_cursor`
    for any other team.
    """

    def __init__(self, config: EmulatorConfig, cache_events: int | None = None) -> None:
        self.config = config
        self.team = Team(config)
        self.team_id = self.team.team_id
        self.generator = EventGenerator(config, self.team)
        self.store = EventStore(config, self.generator, cache_events)
        key = hashlib.sha256(f"cursor/{config.seed}/{self.team_id}".encode()).digest()
        self.cursors = CursorCodec(key)


class EmulatorState:
    """Config, clock, teams, tokens, faults and counters of one emulator.

    One world: the clock, the app, the faults and the counters are shared; each team has its
    own members, events and cursors. `team`, `store`, ... are the default (first) team's.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = Clock(config.start_epoch, config.clock_rate)
        configs = config.team_configs
        share = None if len(configs) == 1 else max(1, config.cache_events // len(configs))
        teams = [TeamState(c, share) for c in configs]
        self.teams: dict[str, TeamState] = {t.team_id: t for t in teams}
        self.default = teams[0]
        self.oauth = OAuthService(config, self.clock, [t.team for t in teams])
        self.faults = FaultBook(per_team=len(teams) > 1)
        self.stats = Stats()

    def find_team(self, selector: str | int | None) -> TeamState | None:
        """A team by id or index in the config's list; None if there is no such team."""
        if selector is None or selector == "":
            return None
        team_id = self.oauth.resolve_team(str(selector))
        return None if team_id is None else self.teams[team_id]

    # The default team's parts, for single-team callers.
    @property
    def team(self) -> Team:
        return self.default.team

    @property
    def generator(self) -> EventGenerator:
        return self.default.generator

    @property
    def store(self) -> EventStore:
        return self.default.store

    @property
    def cursors(self) -> CursorCodec:
        return self.default.cursors
