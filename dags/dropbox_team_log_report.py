"""Report: re-renders the analysts' HTML report whenever the dataset changes.

Scheduled on the dataset's Asset (every successful day write of the backfill or incremental DAG
emits it), so a current report is always there. It covers the last `days` days (default 30) up
to the run's day and compares them with the days before. Written to the Variable
`dropbox_team_log_report_path` if set, else `<dataset root>/_reports/dropbox_team_log_report.html`
(outside the day files' glob). The key tables are also in the task log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from dropbox_team_log.tasks import dag_spec as dag_config


@dag(
    dag_id="dropbox_team_log_report",
    schedule=[dag_config.EVENTS_ASSET],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
    },
    tags=["dropbox", "audit-log", "report"],
    doc_md=__doc__,
    params={
        "days": Param(
            30, type="integer", minimum=1, maximum=366, description="Days the report covers"
        ),
    },
)
def dropbox_team_log_report():
    @task(task_id="render_report", multiple_outputs=False)
    def render_report(**context) -> dict:
        from dropbox_team_log.tasks import report_task as report_tasks

        return report_tasks.render(context["params"], context)

    render_report()


dropbox_team_log_report()
