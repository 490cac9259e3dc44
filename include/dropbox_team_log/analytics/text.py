"""The report as plain text: cell values, the summary of what changed, and terminal tables.

The page (html_page.py) shows the same cells and summary lines, so the terminal, the report
DAG's log and the HTML say the same thing; `dropbox-team-log query` prints its tables here too.
Every value is shown through `display.visible`: an event string's control characters print as
escapes and never steer the terminal (clear it, retitle it, forge a row).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from dropbox_team_log.analytics.report_data import ReportData
from dropbox_team_log.display import visible


def cell(value: object) -> str:
    """A value as a table shows it: times in UTC to the second, None as empty, control
    characters as escapes."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return visible(value)


def summary_lines(data: ReportData) -> list[str]:
    """The short text of what changed since the previous period (news quotes event strings:
    shown visible)."""
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
    return lines + [visible(line) for line in data.news]


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    """Aligned columns, each at most 90 characters wide; `(none)` for no rows."""
    columns = [visible(c) for c in columns]
    cells = [[cell(v) for v in row] for row in rows]
    widths = [min(90, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(columns)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), file=out)
    for row in cells:
        print("  " + "  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)), file=out)
    if not cells:
        print("  (none)", file=out)


def print_tables(data: ReportData, out: TextIO = sys.stdout) -> None:
    """The key tables in the terminal."""
    print(f"Dropbox team activity: {data.period.label()}", file=out)
    print(
        f"compared with {data.previous.label()}; latest event {cell(data.latest_event)}", file=out
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


def report_text(data: ReportData) -> str:
    """The terminal tables as one string (logs of the report DAG)."""
    buffer = io.StringIO()
    print_tables(data, buffer)
    return buffer.getvalue()
