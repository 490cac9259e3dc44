"""web/status.py and actions.start_backfill over the real metadata DB: the page starts a team's
first backfill once, under the registration's run id, and reads its progress, the last
successful sync and the last failure back from the task instances of that run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import insert, select

from dropbox_team_log import team_registry
from dropbox_team_log.cli.connection_store import db_session
from dropbox_team_log.cli.teams import read_registry, register
from dropbox_team_log.settings import BACKFILL_DAG_ID
from dropbox_team_log.web import actions, status


def expand_sync_tasks(run_id: str, days: list[tuple[str, str, datetime]]) -> None:
    """What the scheduler does when the plan task returns: one mapped `sync_day` task instance
    per day, labelled '<conn_id> <day>'; here with the states and end times given."""
    from airflow.models.taskinstance import TaskInstance

    table = TaskInstance.__table__
    with db_session() as session:
        template = (
            session.execute(
                select(table).where(
                    table.c.dag_id == BACKFILL_DAG_ID,
                    table.c.run_id == run_id,
                    table.c.task_id == status.SYNC_TASK,
                )
            )
            .mappings()
            .one()
        )
        for index, (label, state, ended) in enumerate(days):
            row = dict(template)
            row.update(
                id=uuid.uuid4(),
                map_index=index,
                state=state,
                end_date=ended,
                rendered_map_index=label,
            )
            session.execute(insert(table).values(**row))


def test_the_first_backfill_starts_once_and_its_progress_is_read_back(api_server, clean):
    # api_server: its start serialized the DAGs into the session's DB, which the page needs.
    register("status_team")
    assert actions.start_backfill("status_team", "tester").startswith("Started its backfill")
    team = team_registry.find(read_registry().teams, "status_team")
    assert team.backfill_triggered_at and not team.needs_backfill
    again = actions.start_backfill("status_team", "tester")
    assert again.startswith("No backfill started")

    run_id = team_registry.backfill_run_id(team)
    assert status.backfill_of(team) == status.Backfill(run_id, "queued", 0, 0, 0)
    early, late = datetime(2026, 12, 1, 8, tzinfo=UTC), datetime(2026, 12, 1, 9, tzinfo=UTC)
    expand_sync_tasks(
        run_id,
        [
            ("status_team 2026-11-01", "success", early),
            ("status_team 2026-11-02", "success", late),
            ("status_team 2026-11-03", "failed", early),
            ("status_team 2026-11-04", "scheduled", None),
        ],
    )
    _, statuses = status.team_statuses()
    [team_status] = [s for s in statuses if s.conn_id == "status_team"]
    assert team_status.backfill == status.Backfill(run_id, "queued", 2, 4, 1)
    assert team_status.last_success.label == "status_team 2026-11-02"
    assert team_status.last_success.ended == late
    assert team_status.last_failure.label == "status_team 2026-11-03"
    assert not team_status.exists  # registered, but no connection saved: the page says so
    # Another team whose id starts alike is not this one's.
    assert status._last_task("status", "success") is None
