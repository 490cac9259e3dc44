"""The teams this deployment collects: the Airflow Variable `dropbox_team_log_teams`, parsed.

A registry is needed because secrets backends (environment variables, Vault, ...) cannot list
connections: the Variable names them. Its value is a JSON list whose items are either a
connection id (`"dropbox_team_acme"`) or an object `{"conn_id": "...", "paused": false, ...}`;
both forms may be mixed. Keys of an object other than those below are kept as they are.

- `paused`: a paused team is not synced by the scheduled DAG (its data and connection stay).
- `added_at`: when `connect` / `teams add` registered it (wire format, UTC).
- `backfill_triggered_at`: when the scheduled DAG started its first backfill; absent: the next
  scheduled run starts it. `teams add --no-backfill` sets it to "never".
- `backfill_days`: the days that first backfill loads (default 60, at most 365).
- `connected_at`: the connection's `extra.connected_at`, copied by `connect` / `teams add`, so
  the plan of 50 teams reads no connection; each day task checks it against the connection it
  loads anyway, and fails saying how to refresh it when they differ.

Absent or empty, the registry is the single default connection (the Variable
`dropbox_team_log_conn_id`, else `dropbox_team_default`), marked implicit: deployments from
before the registry keep working unchanged, and no backfill starts by itself for them.

Only parsing, validation and edits here (stdlib): reading and writing the Variable happens in
`deployment` (tasks) and `cli/connection_store` (the CLI).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from dropbox_team_log import settings
from dropbox_team_log.errors import ConnectionConfigError

#: Connection ids the registry accepts: they name a folder and a run id, so no `/`, no spaces,
#: no leading dot. Airflow's own rule is broader; a connection outside this one needs a new id.
CONN_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
#: The value `teams add --no-backfill` records: no backfill is ever started for the team.
NO_BACKFILL = "never"
_KNOWN_KEYS = (
    "conn_id",
    "paused",
    "added_at",
    "backfill_triggered_at",
    "backfill_days",
    "connected_at",
)


class RegistryError(ConnectionConfigError):
    """The teams Variable cannot be read as a registry: says what to fix."""


@dataclass(frozen=True)
class Team:
    """One registered team: its connection id and the registry's notes about it."""

    conn_id: str
    paused: bool = False
    added_at: str | None = None
    backfill_triggered_at: str | None = None
    backfill_days: int | None = None
    connected_at: str | None = None
    #: Other keys of the entry, kept as they were written.
    other: dict[str, Any] = field(default_factory=dict)
    #: True for the default connection standing in for an absent or empty registry.
    implicit: bool = False

    @property
    def needs_backfill(self) -> bool:
        """Whether the scheduled DAG should start this team's first backfill."""
        return not (self.implicit or self.paused or self.backfill_triggered_at)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"conn_id": self.conn_id, "paused": self.paused}
        if self.added_at:
            entry["added_at"] = self.added_at
        if self.backfill_triggered_at:
            entry["backfill_triggered_at"] = self.backfill_triggered_at
        if self.backfill_days is not None:
            entry["backfill_days"] = self.backfill_days
        if self.connected_at:
            entry["connected_at"] = self.connected_at
        return {**entry, **self.other}


def check_conn_id(conn_id: Any, where: str = "connection id") -> str:
    """`conn_id` if the registry can hold it, else a RegistryError saying what is allowed."""
    if not isinstance(conn_id, str) or not CONN_ID_RE.match(conn_id):
        raise RegistryError(
            f"{where} {conn_id!r} is not usable: 1-200 characters of letters, digits, '_', '.' "
            "and '-', not starting with '.' or '-'"
        )
    return conn_id


def parse(raw: str | None, default_conn_id: str) -> list[Team]:
    """The registry from the Variable's raw value; the implicit default team when it is absent
    or empty. Raises RegistryError naming the Variable and the bad item."""
    if raw is None or not raw.strip():
        return [Team(conn_id=default_conn_id, implicit=True)]
    where = f"Variable {settings.TEAMS_VARIABLE}"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise RegistryError(
            f"{where} is not JSON ({exc.msg} at character {exc.pos}): set it to a list of "
            'connection ids, e.g. ["dropbox_team_default", "dropbox_team_acme"]'
        ) from None
    if not isinstance(value, list):
        raise RegistryError(
            f"{where} must be a JSON list of connection ids or objects, not a "
            f"{type(value).__name__}"
        )
    if not value:
        return [Team(conn_id=default_conn_id, implicit=True)]
    teams = [_team(item, f"{where}, item {n}") for n, item in enumerate(value, 1)]
    seen: set[str] = set()
    for team in teams:
        if team.conn_id in seen:
            raise RegistryError(f"{where} lists connection '{team.conn_id}' twice: keep one")
        seen.add(team.conn_id)
    return teams


