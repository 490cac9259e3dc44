"""What the teams page's buttons do, on the api-server: the same steps as the CLI's.

Connecting reuses `connect`'s OAuth exchange and its end (`save_grant`: test, save, pool,
register); the page then starts the team's first backfill at once, under the run id the
scheduled DAG would use for it (team_registry.backfill_run_id), and notes that in the registry,
so the scheduled DAG does not start a second one. Test is the hook's own test on the saved
connection (`verify_saved`, so a failure names the real connection); pause / resume / remove
are `teams`'. Unpause sets a pipeline DAG's `is_paused` in the metadata DB as the REST API's
PATCH does, with an audit-log entry like the API's. Every message returned is scrubbed of the
secrets this process has seen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass

from dropbox_team_log import team_registry
from dropbox_team_log.cli.connect import ConnectResult, existing_connection, save_grant
from dropbox_team_log.cli.connect_options import ConnectOptions
from dropbox_team_log.cli.connection_store import db_session, verify_saved
from dropbox_team_log.cli.oauth_flow import (
    finish_flow,
    mask_secrets,
    resume_web_flow,
    start_web_flow,
)
from dropbox_team_log.cli.teams import edit_team, read_registry, write_registry
from dropbox_team_log.client.redaction import scrub
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.settings import BACKFILL_DAG_ID, INCREMENTAL_DAG_ID, PIPELINE_DAG_IDS
from dropbox_team_log.timeutil import to_wire
from dropbox_team_log.web.guard import PendingFlow
from dropbox_team_log.web.status import LAST_TEST

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connected:
    """A finished connect: what `connect` reports, and how the backfill was started."""

    result: ConnectResult
    backfill: str


def options_of(flow: PendingFlow) -> ConnectOptions:
    return ConnectOptions(
        app_key=flow.app_key,
        app_secret=flow.app_secret,
        conn_id=flow.conn_id,
        base_url=flow.base_url,
    )


def authorization_link(
    opts: ConnectOptions, *, state: str, redirect_uri: str | None
) -> tuple[str, str]:
    """The link for the team admin and the PKCE verifier the callback will need."""
    mask_secrets(opts.app_secret)
    existing_connection(opts)  # another type under that id: say so before the admin clicks
    flow, url = start_web_flow(opts, state=state, redirect_uri=redirect_uri)
    return url, flow.code_verifier


def finish_connect(flow: PendingFlow, code: str, user_name: str) -> Connected:
    """Code -> tokens -> tested, saved, registered connection -> its backfill started.
    Raises DropboxTeamLogError (ConnectError) with the reason; nothing is saved then."""
    opts = options_of(flow)
    mask_secrets(opts.app_secret, flow.code_verifier)
    existing = existing_connection(opts)
    oauth = resume_web_flow(opts, flow.code_verifier)
    tokens = finish_flow(oauth, code, opts, redirect_uri=flow.redirect_uri)
    result = save_grant(opts, tokens.refresh_token, existing)
    return Connected(result, start_backfill(opts.conn_id, user_name))


def start_backfill(conn_id: str, user_name: str) -> str:
    """Trigger the team's first backfill now (if the registry says it needs one) and record it;
    what happened, as a sentence."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    registry = read_registry()
    team = team_registry.find(team_registry.explicit(registry.teams), conn_id)
    if team is None or not team.needs_backfill:
        return "No backfill started: the team's backfill was started before (or is not wanted)."
    run_id = team_registry.backfill_run_id(team)
    try:
        trigger_dag(
            BACKFILL_DAG_ID,
            run_id=run_id,
            conf={"conn_id": conn_id},
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=user_name,
        )
    except DagRunAlreadyExists:
        pass
    except DagNotFound:
        return (
            f"The backfill starts with the next scheduled run of {INCREMENTAL_DAG_ID} "
            f"({BACKFILL_DAG_ID} is not parsed yet)."
        )
    log.info("teams page: started backfill run %s of team %s", run_id, conn_id)
    now = to_wire(int(time.time()))
    registry = read_registry()  # re-read: keep an edit made meanwhile
    # Not recorded (the Variable lives elsewhere): the scheduled DAG's trigger of the same run
    # id is skipped, so no second backfill either way.
    with contextlib.suppress(DropboxTeamLogError):
        write_registry(
            registry, team_registry.mark_backfill_triggered(registry.teams, {conn_id}, now)
        )
    return f"Started its backfill: run {run_id} of {BACKFILL_DAG_ID}."


def test_team(conn_id: str) -> tuple[bool, str]:
    """The hook's test on the saved connection; its answer is kept in the registry entry."""
    ok, message = verify_saved(conn_id)
    message = scrub(message)
    registry = read_registry()
    note = {"at": to_wire(int(time.time())), "ok": ok, "message": message}
    try:
        write_registry(registry, team_registry.set_note(registry.teams, conn_id, LAST_TEST, note))
    except DropboxTeamLogError as exc:  # not registered, or the Variable lives elsewhere
        log.info("teams page: test of %s not recorded: %s", conn_id, exc)
    return ok, message


def edit(action: str, conn_id: str) -> str:
    """Pause, resume or remove (the registry entry; the connection and data stay)."""
    return scrub(edit_team(action, conn_id))


def unpause(dag_id: str, user_name: str) -> str:
    """Unpause one of the pipeline's DAGs (the caller checked the user may edit it); what
    happened, as a sentence. ValueError for a DAG outside the pipeline."""
    from airflow.models.dag import DagModel
    from airflow.models.log import Log

    if dag_id not in PIPELINE_DAG_IDS:
        raise ValueError(f"{dag_id!r} is not one of this pipeline's DAGs")
    with db_session() as session:
        dag = session.get(DagModel, dag_id)
        if dag is None:
            return f"{dag_id} is not parsed yet: nothing to unpause (is a dag-processor running?)"
        if not dag.is_paused:
            return f"{dag_id} was not paused."
        dag.is_paused = False
        extra = {"is_paused": False, "via": "dropbox-teams page"}
        session.add(Log(event="unpause", owner=user_name, dag_id=dag_id, extra=json.dumps(extra)))
    log.info("teams page: %s unpaused %s", user_name, dag_id)
    return f"Unpaused {dag_id}: the scheduler runs it from now on."
