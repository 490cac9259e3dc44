"""An optional task body: read every day file back in full and move the damaged ones aside.

No DAG runs it by default: it reads every page of the dataset, as much I/O as the data holds,
while the syncs already move aside what they read and find damaged. To schedule it (weekly,
say), add a task to a DAG (docs/operations.md, "A damaged day file"):

    @task(task_id="verify_dataset")
    def verify_dataset() -> dict:
        from dropbox_team_log.tasks import verify_task

        return verify_task.verify_dataset()

The task moves every bad file to `<root>/_quarantine/`, then fails without retry when there was
any, so the failure alert names each file and what to do; the syncs fetch those days again.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.tasks.dataset_root import open_dataset_root

log = logging.getLogger(__name__)


def verify_dataset(root: str | None = None, *, quarantine: bool = True) -> dict[str, Any]:
    """Check every day file under `root` (default: the deployment's, its AWS connection in
    use); fail naming the bad ones."""
    if root is None:
        root, _ = open_dataset_root()
    checks = EventDataset(root).verify(quarantine=quarantine)
    bad = [check for check in checks if check.problem is not None]
    summary = {
        "root": root,
        "files": len(checks),
        "rows": sum(check.rows for check in checks),
        "bad": [
            {"file": check.path, "problem": check.problem, "moved_to": check.moved_to}
            for check in bad
        ],
    }
    log.info("verified %d day files (%d rows) under %s", len(checks), summary["rows"], root)
    if bad:
        listed = "; ".join(
            f"{check.path}: {check.problem}"
            + (f" (moved to {check.moved_to})" if check.moved_to else "")
            for check in bad
        )
        then = (
            "their days are fetched again by the next sync whose window covers them (older "
            "days: trigger the backfill for them)"
            if quarantine
            else "move them aside with `dropbox-team-log verify --quarantine`"
        )
        raise AirflowFailException(f"{len(bad)} bad day file(s) under {root}: {listed}; {then}")
    return summary
