"""tasks.report_task: a one-team report lands beside the every-team report, never over it, and
the team id never makes a path of its own."""

from __future__ import annotations

import pytest

from dropbox_team_log.tasks.report_task import team_report_path


@pytest.mark.parametrize(
    ("path", "team_id", "want"),
    [
        ("/d/_reports/r.html", "dbtid:AAb-1", "/d/_reports/r.dbtid_AAb-1.html"),
        ("s3://b/p/_reports/r.html", "dbtid:x", "s3://b/p/_reports/r.dbtid_x.html"),
        ("/d/report", "dbtid:x", "/d/report.dbtid_x"),
        ("/d.v2/report", "dbtid:x", "/d.v2/report.dbtid_x"),
        ("/d/r.html", "../../etc/passwd", "/d/r._.._etc_passwd.html"),  # one name, no slash
    ],
)
def test_a_team_s_report_goes_beside_the_report(path, team_id, want):
    assert team_report_path(path, team_id) == want
