"""Report: re-renders the analysts' HTML report whenever the dataset changes.

Scheduled on the dataset's Asset (every successful day write of the backfill or incremental DAG
emits it), so a current report is always there. It covers the last `days` days (default 30) up
to the run's day and compares them with the days before. Written to the Variable
`dropbox_team_log_report_path` if set, else `<dataset root>/_reports/dropbox_team_log_report.html`
(outside the day files' glob). The key tables are also in the task log. Every team's rows by
default; a run triggered with `team` reports that team alone, beside the other report
(`dropbox_team_log_report.<team id>.html`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag

from dropbox_team_log import settings
from dropbox_team_log.tasks import dag_spec


@dag(
    dag_id=settings.REPORT_DAG_ID,
    schedule=[dag_spec.EVENTS_ASSET],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,  # runs on the first dataset write, no unpause step
    default_args=dag_spec.REPORT_DEFAULT_ARGS,
    tags=["dropbox", "audit-log", "report"],
    doc_md=__doc__,
    params={
        "days": dag_spec.days_param(
            settings.REPORT_DAYS,
            settings.MAX_REPORT_DAYS,
            "Report period",
            "Days the report covers, up to the run's day",
        ),
        "team": dag_spec.team_param(),
    },
)
def dropbox_team_log_report():
    dag_spec.render_report()


dropbox_team_log_report()
