"""Backfill: the team's activity log for the days before the connection (default 60).

One team per run (the `conn_id` param, else the default connection). The incremental DAG starts
it for each newly registered team; trigger it by hand for other ranges. Each UTC day is a mapped
task in the `dropbox_api` pool, at most two at once (the rest of the pool keeps every team
current); re-running a finished day changes nothing, a failed day re-runs alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag

from dropbox_team_log import settings
from dropbox_team_log.tasks import dag_spec


@dag(
    dag_id=settings.BACKFILL_DAG_ID,
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,  # no schedule: runs only when triggered (by the incremental)
    default_args=dag_spec.BACKFILL_DEFAULT_ARGS,
    tags=["dropbox", "audit-log", "backfill"],
    doc_md=__doc__,
    params={
        "days": dag_spec.days_param(
            settings.BACKFILL_DAYS,
            settings.MAX_BACKFILL_DAYS,
            "Days to load",
            "Days before the connection's connected_at to load",
        ),
        "start": dag_spec.instant_param(
            "Range start", "Explicit range start instead of days; give end too"
        ),
        "end": dag_spec.instant_param("Range end", "Explicit range end, exclusive; with start"),
        "conn_id": dag_spec.conn_id_param(),
    },
)
def dropbox_team_log_backfill():
    dag_spec.plan_and_sync("backfill")


dropbox_team_log_backfill()
