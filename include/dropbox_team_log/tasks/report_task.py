"""The report DAG's task body: the report of the run's period, written where `deployment` says.

Dataset root: the one the sync DAGs write to; report file: Variable
`dropbox_team_log_report_path` (a local path or an fsspec URL), else beside the data in
`<root>/_reports/` (see `deployment`).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from dropbox_team_log import deployment, settings
from dropbox_team_log.analytics.html_page import render_html
from dropbox_team_log.analytics.period import resolve_period
from dropbox_team_log.analytics.report import build
from dropbox_team_log.analytics.text import report_text
from dropbox_team_log.dataset.files import write_text
from dropbox_team_log.tasks.dataset_root import open_dataset_root

log = logging.getLogger(__name__)


def team_report_path(path: str, team_id: str) -> str:
    """`<name>.<team id>.html` beside `path` (the team id made safe for a file name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", team_id).lstrip(".") or "team"
    stem, dot, ext = path.rpartition(".")
    return f"{stem}.{safe}.{ext}" if dot and "/" not in ext else f"{path}.{safe}"


def render(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The report DAG's task: the last `days` days up to the run's day, written and logged.

    The period ends on the day of the run's logical date, or of its `run_after` when it has
    none (asset-triggered runs), so a replayed run renders the same period.
    """
    when = context.get("logical_date") or context["dag_run"].run_after
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    period = resolve_period(
        days=int(params.get("days") or settings.REPORT_DAYS), today=when.astimezone(UTC).date()
    )
    root, _ = open_dataset_root()
    out = deployment.report_path(root)
    team = params.get("team") or None
    try:
        data = build(root, period, team)
    except ValueError as exc:  # an unknown team: retrying cannot help
        raise AirflowFailException(f"Bad parameter team: {exc}") from None
    if team is not None:  # beside every team's report, never over it
        out = team_report_path(out, data.team_id or team)
    log.info("Report of %s:\n%s", period.label(), report_text(data))
    path = write_text(out, render_html(data))
    log.info("Report written to %s", path)
    metrics = {m.name: m.current for m in data.metrics}
    return {
        "path": path,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "events": metrics["events"],
    }
