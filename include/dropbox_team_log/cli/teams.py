"""`dropbox-team-log teams [list|add|pause|resume|remove]`: the teams the scheduled DAG collects.

The registry is the Airflow Variable `dropbox_team_log_teams` (team_registry.py). This command
reads it as the DAGs do (any secrets backend) and edits it in the metadata DB; when another
backend defines it (an AIRFLOW_VAR_* environment variable, Vault, ...) that one wins, so the
command refuses to edit and says where to. `connect` registers the team it connects through
`register` here. Every string shown comes from a connection or the Variable and goes through
`display.visible` (a team name is chosen by whoever runs that team).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from dropbox_team_log import team_registry
from dropbox_team_log.cli.connect_options import ConnectError
from dropbox_team_log.cli.connection_store import (
    connection_extra,
    load_variable,
    quiet_libraries,
    save_variable,
)
from dropbox_team_log.display import visible
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.settings import (
    BACKFILL_DAG_ID,
    BACKFILL_DAYS,
    CONN_ID_VARIABLE,
    DEFAULT_CONN_ID,
    INCREMENTAL_DAG_ID,
    MAX_BACKFILL_DAYS,
    TEAMS_VARIABLE,
)
from dropbox_team_log.team_registry import Team
from dropbox_team_log.timeutil import to_wire

EXIT_OK, EXIT_FAILURE = 0, 1
_DESCRIPTION = "Dropbox teams the scheduled DAG collects (kept by dropbox-team-log teams/connect)"


@dataclass(frozen=True)
class Registry:
    """The registry as read, and whether the metadata DB is where it lives."""

    teams: list[Team]
    editable: bool
    default_conn_id: str


def read_registry() -> Registry:
    """The teams as the DAGs see them; RegistryError when the Variable is malformed."""
    seen, stored = load_variable(TEAMS_VARIABLE)
    default = load_variable(CONN_ID_VARIABLE)[0] or DEFAULT_CONN_ID
    return Registry(team_registry.parse(seen, default), seen == stored, default)


def write_registry(registry: Registry, teams: list[Team]) -> None:
    if not registry.editable:
        raise ConnectError(
            f"Variable {TEAMS_VARIABLE} is set outside the metadata DB "
            f"(AIRFLOW_VAR_{TEAMS_VARIABLE.upper()} or a secrets backend), which wins over it: "
            "edit it there"
        )
    save_variable(TEAMS_VARIABLE, team_registry.dump(teams), _DESCRIPTION)


def register(
    conn_id: str, *, backfill: bool = True, backfill_days: int | None = None
) -> tuple[bool, list[Team]]:
    """Add `conn_id` to the registry (idempotent; a registered team's copy of `connected_at` is
    refreshed from its connection). Returns (added, the teams now registered).

    On a deployment without a registry, the default connection was the one team collected: when
    it exists it is registered first (its backfill marked done), so adding a second team never
    silently stops the first.
    """
    registry = read_registry()
    teams = registry.teams
    connected_at = _connected_at(conn_id)
    existing = team_registry.find(team_registry.explicit(teams), conn_id)
    if existing is not None:
        if connected_at and connected_at != existing.connected_at and registry.editable:
            teams = team_registry.add(teams, conn_id, now="", connected_at=connected_at)
            write_registry(registry, teams)
        return False, team_registry.explicit(teams)
    now = to_wire(int(time.time()))
    implicit = [t for t in teams if t.implicit]
    if implicit and implicit[0].conn_id != conn_id and connection_extra(implicit[0].conn_id):
        first = implicit[0].conn_id
        teams = team_registry.add(
            [], first, now=now, backfill=False, connected_at=_connected_at(first)
        )
    teams = team_registry.add(
        teams,
        conn_id,
        now=now,
        backfill=backfill,
        backfill_days=backfill_days,
        connected_at=connected_at,
    )
    write_registry(registry, teams)
    return True, teams


def _connected_at(conn_id: str) -> str | None:
    """The connection's `extra.connected_at` as written (None without connection or value)."""
    value = (connection_extra(conn_id) or {}).get("connected_at")
    return value if isinstance(value, str) and value else None


