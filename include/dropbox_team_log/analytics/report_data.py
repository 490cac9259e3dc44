"""What one report holds (headline numbers, news, tables, charts), as the page and terminal read it.

Kept apart from the SQL that fills it (metrics.py) and from what draws it (charts.py,
html_page.py, text.py), so each of those depends on this shape and not on one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from dropbox_team_log.analytics.period import Period

if TYPE_CHECKING:
    import plotly.graph_objects as go


@dataclass
class Table:
    """A result set as shown in the page and in the terminal."""

    name: str
    title: str
    columns: list[str]
    rows: list[tuple]


@dataclass
class Metric:
    """A headline number in this period and in the one before."""

    name: str
    label: str
    current: int
    previous: int

    @property
    def change(self) -> str:
        if self.previous == 0:
            return "new" if self.current else "="
        if self.current == self.previous:
            return "="
        pct = 100.0 * (self.current - self.previous) / self.previous
        return f"{pct:+.0f}%"


@dataclass
class Chart:
    name: str
    title: str
    figure: go.Figure | None  # None: no data in the period (a note is shown instead)


@dataclass
class ReportData:
    root: str
    period: Period
    previous: Period
    generated_at: datetime
    latest_event: datetime | None
    metrics: list[Metric] = field(default_factory=list)
    news: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    #: The one team reported (None: every team of the dataset).
    team_id: str | None = None

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)