def _team(item: Any, where: str) -> Team:
    if isinstance(item, str):
        return Team(conn_id=check_conn_id(item, f"{where}:"))
    if not isinstance(item, dict):
        raise RegistryError(
            f"{where} is a {type(item).__name__}: give a connection id or an object "
            '{"conn_id": "...", "paused": false}'
        )
    if "conn_id" not in item:
        raise RegistryError(f'{where} has no "conn_id"')
    paused = item.get("paused", False)
    if not isinstance(paused, bool):
        raise RegistryError(f'{where}: "paused" must be true or false, not {paused!r}')
    notes = {}
    for key in ("added_at", "backfill_triggered_at", "connected_at"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise RegistryError(f'{where}: "{key}" must be a string, not {value!r}')
        notes[key] = value or None
    days = item.get("backfill_days")
    if days is not None and (
        isinstance(days, bool)
        or not isinstance(days, int)
        or not 1 <= days <= settings.MAX_BACKFILL_DAYS
    ):
        raise RegistryError(
            f'{where}: "backfill_days" must be a whole number from 1 to '
            f"{settings.MAX_BACKFILL_DAYS}, not {days!r}"
        )
    return Team(
        conn_id=check_conn_id(item["conn_id"], f"{where}: conn_id"),
        paused=paused,
        backfill_days=days,
        other={k: v for k, v in item.items() if k not in _KNOWN_KEYS},
        **notes,
    )


def dump(teams: list[Team]) -> str:
    """The Variable's value for `teams` (the implicit default is never written)."""
    return json.dumps([t.to_json() for t in teams if not t.implicit], indent=1)


def explicit(teams: list[Team]) -> list[Team]:
    """The teams actually written in the Variable (none when it stands for the default)."""
    return [t for t in teams if not t.implicit]


def find(teams: list[Team], conn_id: str) -> Team | None:
    return next((t for t in teams if t.conn_id == conn_id), None)


def add(
    teams: list[Team],
    conn_id: str,
    *,
    now: str,
    backfill: bool = True,
    backfill_days: int | None = None,
    connected_at: str | None = None,
) -> list[Team]:
    """`teams` with `conn_id` registered (unpaused); if it is there already, unchanged but for
    the copy of its `connected_at`, refreshed when one is given."""
    check_conn_id(conn_id)
    current = explicit(teams)
    if find(current, conn_id) is not None:
        return [
            replace(t, connected_at=connected_at or t.connected_at) if t.conn_id == conn_id else t
            for t in current
        ]
    team = Team(
        conn_id=conn_id,
        added_at=now,
        backfill_triggered_at=None if backfill else NO_BACKFILL,
        backfill_days=backfill_days,
        connected_at=connected_at,
    )
    _team(team.to_json(), "the new entry")  # the same checks as a read
    return [*current, team]


def set_paused(teams: list[Team], conn_id: str, paused: bool) -> list[Team]:
    """`teams` with the team paused or resumed; RegistryError if it is not registered."""
    _require(teams, conn_id)
    return [replace(t, paused=paused) if t.conn_id == conn_id else t for t in explicit(teams)]


def remove(teams: list[Team], conn_id: str) -> list[Team]:
    """`teams` without `conn_id`; RegistryError if it is not registered."""
    _require(teams, conn_id)
    return [t for t in explicit(teams) if t.conn_id != conn_id]


def mark_backfill_triggered(teams: list[Team], conn_ids: set[str], now: str) -> list[Team]:
    """`teams` with `backfill_triggered_at` set for `conn_ids` (those still registered)."""
    return [
        replace(t, backfill_triggered_at=now) if t.conn_id in conn_ids else t
        for t in explicit(teams)
    ]


def set_note(teams: list[Team], conn_id: str, key: str, value: Any) -> list[Team]:
    """`teams` with `key` of the team's other keys set to `value` (a note a tool keeps with the
    team, e.g. the teams page's last test); RegistryError if it is not registered."""
    _require(teams, conn_id)
    if key in _KNOWN_KEYS:
        raise ValueError(f"{key} is a registry field, not a note")
    return [
        replace(t, other={**t.other, key: value}) if t.conn_id == conn_id else t
        for t in explicit(teams)
    ]


def _require(teams: list[Team], conn_id: str) -> None:
    if find(explicit(teams), conn_id) is None:
        registered = ", ".join(t.conn_id for t in explicit(teams)) or "none"
        raise RegistryError(
            f"connection '{conn_id}' is not registered (registered: {registered}); add it with "
            f"`dropbox-team-log teams add {conn_id}`"
        )


def active(teams: list[Team]) -> list[Team]:
    """The teams the scheduled DAG syncs: every unpaused one."""
    return [t for t in teams if not t.paused]


def backfill_run_id(team: Team) -> str:
    """The run id of a team's automatic backfill: one per registration, so starting it twice
    (a retry, a lost record) finds the first run instead of starting a second."""
    stamp = re.sub(r"[^0-9]", "", team.added_at or "")
    return f"team_backfill__{team.conn_id}" + (f"__{stamp}" if stamp else "")