def add_teams_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "teams",
        help="list, add, pause, resume or remove the teams the scheduled DAG collects",
        description=(
            f"The teams registry (Airflow Variable {TEAMS_VARIABLE}): the connection ids the "
            f"scheduled DAG {INCREMENTAL_DAG_ID} syncs. Unset, it is the one default connection. "
            "`connect` registers the team it connects."
        ),
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="the registered teams, their connection and backfill (default)")
    add = sub.add_parser("add", help="register a connection (its first backfill starts itself)")
    add.add_argument("conn_id")
    add.add_argument(
        "--no-backfill",
        action="store_true",
        help="never start a backfill for it (its past days are loaded already, or not wanted)",
    )
    add.add_argument(
        "--backfill-days",
        type=int,
        metavar="N",
        help=f"days its first backfill loads (1-{MAX_BACKFILL_DAYS}; default {BACKFILL_DAYS})",
    )
    for action, text in (
        ("pause", "stop syncing a team (its data and connection stay)"),
        ("resume", "sync a paused team again (from where it stopped, up to the catch-up days)"),
        ("remove", "unregister a team (its data and connection stay)"),
    ):
        sub.add_parser(action, help=text).add_argument("conn_id")
    p.set_defaults(handler=teams_command, action="list")


def teams_command(args: argparse.Namespace) -> int:
    quiet_libraries()
    try:
        if args.action == "list":
            print(list_text(read_registry()))
        elif args.action == "add":
            added, _ = register(
                args.conn_id, backfill=not args.no_backfill, backfill_days=args.backfill_days
            )
            print(_added_text(args.conn_id, added, backfill=not args.no_backfill))
        else:
            print(edit_team(args.action, args.conn_id))
    except DropboxTeamLogError as exc:
        print(f"dropbox-team-log teams: failed: {visible(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def edit_team(action: str, conn_id: str) -> str:
    """Pause, resume or remove a registered team; what changed, as one message."""
    registry = read_registry()
    if action == "remove":
        teams = team_registry.remove(registry.teams, conn_id)
        write_registry(registry, teams)
        text = f"Removed team '{conn_id}': no longer synced; its data and connection are kept."
        if not teams:
            text += (
                f"\nNo team is registered now: the DAGs read the default connection "
                f"'{registry.default_conn_id}'."
            )
        return visible(text)
    paused = action == "pause"
    write_registry(registry, team_registry.set_paused(registry.teams, conn_id, paused))
    if paused:
        return visible(f"Paused team '{conn_id}': the scheduled DAG skips it from its next run.")
    return visible(
        f"Resumed team '{conn_id}': the next scheduled run syncs it (gaps up to the catch-up "
        f"days; an older gap needs a backfill: airflow dags trigger {BACKFILL_DAG_ID} "
        f'--conf \'{{"conn_id": "{conn_id}"}}\' with start/end).'
    )


def _added_text(conn_id: str, added: bool, *, backfill: bool) -> str:
    if not added:
        return visible(f"Team '{conn_id}' is registered already.")
    lines = [f"Registered team '{conn_id}': the scheduled DAG {INCREMENTAL_DAG_ID} syncs it."]
    if connection_extra(conn_id) is None:
        lines.append(
            f"WARNING: no connection '{conn_id}' exists yet: its tasks fail until you run "
            f"`dropbox-team-log connect --conn-id {conn_id}`."
        )
    if backfill:
        lines.append(backfill_note(conn_id))
    return visible("\n".join(lines))


def backfill_note(conn_id: str) -> str:
    """What happens to a newly registered team's past days, and how to start them now."""
    return (
        f"Its first backfill starts on the next scheduled run of {INCREMENTAL_DAG_ID} "
        f"(within one schedule interval); to start it now:\n"
        f'  airflow dags trigger {BACKFILL_DAG_ID} --conf \'{{"conn_id": "{conn_id}"}}\''
    )


def list_text(registry: Registry) -> str:
    """The registry as a table: connection, paused, connected_at, team name, backfill."""
    rows = [("CONN_ID", "PAUSED", "CONNECTED_AT", "TEAM", "BACKFILL")]
    for team in registry.teams:
        extra = connection_extra(team.conn_id)
        if extra is None:
            connected_at, name = "-", "(no such connection)"
        else:
            connected_at = extra.get("connected_at") or "-"
            name = extra.get("team_name") or "-"
        backfill = "-" if team.implicit else team.backfill_triggered_at or "pending"
        rows.append((team.conn_id, "yes" if team.paused else "no", connected_at, name, backfill))
    cells = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    if registry.teams and registry.teams[0].implicit:
        lines.append(
            f"(Variable {TEAMS_VARIABLE} is not set: the DAGs collect the default connection.)"
        )
    elif not registry.editable:
        lines.append(f"(Variable {TEAMS_VARIABLE} is set outside the metadata DB: edit it there.)")
    return "\n".join(lines)
