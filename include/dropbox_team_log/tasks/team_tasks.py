"""The scheduled DAG's part in adding a team: start the first backfill of each new team.

A team registered by `connect` or `teams add` has no `backfill_triggered_at` yet. Each
incremental run lists those teams (`plan_backfills`), triggers the backfill DAG for each with
conf {"conn_id": ...} under a run id fixed by the registration (team_registry.backfill_run_id:
a second trigger of it is skipped, never a second backfill), then records the time in the
registry (`record_backfills`), so later runs leave it alone. A team of an implicit registry
(no Variable: a deployment from before it), a paused one, or one added with --no-backfill is
never backfilled by itself.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from dropbox_team_log import deployment, team_registry
from dropbox_team_log.team_registry import RegistryError
from dropbox_team_log.timeutil import to_wire

log = logging.getLogger(__name__)


def plan_backfills(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The backfill runs to start: TriggerDagRunOperator kwargs, one per new team."""
    if params.get("conn_id"):  # a run for one named team manages no registry
        return []
    try:
        teams = deployment.registered_teams()
    except RegistryError as exc:
        raise AirflowFailException(str(exc)) from None
    starts = [
        {"trigger_run_id": team_registry.backfill_run_id(t), "conf": backfill_conf(t)}
        for t in teams
        if t.needs_backfill
    ]
    for start in starts:
        log.info("starting the first backfill of team '%s'", start["conf"]["conn_id"])
    return starts


def backfill_conf(team: team_registry.Team) -> dict[str, Any]:
    """The backfill run's conf: the team, and its days when the registry entry names them."""
    conf: dict[str, Any] = {"conn_id": team.conn_id}
    if team.backfill_days is not None:
        conf["days"] = team.backfill_days
    return conf


def record_backfills(starts: list[dict[str, Any]], as_of: int) -> list[str]:
    """Note in the registry that these teams' backfills were started (re-read just before the
    write, so an edit made meanwhile is kept). Returns the connection ids recorded."""
    conn_ids = {start["conf"]["conn_id"] for start in starts}
    if not conn_ids:
        return []
    teams = deployment.registered_teams()
    deployment.save_teams(team_registry.mark_backfill_triggered(teams, conn_ids, to_wire(as_of)))
    recorded = sorted(c for c in conn_ids if team_registry.find(teams, c) is not None)
    log.info("backfill started for: %s", ", ".join(recorded))
    return recorded
