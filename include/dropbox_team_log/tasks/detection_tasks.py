"""The detections DAG's two tasks: evaluate what changed, then alert on what is new.

`evaluate` runs the detections over the days written since the last evaluation and writes the
new findings (analytics/findings.py); `notify` sends every findings file not alerted yet through
the alert connection and marks it. Kept apart so a webhook that is down retries the sending only:
the findings are already written, and are sent once it answers. At parse time this module
costs what `dag_spec` does: the task bodies import the analytics inside the tasks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import XComArg, task

log = logging.getLogger(__name__)


def run_time(context: dict[str, Any]) -> datetime:
    """The run's logical date, or its run_after (asset-triggered runs have no logical date)."""
    when = context.get("logical_date") or context["dag_run"].run_after
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    return when.astimezone(UTC)


def evaluate(context: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the detections over the changed days; write and log the new findings."""
    from airflow.sdk.exceptions import AirflowFailException

    from dropbox_team_log import deployment
    from dropbox_team_log.analytics.detections import DetectionConfig, DetectionConfigError
    from dropbox_team_log.analytics.findings import run_detections
    from dropbox_team_log.tasks.dataset_root import open_dataset_root

    try:
        cfg = DetectionConfig.from_json(deployment.detections_setting())
    except DetectionConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    root, _ = open_dataset_root()
    triggers = context.get("triggering_asset_events") or {}
    asset_events = sum(len(events) for events in triggers.values())
    result = run_detections(root, cfg, now=run_time(context))
    log.info(
        "detections over %s: %d asset event(s) since the last run, %d day(s) changed%s; "
        "%d events read, %d finding(s), %d new, in %.2f s",
        root,
        asset_events,
        len(result.changed_days),
        f" (from {result.since})" if result.since else "",
        result.events,
        result.findings,
        len(result.new),
        result.seconds,
    )
    return result.to_xcom()


def notify(context: dict[str, Any]) -> dict[str, Any]:
    """Send each findings file not alerted yet, oldest first, and mark it sent."""
    from dropbox_team_log.analytics.findings import FindingsStore
    from dropbox_team_log.notifications.alerts import send_findings
    from dropbox_team_log.tasks.dataset_root import open_dataset_root

    store = FindingsStore(open_dataset_root()[0])
    sent = 0
    with store.lock():
        for name, findings in store.pending():
            send_findings(findings)
            store.mark_notified(name)
            sent += len(findings)
    log.info("%d finding(s) alerted", sent)
    return {"alerted": sent}


def detect_and_notify() -> XComArg:
    """The DAG's task graph: evaluate >> notify."""

    @task(task_id="evaluate_detections", multiple_outputs=False)
    def evaluate_task(**context: Any) -> dict[str, Any]:
        return evaluate(context)

    @task(task_id="notify_findings", multiple_outputs=False)
    def notify_task(**context: Any) -> dict[str, Any]:
        return notify(context)

    evaluated = evaluate_task()
    alerted = notify_task()
    evaluated >> alerted
    return alerted
