"""Names the DAG files need at parse time, kept in a module that imports nothing heavy.

DAG files are parsed every few seconds by the dag-processor: they import this, and import the
task logic (`dag_tasks`: SDK, pyarrow) only inside the tasks.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, Param, XComArg, task

from dropbox_team_log.notifications.alerts import on_failure

OUTPUT_VARIABLE = "dropbox_team_log_output"
CONN_ID_VARIABLE = "dropbox_team_log_conn_id"
#: Caps concurrent API work across both DAGs: size it to the team's rate limit.
API_POOL = "dropbox_api"
#: Emitted by every successful day write, so downstream DAGs can run on new data. The `x-`
#: scheme is Airflow's mark of a user-defined URI: it is not normalised, so defining it does not
#: load every provider's URI handlers (the Amazon one imports boto3: ~30 MB in each task process
#: and ~100 ms on each parse of the DAG files).
EVENTS_ASSET = Asset(name="dropbox_team_log_events", uri="x-dropbox-team-log://events")
#: Cron or preset for the incremental DAG (an env var: no DB access at parse time).
INCREMENTAL_SCHEDULE = os.environ.get("DROPBOX_TEAM_LOG_SCHEDULE", "*/15 * * * *")

BACKFILL_DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "on_failure_callback": on_failure,  # alert (log line + optional webhook) on final failure
}
INCREMENTAL_DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": on_failure,
}


def conn_id_param() -> Param:
    """The `conn_id` param both sync DAGs take (a fresh Param per DAG)."""
    return Param(
        None,
        type=["null", "string"],
        description=f"Connection id (default: Variable {CONN_ID_VARIABLE}, "
        "else dropbox_team_default)",
    )


def plan_and_sync(kind: str) -> XComArg:
    """The task graph both DAGs share: plan the due days, then one mapped task per day."""

    @task(task_id="plan_days")
    def plan_days(**context: Any) -> list[dict]:
        from dropbox_team_log.tasks import sync_tasks as dag_tasks

        return dag_tasks.plan(kind, context["params"], context)

    @task(task_id="sync_day", pool=API_POOL, outlets=[EVENTS_ASSET], multiple_outputs=False)
    def sync_day(job: dict) -> dict:
        from dropbox_team_log.tasks import sync_tasks as dag_tasks

        return dag_tasks.sync(job)

    return sync_day.expand(job=plan_days())
