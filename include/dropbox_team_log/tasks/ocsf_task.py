"""The OCSF export DAG's task: the days written since its last run, to the configured place.

The destination is the Variable `dropbox_team_log_ocsf_export` (analytics/ocsf_destination.py);
a wrong one fails the task at once, saying what to fix (retrying cannot help). At parse time
this module costs what `dag_spec` does: the analytics are imported inside the task.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from airflow.sdk import XComArg, task

log = logging.getLogger(__name__)


def export_ocsf() -> dict[str, Any]:
    """Export the changed days; log and return what was written (no event text)."""
    from airflow.sdk.exceptions import AirflowFailException

    from dropbox_team_log import deployment
    from dropbox_team_log.analytics.ocsf_destination import (
        DestinationError,
        OcsfDestination,
        export_changed,
    )
    from dropbox_team_log.tasks.dataset_root import open_dataset_root, use_aws_connection

    root, aws_conn_id = open_dataset_root()
    try:
        destination = OcsfDestination.from_setting(deployment.ocsf_export_setting(), root)
    except DestinationError as exc:
        raise AirflowFailException(str(exc)) from None
    # a relative `out` is taken from AIRFLOW_HOME, as every path of the deployment
    destination = replace(destination, out=deployment.resolve_path(destination.out))
    use_aws_connection(destination.out, aws_conn_id)  # an S3 destination: the same credentials
    result = export_changed(root, destination)
    log.info(
        "OCSF export to %s: %d day(s) changed since the last export; %d records, %d file(s) "
        "written, %d removed, in %.2f s",
        result.destination,
        len(result.changed_days),
        result.records,
        result.files,
        result.removed,
        result.seconds,
    )
    return result.to_xcom()


def export_changed_days() -> XComArg:
    """The DAG's one task."""

    @task(task_id="export_ocsf", multiple_outputs=False)
    def export_task() -> dict[str, Any]:
        return export_ocsf()

    return export_task()
