"""What the teams page shows about each registered team, read from Airflow's metadata DB.

The registry (Variable `dropbox_team_log_teams`) names the teams; the connection's extra says
which Dropbox team it is and since when it is connected; the DAG runs and task instances say
how far its first backfill got, when it last synced and what last failed. Sync tasks are
labelled `<conn_id> <day>` (dag_spec.job_label), which is how a task is matched to its team.
The page's Test button leaves its answer in the registry entry (`last_test`), so it is shown to
every admin and survives a restart. The pipeline's DAGs are listed with whether each is paused (a
paused DAG runs nothing). Strings are returned raw: the page escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dropbox_team_log import team_registry
from dropbox_team_log.cli.connection_store import connection_extra, db_session
from dropbox_team_log.cli.teams import Registry, read_registry
from dropbox_team_log.settings import BACKFILL_DAG_ID, INCREMENTAL_DAG_ID, PIPELINE_DAG_IDS
from dropbox_team_log.team_registry import Team

SYNC_TASK = "sync_day"
#: The registry key the Test button writes: {"at", "ok", "message"}.
LAST_TEST = "last_test"


@dataclass(frozen=True)
class Backfill:
    """A team's first backfill run: its state and how many of its days are done."""

    run_id: str
    state: str
    done: int
    total: int
    failed: int


@dataclass(frozen=True)
class TaskMark:
    """One sync task of the team: which day, in which DAG run, when it ended."""

    label: str
    dag_id: str
    run_id: str
    ended: datetime | None


@dataclass(frozen=True)
class TeamStatus:
    team: Team
    exists: bool
    team_name: str | None
    connected_at: str | None
    backfill: Backfill | None
    last_success: TaskMark | None
    last_failure: TaskMark | None
    last_test: dict[str, Any] | None

    @property
    def conn_id(self) -> str:
        return self.team.conn_id


@dataclass(frozen=True)
class DagState:
    """One of the pipeline's DAGs: paused or not; None when no dag-processor has parsed it."""

    dag_id: str
    paused: bool | None


def pipeline_dags() -> list[DagState]:
    """The pipeline's DAGs, in PIPELINE_DAG_IDS order."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    with db_session() as session:
        rows = session.execute(
            select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(PIPELINE_DAG_IDS))
        )
        paused = {dag_id: bool(is_paused) for dag_id, is_paused in rows}
    return [DagState(dag_id, paused.get(dag_id)) for dag_id in PIPELINE_DAG_IDS]


def team_statuses() -> tuple[Registry, list[TeamStatus]]:
    """The registry as read, and one status per team (the implicit default included)."""
    registry = read_registry()
    return registry, [_status(team) for team in registry.teams]


def _status(team: Team) -> TeamStatus:
    extra = connection_extra(team.conn_id)
    last_test = team.other.get(LAST_TEST)
    return TeamStatus(
        team=team,
        exists=extra is not None,
        team_name=_text((extra or {}).get("team_name")),
        connected_at=_text((extra or {}).get("connected_at")),
        backfill=backfill_of(team),
        last_success=_last_task(team.conn_id, "success"),
        last_failure=_last_task(team.conn_id, "failed"),
        last_test=last_test if isinstance(last_test, dict) else None,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def backfill_of(team: Team) -> Backfill | None:
    """The team's automatic backfill run (its registration's run id), else the latest backfill
    run whose conf names the team; None when there is none yet."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    with db_session() as session:
        run = session.scalar(
            select(DagRun).where(
                DagRun.dag_id == BACKFILL_DAG_ID,
                DagRun.run_id == team_registry.backfill_run_id(team),
            )
        )
        if run is None:
            recent = session.scalars(
                select(DagRun)
                .where(DagRun.dag_id == BACKFILL_DAG_ID)
                .order_by(DagRun.id.desc())
                .limit(50)
            )
            run = next((r for r in recent if (r.conf or {}).get("conn_id") == team.conn_id), None)
        if run is None:
            return None
        states = _sync_states(session, run.run_id)
        return Backfill(
            run_id=run.run_id,
            state=str(run.state),
            done=states.count("success"),
            total=len(states),
            failed=sum(s in ("failed", "upstream_failed") for s in states),
        )


def _sync_states(session: Any, run_id: str) -> list[str]:
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    rows = session.scalars(
        select(TaskInstance.state).where(
            TaskInstance.dag_id == BACKFILL_DAG_ID,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == SYNC_TASK,
            TaskInstance.map_index >= 0,
        )
    )
    return [str(state) for state in rows]


def _last_task(conn_id: str, state: str) -> TaskMark | None:
    """The team's latest sync task that ended in `state`, in either DAG."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    label = TaskInstance._rendered_map_index
    with db_session() as session:
        row = session.execute(
            select(label, TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.end_date)
            .where(
                TaskInstance.dag_id.in_((INCREMENTAL_DAG_ID, BACKFILL_DAG_ID)),
                TaskInstance.task_id == SYNC_TASK,
                TaskInstance.state == state,
                label.startswith(f"{conn_id} ", autoescape=True),
            )
            .order_by(TaskInstance.end_date.desc())
            .limit(1)
        ).first()
    return None if row is None else TaskMark(row[0], row[1], row[2], row[3])
