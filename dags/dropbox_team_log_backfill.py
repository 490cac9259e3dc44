"""Backfill: the team's activity log for the days before the connection (default 60).

Trigger it by hand once the team is connected. Each UTC day is a mapped task in the
`dropbox_api` pool; re-running a finished day changes nothing, a failed day re-runs alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from dropbox_team_log import dag_tasks

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
}


@dag(
    dag_id="dropbox_team_log_backfill",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["dropbox", "audit-log", "backfill"],
    doc_md=__doc__,
    params={
        "days": Param(
            60,
            type="integer",
            minimum=1,
            maximum=365,
            description="Days before the connection's connected_at to load",
        ),
        "start": Param(
            None,
            type=["null", "string"],
            description="Explicit range start (UTC, YYYY-MM-DD[THH:MM:SSZ]); with end",
        ),
        "end": Param(
            None, type=["null", "string"], description="Explicit range end, exclusive; with start"
        ),
        "conn_id": Param(
            None,
            type=["null", "string"],
            description="Connection id (default: Variable dropbox_team_log_conn_id, "
            "else dropbox_team_default)",
        ),
    },
)
def dropbox_team_log_backfill():
    @task
    def plan_days(**context) -> list[dict]:
        return dag_tasks.plan("backfill", context["params"], context)

    @task(pool=dag_tasks.API_POOL, outlets=[dag_tasks.EVENTS_ASSET], multiple_outputs=False)
    def sync_day(job: dict) -> dict:
        return dag_tasks.sync(job)

    sync_day.expand(job=plan_days())


dropbox_team_log_backfill()
