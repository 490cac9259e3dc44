"""The report's Plotly figures: per-day stacked bars over the period, and ranked horizontal bars.

A chart with no data in the period has no figure (the page shows a note instead). The figures
only draw what metrics.py counted; they run no SQL of their own. Plotly reads the text it draws
(tick labels, hover text, trace names) as pseudo-HTML, so every data string goes through
`plotly_literal` first: a file named `<a href=...>` shows as those characters, not as a link.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from dropbox_team_log.analytics.period import Period
from dropbox_team_log.analytics.report_data import Chart, ReportData, Table
from dropbox_team_log.display import escape_markup, visible

AUTH_COLORS = {"authenticated": "#2b6cb0", "unauthenticated": "#e53e3e", "unknown": "#a0aec0"}
#: Longest bar label of a ranked chart (the hover text holds the whole value).
_LABEL_CHARS = 60


def plotly_literal(value: object, limit: int | None = None) -> str:
    """`value` as text Plotly draws literally: control characters as escapes (`visible`),
    cut to its last `limit` characters when longer, then Plotly's markup characters escaped."""
    text = visible(value)
    if limit is not None and len(text) > limit:
        text = "..." + text[-(limit - 3) :]
    return escape_markup(text)


def _layout(fig: go.Figure, *, height: int = 360, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
        **kwargs,
    )
    return fig


def _stacked_by_day(
    rows: Sequence[tuple], period: Period, colors: dict[str, str] | None = None
) -> go.Figure | None:
    """One bar trace per series over the period's days (only days with counts get a bar)."""
    if not rows:
        return None
    names = sorted({r[1] or "(none)" for r in rows}, key=lambda s: (colors or {}).get(s, "") + s)
    fig = go.Figure()
    for name in names:
        points = [(r[0], r[2]) for r in rows if (r[1] or "(none)") == name]
        fig.add_trace(
            go.Bar(
                x=[d.isoformat() for d, _ in points],
                y=[n for _, n in points],
                name=plotly_literal(name),
                marker_color=(colors or {}).get(name),
            )
        )
    start = datetime.combine(period.start, datetime.min.time()) - timedelta(hours=12)
    end = datetime.combine(period.end, datetime.min.time()) + timedelta(hours=12)
    return _layout(
        fig, barmode="stack", xaxis={"type": "date", "range": [start.isoformat(), end.isoformat()]}
    )


def _ranked(table: Table, label_col: str, value_col: str, *, color: str) -> go.Figure | None:
    """Horizontal bars of a ranked table, the largest on top."""
    if not table.rows:
        return None
    li, vi = table.columns.index(label_col), table.columns.index(value_col)
    rows = list(reversed(table.rows))
    labels = [plotly_literal(r[li], _LABEL_CHARS) for r in rows]
    fig = go.Figure(
        go.Bar(
            x=[r[vi] for r in rows],
            y=labels,
            orientation="h",
            marker_color=color,
            hovertext=[plotly_literal(r[li]) for r in rows],
            hoverinfo="text+x",
        )
    )
    # Categories always: a label that looks like a number or a date must not turn the axis.
    return _layout(fig, height=120 + 28 * len(rows), yaxis={"automargin": True, "type": "category"})


#: The charts in page order, name -> title. A ranked chart (RANKED) draws the table of its name;
#: any other stacks the per-day series of its name (metrics.SERIES).
CHART_TITLES = {
    "events_by_auth_status": "Events per day by auth_status",
    "unauthenticated_per_day": "Shared content opened without signing in, per day",
    "top_unauthenticated_files": "Top files opened without signing in",
    "top_unauthenticated_links": "Top shared links opened without signing in",
    "unauthenticated_countries": "Countries of access without signing in",
    "unauthenticated_ips": "IP addresses of access without signing in",
    "sign_in_failures_per_day": "Sign-in failures per day, by reason",
    "admin_actions_per_day": "Admin actions per day, by category",
}
#: Ranked charts: table -> (the column that labels a bar, bar colour); bar length: `opens`.
RANKED = {
    "top_unauthenticated_files": ("path", "#c53030"),
    "top_unauthenticated_links": ("link", "#dd6b20"),
    "unauthenticated_countries": ("country", "#805ad5"),
    "unauthenticated_ips": ("ip", "#6b46c1"),
}
#: Fixed series colours of per-day charts (the others take Plotly's default colours).
SERIES_COLORS = {"events_by_auth_status": AUTH_COLORS}


def report_charts(data: ReportData, series: dict[str, list[tuple]]) -> list[Chart]:
    """The report's charts, in page order, from its tables and per-day `series`."""
    charts = []
    for name, title in CHART_TITLES.items():
        if name in RANKED:
            label_column, color = RANKED[name]
            figure = _ranked(data.table(name), label_column, "opens", color=color)
        else:
            figure = _stacked_by_day(series[name], data.period, SERIES_COLORS.get(name))
        charts.append(Chart(name, title, figure))
    return charts
