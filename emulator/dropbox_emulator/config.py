"""Emulator configuration: one dataclass, shared by the CLI, the server and the tests.

Every knob that changes what is served lives here, so one config (plus the clock) fully
determines the served bytes: same config -> same events, same pages, same cursors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from .clock import floor_second, format_ts

# Well-known demo credentials. They are printed by the CLI because they are public demo
# values; any other secret is never printed.
DEMO_APP_KEY = "emu-demo-app-key"
DEMO_APP_SECRET = "emu-demo-app-secret"  # ruff: ignore[hardcoded-password-string] - public demo value, not a credential
DEFAULT_SCOPES = ("events.read", "team_info.read")
# The control API's per-run token: sent in this header; read from this environment variable
# when the emulator or a client is given none (a server then makes a random one).
CONTROL_TOKEN_HEADER = "X-Emulator-Token"  # ruff: ignore[hardcoded-password-string] - a header name
CONTROL_TOKEN_ENV = "DROPBOX_EMULATOR_CONTROL_TOKEN"  # ruff: ignore[hardcoded-password-string] - a variable name

DAY = 86_400

# Names of the teams after the first when a config asks for several without naming them.
TEAM_NAMES = (
    "Contoso Pharma",
    "Fabrikam Design",
    "Tailspin Logistics",
    "Woodgrove Finance",
    "Litware Labs",
    "Adatum Health",
    "Proseware Media",
    "Wingtip Retail",
    "Alpine Ski House",
)


@dataclass(frozen=True)
class TeamSpec:
    """One Dropbox team of an emulator serving several; None takes the default.

    Defaults for the i-th team: seed `config.seed + i`; the first team keeps the config's name
    and domain, the others get names of their own; the rest comes from the config. All teams
    authorise the config's one app.
    """

    team_id: str | None = None
    team_name: str | None = None
    team_domain: str | None = None
    seed: int | None = None
    events_per_day: float | None = None
    num_licensed_users: int | None = None
    num_members: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> TeamSpec:
        """A spec from JSON (a dict of these fields); unknown fields are refused."""
        if isinstance(data, TeamSpec):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a team must be an object of {_TEAM_FIELDS}, not {data!r}")
        extra = set(data) - set(_TEAM_FIELDS)
        if extra:
            raise ValueError(f"unknown team field(s) {sorted(extra)}; known: {_TEAM_FIELDS}")
        return cls(**data)


_TEAM_FIELDS = tuple(f.name for f in dataclasses.fields(TeamSpec))


@dataclass(frozen=True)
class EmulatorConfig:
    """What the emulator serves. Durations are in seconds of *emulator* time."""

    seed: int = 1
    # The one registered app (team-linked, scoped).
    app_key: str = DEMO_APP_KEY
    app_secret: str = DEMO_APP_SECRET
    app_name: str = "Team Activity Log Collector"
    app_scopes: tuple[str, ...] = DEFAULT_SCOPES
    # Allowed redirect URIs; empty means "any http://localhost or http://127.0.0.1 URI".
    redirect_uris: tuple[str, ...] = ()
    # The synthetic team.
    team_id: str | None = None  # None: derived from the seed ("dbtid:AA...")
    team_name: str = "Northwind Research"
    team_domain: str = "northwind-research.example"
    num_licensed_users: int = 50
    num_members: int | None = None  # None: 90% of the licences
    # Timeline of generated events. None: 90 days before the start clock .. 7 days after.
    timeline_start: datetime | None = None
    timeline_end: datetime | None = None
    events_per_day: float = 300.0
    # Paging and wire behaviour.
    page_size: int = 1000
    empty_page_rate: float = 0.02
    duplicate_rate: float = 0.002
    late_rate: float = 0.05  # share of events that show up hours (not minutes) late
    max_delay: int = DAY  # no event becomes visible later than this after its timestamp
    unknown_type_rate: float = 0.002  # events whose type the SDK does not know
    cursor_ttl: int | None = 7 * DAY  # older cursors answer `reset`; None: never
    # Auth.
    access_token_lifetime: int = 4 * 3600
    code_lifetime: int = 600
    # Clock: fixed start (default: wall clock floored to the second); frozen unless advanced,
    # or running at `clock_rate` emulator seconds per wall second.
    clock: datetime | None = None
    clock_rate: float = 0.0
    # Memory bound: generated days are kept in an LRU of about this many events (~1.3 KB
    # each); evicted days are regenerated on demand, to the same bytes.
    cache_events: int = 200_000
    # Several teams served by one emulator (one world, one clock, one app): a count of
    # generated teams or TeamSpecs (dicts accepted). Empty: the one team described above.
    teams: tuple[TeamSpec, ...] | int = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "teams", _team_specs(self.teams))
        if self.page_size < 1 or self.page_size > 1000:
            raise ValueError("page_size must be within 1..1000")
        for name in ("empty_page_rate", "duplicate_rate", "late_rate", "unknown_type_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be within [0, 1)")
        if self.max_delay < 1:
            raise ValueError("max_delay must be at least 1 second")
        if not self.events_per_day >= 0:  # NaN too
            raise ValueError("events_per_day must be >= 0")
        positive = ("num_licensed_users", "access_token_lifetime", "code_lifetime", "cache_events")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.cursor_ttl is not None and self.cursor_ttl < 1:
            raise ValueError("cursor_ttl must be at least 1 second (or None: never)")
        if not self.clock_rate >= 0:
            raise ValueError("clock_rate must be >= 0")
        if not self.app_key or not self.app_secret:
            raise ValueError("app_key and app_secret must not be empty")
        if not self.app_scopes:
            raise ValueError("app_scopes must name at least one scope")
        # Resolve the start clock once, so the config alone determines what is served.
        start = self.clock if self.clock is not None else datetime.now(UTC)
        object.__setattr__(self, "clock", floor_second(start))
        for name in ("timeline_start", "timeline_end"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, floor_second(value))
        _ = self.timeline  # raises now (not at the first request) when reversed
        if self.teams:
            ids = [c.resolved_team_id for c in self.team_configs]
            if len(set(ids)) != len(ids):
                raise ValueError(f"team ids must differ: {ids}")

    # Derived values -----------------------------------------------------------------------

    @property
    def resolved_team_id(self) -> str:
        """The team id: configured, or a stable `dbtid:` id derived from the seed (with
        several teams: the first team's)."""
        if self.teams:
            return self.team_configs[0].resolved_team_id
        if self.team_id:
            return self.team_id
        digest = hashlib.sha256(f"team/{self.seed}".encode()).digest()
        return "dbtid:AA" + _b64ish(digest, 33)

    @property
    def start_epoch(self) -> int:
        """The start clock, epoch seconds."""
        assert self.clock is not None  # resolved in __post_init__
        return int(self.clock.timestamp())

    @property
    def timeline(self) -> tuple[int, int]:
        """[start, end) of generated event timestamps, epoch seconds."""
        assert self.clock is not None
        start = self.timeline_start or (self.clock - timedelta(days=90))
        end = self.timeline_end or (self.clock + timedelta(days=7))
        lo, hi = int(start.timestamp()), int(end.timestamp())
        if hi < lo:
            raise ValueError("timeline_end is before timeline_start")
        return lo, hi

    @cached_property
    def team_configs(self) -> tuple[EmulatorConfig, ...]:
        """One single-team config per team served; the first is the default team."""
        if not self.teams:
            return (self,)
        assert isinstance(self.teams, tuple)  # normalised in __post_init__
        return tuple(self._team_config(i, spec) for i, spec in enumerate(self.teams))

    def _team_config(self, i: int, spec: TeamSpec) -> EmulatorConfig:
        name = spec.team_name or (self.team_name if i == 0 else _team_name(i))
        domain = spec.team_domain or (self.team_domain if i == 0 else f"{_slug(name)}.example")
        values: dict[str, Any] = {
            "teams": (),
            "seed": self.seed + i if spec.seed is None else spec.seed,
            "team_name": name,
            "team_domain": domain,
            "team_id": spec.team_id or (self.team_id if i == 0 else None),
        }
        for key in ("events_per_day", "num_licensed_users", "num_members"):
            value = getattr(spec, key)
            if value is not None:
                values[key] = value
        return dataclasses.replace(self, **values)

    def team_config(self, team: str | int | None = None) -> EmulatorConfig:
        """The config of one team: by team id or index (None: the default, first team)."""
        configs = self.team_configs
        if team is None:
            return configs[0]
        if isinstance(team, int) or (isinstance(team, str) and team.isdigit()):
            i = int(team)
            if 0 <= i < len(configs):
                return configs[i]
        for config in configs:
            if config.resolved_team_id == team:
                return config
        raise KeyError(f"no team {team!r}: the teams are {[c.resolved_team_id for c in configs]}")

    @property
    def members_count(self) -> int:
        if self.num_members is not None:
            return max(3, self.num_members)
        return max(3, int(self.num_licensed_users * 0.9))

    def public_dict(self) -> dict[str, object]:
        """The config as JSON-able data, without the app secret."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            if f.name in ("app_secret", "teams"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = format_ts(int(value.timestamp()))
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["team_id"] = self.resolved_team_id
        lo, hi = self.timeline
        out["timeline_start"], out["timeline_end"] = format_ts(lo), format_ts(hi)
        out["app_secret_is_demo_default"] = self.app_secret == DEMO_APP_SECRET
        out["teams"] = [
            {
                "team_id": c.resolved_team_id,
                "team_name": c.team_name,
                "team_domain": c.team_domain,
                "seed": c.seed,
                "events_per_day": c.events_per_day,
                "num_licensed_users": c.num_licensed_users,
            }
            for c in self.team_configs
        ]
        return out


def _team_specs(teams: Any) -> tuple[TeamSpec, ...]:
    """`teams` as a tuple of TeamSpec: a count, or specs / dicts."""
    if isinstance(teams, bool):
        raise ValueError("teams must be a count or a list of teams")
    if isinstance(teams, int):
        if teams < 0:
            raise ValueError("teams must be >= 0")
        return (TeamSpec(),) * teams if teams > 1 else ()
    return tuple(TeamSpec.from_json(t) for t in teams)


def _team_name(i: int) -> str:
    name = TEAM_NAMES[(i - 1) % len(TEAM_NAMES)]
    rounds = (i - 1) // len(TEAM_NAMES)
    return f"{name} {rounds + 1}" if rounds else name


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64ish(digest: bytes, n: int) -> str:
    """n characters of Dropbox-id alphabet from a digest (repeated if needed)."""
    out = []
    data = digest
    while len(out) < n:
        out.extend(_ALPHABET[b & 63] for b in data)
        data = hashlib.sha256(data).digest()
    return "".join(out[:n])
