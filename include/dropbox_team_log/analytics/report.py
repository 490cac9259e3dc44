"""The analysts' HTML report: one period's charts and tables, compared with the period before.

The report's entry point for the CLI, the report DAG and the demo: `build` collects the data,
`write_report` renders the page and writes it. Each job has its own module: the period
(period.py), the numbers (metrics.py), the charts (charts.py), the page (html_page.py) and the
terminal tables (text.py). The page is written whole or not at all, to a local path or an fsspec
URL, by the dataset's own atomic writer.
"""

from __future__ import annotations

from typing import TextIO

from dropbox_team_log.analytics import views
from dropbox_team_log.analytics.findings import findings_table
from dropbox_team_log.analytics.html_page import render_html
from dropbox_team_log.analytics.metrics import collect
from dropbox_team_log.analytics.period import Period, resolve_period
from dropbox_team_log.analytics.report_data import ReportData
from dropbox_team_log.analytics.text import report_text
from dropbox_team_log.dataset.files import write_text
from dropbox_team_log.dataset.team_info import TeamInfoStore
from dropbox_team_log.deployment import default_report_path


def build(root: str, period: Period, team: str | None = None) -> ReportData:
    """Every number and chart of the report of `period`, from the dataset at `root`: every
    team's rows, or one team's (`team`: a connection id, team id or name; views.resolve_team).
    """
    team_id = None if team is None else views.resolve_team(TeamInfoStore(root).load_all(), team)
    con = views.connect(root, team=team_id)
    try:
        data = collect(con, root, period)
    finally:
        con.close()
    data.tables.append(findings_table(root, period, team_id=team_id))
    if team_id is not None:
        data.team_id = team_id
        data.news.insert(0, f"This report covers one team only: {team} ({team_id}).")
    return data


def write_report(
    root: str,
    *,
    out: str | None = None,
    period: Period | None = None,
    echo: TextIO | None = None,
    team: str | None = None,
) -> str:
    """Render the report of `period` (default: the last 30 days) to `out` (default: beside the
    data, `<root>/_reports/`), of every team or of `team`; with `echo`, print the key tables
    there too. Returns the path."""
    data = build(root, period or resolve_period(), team)
    if echo is not None:
        echo.write(report_text(data))
    return write_text(out or default_report_path(root), render_html(data))
