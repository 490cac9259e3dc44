"""OCSF export: keeps an OCSF copy of the dataset current, for a security lake or any reader.

Created paused: the export is optional. Unpause it and it runs on the dataset's Asset (every
successful day write of the backfill or incremental DAG emits it): `export_ocsf` writes the days
written since its last run as OCSF 1.1 records (the first run: every day), replacing their
files, so late events reach the lake and nothing is there twice. Where: the Variable
`dropbox_team_log_ocsf_export`, e.g. `{"out": "s3://<lake bucket>/", "layout":
"security-lake", "region": "us-east-1", "account_id": "123456789012"}`; unset, hive partitions
under `<dataset root>/_ocsf/`. Each run exports each changed day whole: for a team of millions of
events a day, DROPBOX_TEAM_LOG_OCSF_SCHEDULE (a cron or preset, e.g. @hourly) runs it less
often. The mapping, the layouts and Security Lake's set-up: docs/ocsf.md.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag

from dropbox_team_log import settings
from dropbox_team_log.tasks import dag_spec, ocsf_task


@dag(
    dag_id=settings.OCSF_EXPORT_DAG_ID,
    schedule=dag_spec.OCSF_EXPORT_SCHEDULE,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,  # optional: unpause it to keep an OCSF copy current
    default_args=dag_spec.SECURITY_DEFAULT_ARGS,
    tags=["dropbox", "audit-log", "ocsf"],
    doc_md=__doc__,
)
def dropbox_team_log_ocsf_export():
    ocsf_task.export_changed_days()


dropbox_team_log_ocsf_export()
