"""Terminal tables and the summary: a value from an event never steers the terminal.

`print_rows` backs `query`'s table format, the `report` command's output and the report task's
log; a value with CR/LF, escape sequences or a bidi override must stay inside its cell.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

from dropbox_team_log.analytics.period import Period
from dropbox_team_log.analytics.report_data import ReportData
from dropbox_team_log.analytics.text import cell, print_rows, summary_lines
from tests.helpers.hostile_data import CONTROLS, STEERING


def test_a_hostile_cell_stays_in_its_row():
    out = io.StringIO()
    rows = [(f"/x{CONTROLS}", 1), ("/plain", 2)]
    print_rows(["path", f"n{CONTROLS}"], rows, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # the header and one line per row: no forged row
    assert not [c for c in STEERING if c in out.getvalue().replace("\n", "")]
    assert lines[1].startswith("  /x\\u001b]0;pwned\\u0007\\u001b[2J")
    assert lines[2].split() == ["/plain", "2"]


def test_cells_show_times_in_utc_and_controls_as_escapes():
    assert cell(None) == ""
    assert cell(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02 03:04:05Z"
    assert cell("a\x1b[2Jb") == "a\\u001b[2Jb"


def test_news_quoting_event_strings_is_shown_visibly():
    period = Period(date(2026, 1, 8), date(2026, 1, 14))
    data = ReportData(
        root="/data",
        period=period,
        previous=period.previous(),
        generated_at=datetime(2026, 1, 15, tzinfo=UTC),
        latest_event=None,
        news=[f"New admins acting: admin@{CONTROLS}."],
    )
    lines = summary_lines(data)
    assert lines[-1].startswith("New admins acting: admin@\\u001b]0;pwned")
    assert not [c for line in lines for c in STEERING if c in line]
