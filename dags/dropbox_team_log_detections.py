"""Detections: raises findings from the dataset as it changes, and alerts on them.

Scheduled on the dataset's Asset (every successful day write of the backfill or incremental DAG
emits it). `evaluate_detections` runs the detect_* views over the days written since its last
run (with their look-back), writes the findings it has not raised before to
`<dataset root>/_findings/`, and `notify_findings` sends them through the
`dropbox_team_log_alerts` connection (a log line always). A finding is raised once however
often its days are re-read. Knobs: Variable `dropbox_team_log_detections` (docs/detections.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag

from dropbox_team_log import settings
from dropbox_team_log.tasks import dag_spec, detection_tasks


@dag(
    dag_id=settings.DETECTIONS_DAG_ID,
    schedule=[dag_spec.EVENTS_ASSET],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,  # runs on the first dataset write, no unpause step
    default_args=dag_spec.SECURITY_DEFAULT_ARGS,
    tags=["dropbox", "audit-log", "detections"],
    doc_md=__doc__,
)
def dropbox_team_log_detections():
    detection_tasks.detect_and_notify()


dropbox_team_log_detections()
