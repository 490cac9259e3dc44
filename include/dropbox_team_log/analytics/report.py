"""The analysts' HTML report: charts and tables of one period, compared with the period before.

Every number comes from the query views (query.py), so the report, `dropbox-team-log query`
and docs/querying.md always agree. Charts are Plotly figures; plotly.js is embedded once, inline,
so the file is self-contained and opens offline (no CDN, no map tiles). User-controlled text
(file names, links, emails) is escaped by Jinja2's autoescape and by Plotly's JSON encoding.

The period is whole UTC days `[start, end]`, both inclusive; the comparison period is the same
number of days just before it.
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

import duckdb
import fsspec
import jinja2
import plotly.graph_objects as go
from fsspec.implementations.local import LocalFileSystem
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from dropbox_team_log import settings
from dropbox_team_log.analytics import views as query
from dropbox_team_log.deployment import default_report_path

AUTH_COLORS = {"authenticated": "#2b6cb0", "unauthenticated": "#e53e3e", "unknown": "#a0aec0"}


@dataclass(frozen=True)
class Period:
    """Whole UTC days, `start` and `end` both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The same number of days just before this period."""
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def label(self) -> str:
        return f"{self.start.isoformat()} .. {self.end.isoformat()} ({self.days} days, UTC)"


def resolve_period(
    start: date | None = None,
    end: date | None = None,
    days: int | None = None,
    *,
    today: date | None = None,
) -> Period:
    """The period from any of: start+end, start+days, end+days, days (ending today, UTC)."""
    if start is not None and end is not None and days is not None:
        raise ValueError("give --start and --end, or one of them with --days, not all three")
    if days is not None and days < 1:
        raise ValueError("--days must be at least 1")
    span = timedelta(days=(days or settings.REPORT_DAYS) - 1)
    if start is not None and end is None:
        end = start + span if days is not None else (today or datetime.now(UTC).date())
    if end is None:
        end = today or datetime.now(UTC).date()
    if start is None:
        start = end - span
    return Period(start, end)


# --- numbers ----------------------------------------------------------------------------------


@dataclass
class Table:
    """A result set as shown in the page and in the terminal."""

    name: str
    title: str
    columns: list[str]
    rows: list[tuple]


@dataclass
class Metric:
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

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


#: (name, label, SQL over the views) of the headline numbers, each counted in both periods.
METRICS = (
    ("events", "Events", "SELECT count(*) FROM events WHERE {p}"),
    (
        "unauthenticated_access",
        "Opened without signing in",
        "SELECT count(*) FROM unauthenticated_access WHERE {p}",
    ),
    (
        "unauthenticated_ips",
        "IP addresses without signing in",
        "SELECT count(DISTINCT ip_address) FROM unauthenticated_access WHERE {p}",
    ),
    (
        "unauthenticated_countries",
        "Countries without signing in",
        "SELECT count(DISTINCT country) FROM unauthenticated_access WHERE {p}",
    ),
    (
        "external_sharing",
        "External sharing events",
        "SELECT count(*) FROM external_sharing WHERE {p}",
    ),
    (
        "external_parties",
        "Outside people involved",
        "SELECT count(DISTINCT x) FROM (SELECT unnest(external_parties) AS x "
        "FROM external_sharing WHERE {p})",
    ),
    (
        "sign_in_failures",
        "Sign-in failures",
        "SELECT count(*) FROM sign_ins WHERE outcome = 'failure' AND {p}",
    ),
    (
        "sign_in_successes",
        "Successful sign-ins",
        "SELECT count(*) FROM sign_ins WHERE outcome = 'success' AND {p}",
    ),
    (
        "admin_actions",
        "Admin actions",
        "SELECT count(*) FROM admin_actions WHERE {p}",
    ),
)

#: What is new this period: (label, SQL of distinct values over the views).
NEWS = (
    (
        "countries opening links without signing in",
        "SELECT DISTINCT country FROM unauthenticated_access WHERE country IS NOT NULL AND {p}",
    ),
    (
        "outside people in sharing",
        "SELECT DISTINCT unnest(external_parties) FROM external_sharing WHERE {p}",
    ),
    (
        "admins acting",
        "SELECT DISTINCT admin_email FROM admin_actions WHERE admin_email IS NOT NULL AND {p}",
    ),
)

#: The tables: (name, title, SQL over the views for the report period).
TABLES = (
    (
        "top_unauthenticated_files",
        "Files and folders opened without signing in",
        """SELECT asset_path AS path, count(*) AS opens, count(DISTINCT ip_address) AS ips,
                  string_agg(DISTINCT country, ', ' ORDER BY country) AS countries,
                  max(timestamp) AS last_opened
           FROM unauthenticated_access WHERE asset_path IS NOT NULL AND {p}
           GROUP BY asset_path ORDER BY opens DESC, path LIMIT 10""",
    ),
    (
        "top_unauthenticated_links",
        "Shared links opened without signing in",
        """SELECT shared_link AS link, any_value(asset_name ORDER BY asset_name) AS file,
                  count(*) AS opens, count(DISTINCT ip_address) AS ips,
                  string_agg(DISTINCT country, ', ' ORDER BY country) AS countries
           FROM unauthenticated_access WHERE shared_link IS NOT NULL AND {p}
           GROUP BY shared_link ORDER BY opens DESC, link LIMIT 10""",
    ),
    (
        "unauthenticated_countries",
        "Countries opening shared content without signing in",
        """SELECT coalesce(country, '(unknown)') AS country, count(*) AS opens,
                  count(DISTINCT ip_address) AS ips
           FROM unauthenticated_access WHERE {p}
           GROUP BY 1 ORDER BY opens DESC, country""",
    ),
    (
        "unauthenticated_ips",
        "IP addresses opening shared content without signing in",
        """SELECT ip_address AS ip, any_value(country ORDER BY country) AS country,
                  count(*) AS opens, count(DISTINCT asset_path) AS files,
                  max(timestamp) AS last_seen
           FROM unauthenticated_access WHERE ip_address IS NOT NULL AND {p}
           GROUP BY ip_address ORDER BY opens DESC, ip LIMIT 10""",
    ),
    (
        "sign_in_failures_by_user",
        "Sign-in failures by user",
        """SELECT coalesce(user_email, '(unknown)') AS user, count(*) AS failures,
                  count(DISTINCT country) AS countries, count(DISTINCT ip_address) AS ips,
                  any_value(error_message ORDER BY error_message) AS example_reason
           FROM sign_ins WHERE outcome = 'failure' AND {p}
           GROUP BY 1 ORDER BY failures DESC, user LIMIT 10""",
    ),
    (
        "admin_actions_by_admin",
        "Admin actions by admin",
        """SELECT coalesce(admin_email, '(' || actor_type || ')', '(unknown)') AS admin,
                  count(*) AS actions, count(DISTINCT event_type) AS action_types,
                  max(timestamp) AS last_action
           FROM admin_actions WHERE {p}
           GROUP BY 1 ORDER BY actions DESC, admin LIMIT 10""",
    ),
)

#: Per-day series behind the time charts: (name, SQL -> (event_date, series, count)).
SERIES = {
    "events_by_auth_status": """SELECT event_date, auth_status, count(*) FROM events WHERE {p}
                                GROUP BY ALL ORDER BY ALL""",
    "unauthenticated_per_day": """SELECT event_date, event_type, count(*)
                                  FROM unauthenticated_access WHERE {p}
                                  GROUP BY ALL ORDER BY ALL""",
    "sign_in_failures_per_day": """SELECT event_date, coalesce(error_message, event_type),
                                          count(*)
                                   FROM sign_ins WHERE outcome = 'failure' AND {p}
                                   GROUP BY ALL ORDER BY ALL""",
    "admin_actions_per_day": """SELECT event_date, event_category, count(*)
                                FROM admin_actions WHERE {p}
                                GROUP BY ALL ORDER BY ALL""",
}


#: `{p}` in the SQL below: the filter on the partition column (only the period's files are read).
PERIOD_FILTER = "event_date BETWEEN $start AND $end"


def _params(period: Period) -> dict[str, date]:
    """The parameters of PERIOD_FILTER."""
    return {"start": period.start, "end": period.end}


def _rows(
    con: duckdb.DuckDBPyConnection, sql: str, period: Period
) -> tuple[list[str], list[tuple]]:
    result = con.execute(sql.replace("{p}", PERIOD_FILTER), _params(period))
    columns = [d[0] for d in result.description]
    return columns, result.fetchall()


def collect(con: duckdb.DuckDBPyConnection, root: str, period: Period) -> ReportData:
    """Every number and chart of the report, from the views on `con`."""
    previous = period.previous()
    latest = con.execute("SELECT max(timestamp) FROM events").fetchall()[0][0]
    data = ReportData(
        root=str(root),
        period=period,
        previous=previous,
        generated_at=datetime.now(UTC).replace(microsecond=0),
        latest_event=latest,
    )
    for name, label, sql in METRICS:
        current = _rows(con, sql, period)[1][0][0]
        before = _rows(con, sql, previous)[1][0][0]
        data.metrics.append(Metric(name, label, int(current or 0), int(before or 0)))
    for label, sql in NEWS:
        now_values = {r[0] for r in _rows(con, sql, period)[1]} - {None}
        old_values = {r[0] for r in _rows(con, sql, previous)[1]} - {None}
        fresh = sorted(now_values - old_values)
        if fresh and old_values:
            more = f" and {len(fresh) - 8} more" if len(fresh) > 8 else ""
            data.news.append(f"New {label}: {', '.join(fresh[:8])}{more}.")
    for name, title, sql in TABLES:
        columns, rows = _rows(con, sql, period)
        data.tables.append(Table(name, title, columns, rows))
    series = {name: _rows(con, sql, period)[1] for name, sql in SERIES.items()}
    data.charts = _charts(data, series)
    return data


# --- charts -----------------------------------------------------------------------------------


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
                name=name,
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
    labels = [_short(str(r[li])) for r in rows]
    fig = go.Figure(
        go.Bar(
            x=[r[vi] for r in rows],
            y=labels,
            orientation="h",
            marker_color=color,
            hovertext=[str(r[li]) for r in rows],
            hoverinfo="text+x",
        )
    )
    return _layout(fig, height=120 + 28 * len(rows), yaxis={"automargin": True})


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _charts(data: ReportData, series: dict[str, list[tuple]]) -> list[Chart]:
    period = data.period
    return [
        Chart(
            "events_by_auth_status",
            "Events per day by auth_status",
            _stacked_by_day(series["events_by_auth_status"], period, AUTH_COLORS),
        ),
        Chart(
            "unauthenticated_per_day",
            "Shared content opened without signing in, per day",
            _stacked_by_day(series["unauthenticated_per_day"], period),
        ),
        Chart(
            "top_unauthenticated_files",
            "Top files opened without signing in",
            _ranked(data.table("top_unauthenticated_files"), "path", "opens", color="#c53030"),
        ),
        Chart(
            "top_unauthenticated_links",
            "Top shared links opened without signing in",
            _ranked(data.table("top_unauthenticated_links"), "link", "opens", color="#dd6b20"),
        ),
        Chart(
            "unauthenticated_countries",
            "Countries of access without signing in",
            _ranked(data.table("unauthenticated_countries"), "country", "opens", color="#805ad5"),
        ),
        Chart(
            "unauthenticated_ips",
            "IP addresses of access without signing in",
            _ranked(data.table("unauthenticated_ips"), "ip", "opens", color="#6b46c1"),
        ),
        Chart(
            "sign_in_failures_per_day",
            "Sign-in failures per day, by reason",
            _stacked_by_day(series["sign_in_failures_per_day"], period),
        ),
        Chart(
            "admin_actions_per_day",
            "Admin actions per day, by category",
            _stacked_by_day(series["admin_actions_per_day"], period),
        ),
    ]


# --- output -----------------------------------------------------------------------------------


def summary_lines(data: ReportData) -> list[str]:
    """The short text of what changed since the previous period."""
    lines = []
    events = next((m for m in data.metrics if m.name == "events"), None)
    if events is not None and events.previous == 0:
        lines.append(
            f"No events in the previous period ({data.previous.label()}): nothing to compare."
        )
    for m in data.metrics:
        if m.current != m.previous:
            word = "up" if m.current > m.previous else "down"
            lines.append(f"{m.label}: {m.current} ({word} from {m.previous}, {m.change}).")
    if not lines:
        lines.append("No change in the headline numbers since the previous period.")
    return lines + data.news


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("dropbox_team_log.analytics", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_html(data: ReportData) -> str:
    charts = []
    for index, chart in enumerate(data.charts):
        html = None
        if chart.figure is not None:
            html = chart.figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"chart-{chart.name}-{index}",
                config={"displaylogo": False, "responsive": True},
            )
        # Plotly's own output (its JSON escapes "</"): trusted, unlike the data inside it
        markup = Markup(html) if html else None  # ruff: ignore[unsafe-markup-use]
        charts.append({"name": chart.name, "title": chart.title, "html": markup})
    return _TEMPLATES.get_template("report.html.j2").render(
        data=data,
        plotlyjs=Markup(get_plotlyjs()),  # ruff: ignore[unsafe-markup-use] (the library)
        charts=charts,
        summary=summary_lines(data),
        tables=[
            {
                "name": t.name,
                "title": t.title,
                "columns": t.columns,
                "rows": [[_cell(v) for v in row] for row in t.rows],
            }
            for t in data.tables
        ],
        cell=_cell,
    )


def print_tables(data: ReportData, out: TextIO = sys.stdout) -> None:
    """The key tables in the terminal."""
    print(f"Dropbox team activity: {data.period.label()}", file=out)
    print(
        f"compared with {data.previous.label()}; latest event {_cell(data.latest_event)}", file=out
    )
    print("", file=out)
    print_rows(
        ["metric", "this period", "previous", "change"],
        [(m.label, m.current, m.previous, m.change) for m in data.metrics],
        out,
    )
    print("", file=out)
    for line in summary_lines(data):
        print(f"  {line}", file=out)
    for table in data.tables:
        print(f"\n{table.title}:", file=out)
        print_rows(table.columns, table.rows, out)


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [min(90, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(columns)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), file=out)
    for row in cells:
        print("  " + "  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)), file=out)
    if not cells:
        print("  (none)", file=out)


def write_text(path: str, text: str) -> str:
    """Write `path` (local or fsspec URL) so readers never see half a file; returns the path."""
    fs, target = fsspec.core.url_to_fs(path)
    parent = target.rsplit("/", 1)[0] if "/" in target else "."
    if not isinstance(fs, LocalFileSystem):
        fs.makedirs(parent, exist_ok=True)
        with fs.open(target, "w", encoding="utf-8") as f:  # an object PUT is atomic already
            f.write(text)
        return path
    os.makedirs(parent, mode=0o750, exist_ok=True)  # like the dataset's own folders
    temp = f"{parent}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temp, 0o640)  # the report names people, like the data it comes from
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target


def build(root: str, period: Period) -> ReportData:
    con = query.connect(root)
    try:
        return collect(con, root, period)
    finally:
        con.close()


def write_report(
    root: str, *, out: str | None = None, period: Period | None = None, echo: TextIO | None = None
) -> str:
    """Render the report of `period` (default: the last 30 days) to `out` (default: beside the
    data, `<root>/_reports/`); with `echo`, print the key tables there too. Returns the path."""
    data = build(root, period or resolve_period())
    if echo is not None:
        print_tables(data, echo)
    return write_text(out or default_report_path(root), render_html(data))


def report_text(data: ReportData) -> str:
    """The terminal tables as one string (logs of the report DAG)."""
    buffer = io.StringIO()
    print_tables(data, buffer)
    return buffer.getvalue()
