"""Incremental: keeps the dataset current from the connection on, on a schedule.

"Now" is the run's data interval end, never the wall clock, so any run replays exactly. Each run
fetches what is new since the last one, settles data older than the settle window (24 h + margin:
Dropbox delivers events up to 24 h late) an hour at a time, and refreshes fresher data every
`refresh_hours` if set (default 0: never). Schedule: env DROPBOX_TEAM_LOG_SCHEDULE (cron or
preset; default every 4 minutes).

Every unpaused team of the registry (Variable `dropbox_team_log_teams`; unset: the default
connection) is synced: its tail polled (one mapped task per team, named "<conn_id>"), then one
mapped task per team and day, named "<conn_id> <day>"; a team registered since the last run
gets its first backfill started (`start_backfill`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag

from dropbox_team_log import settings
from dropbox_team_log.tasks import dag_spec


@dag(
    dag_id=settings.INCREMENTAL_DAG_ID,
    schedule=dag_spec.INCREMENTAL_SCHEDULE,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=dag_spec.INCREMENTAL_DEFAULT_ARGS,
    tags=["dropbox", "audit-log", "incremental"],
    doc_md=__doc__,
    params={
        "settle_hours": Param(
            settings.SETTLE_HOURS,
            type="number",
            minimum=settings.MIN_SETTLE_HOURS,
            title="Settle after (hours)",
            description="Age after which data is final (Dropbox: events up to 24 h late); "
            f"at least {settings.MIN_SETTLE_HOURS:g} (default {settings.SETTLE_HOURS:g}).",
        ),
        "refresh_hours": Param(
            settings.REFRESH_HOURS,
            type="number",
            minimum=0,
            title="Refresh every (hours)",
            description="Re-read data not yet settled this often, for late events sooner: "
            f"at least 0; 0 = only settle (default {settings.REFRESH_HOURS:g}).",
        ),
        "catchup_days": Param(
            settings.CATCHUP_DAYS,
            type="number",
            minimum=1,
            title="Catch up (days)",
            description="How far back a run fills gaps after an outage; at least 1 "
            f"(default {settings.CATCHUP_DAYS:g}).",
        ),
        "conn_id": dag_spec.conn_id_param(),
    },
)
def dropbox_team_log_incremental():
    dag_spec.plan_and_sync("incremental")
    dag_spec.start_backfills()


dropbox_team_log_incremental()
