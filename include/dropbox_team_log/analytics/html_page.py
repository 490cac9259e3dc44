"""The report as one self-contained HTML page: the Jinja2 template (templates/) filled in.

plotly.js is embedded once, inline, so the file opens offline (no CDN, no map tiles).
Event strings (file names, links, emails) are data, never markup: in the tables and summary by
Jinja2's autoescape (after `text.cell` made control characters visible), in the charts by
`charts.plotly_literal` (Plotly's label pseudo-HTML) and Plotly's JSON encoding. Only Plotly's
own output and plotly.js enter the page unescaped.
"""

from __future__ import annotations

import jinja2
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from dropbox_team_log.analytics.report_data import ReportData
from dropbox_team_log.analytics.text import cell, summary_lines

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("dropbox_team_log.analytics", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_html(data: ReportData) -> str:
    """The page of `data`: summary, headline numbers, charts and tables."""
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
                "rows": [[cell(v) for v in row] for row in t.rows],
            }
            for t in data.tables
        ],
        cell=cell,
    )
