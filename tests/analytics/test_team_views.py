"""The views over a dataset of several teams: every team's rows once, named from the teams'
cards; one team on request (`team=`, `--team`), the others out of every view; the report of one
team. Rows are written through EventDataset(team=) exactly as the sync writes them."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from dropbox_team_log.analytics import views as query
from dropbox_team_log.analytics.period import resolve_period
from dropbox_team_log.analytics.report import build
from dropbox_team_log.cli import main as cli
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.dataset.team_info import TeamInfo, TeamInfoStore
from dropbox_team_log.timeutil import to_wire
from dropbox_team_log.transform.events import events_to_batch
from tests.dataset.test_store import DAY, HI, LO, TEMPLATES

TEAMS = {  # conn id: (key of its files, team id, team name, events)
    "dropbox_team_default": (None, "dbtid:default", "Default Co", 30),
    "acme": ("acme", "dbtid:acme", "Acme 'Corp'", 12),
}


def write_team(root: str, key: str | None, team_id: str, n: int) -> None:
    events = []
    for i in range(n):
        event = dict(TEMPLATES[i % len(TEMPLATES)])
        event["timestamp"] = to_wire(LO + 600 * i)
        events.append(event)
    batch = events_to_batch(events, team_id=team_id, ingested_at=datetime.now(UTC))
    EventDataset(root, team=key).write_day(DAY, [(LO, HI)], [batch], fetched_at=HI)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("teams") / "dataset")
    for conn_id, (key, team_id, name, n) in TEAMS.items():
        write_team(root, key, team_id, n)
        TeamInfoStore(root).save(TeamInfo(conn_id, team_id, name, key))
    return root


def counts(con, sql: str) -> Counter:
    return Counter(dict(con.execute(sql).fetchall()))


def test_the_views_span_every_team_once_and_name_it(root):
    con = query.connect(root)
    try:
        assert counts(con, "SELECT team_name, count(*) FROM events GROUP BY 1") == {
            name: n for _, _, name, n in TEAMS.values()
        }
        teams = con.execute(
            "SELECT conn_id, team_id, team_name, files, events FROM teams"
        ).fetchall()
        assert teams == [
            ("acme", "dbtid:acme", "Acme 'Corp'", "acme.events-HH.parquet", 12),
            ("dropbox_team_default", "dbtid:default", "Default Co", "events-HH.parquet", 30),
        ]
        total = con.execute("SELECT count(*) FROM sign_ins").fetchall()[0][0]
    finally:
        con.close()
    per_team = 0
    for name in ("dropbox_team_default", "dbtid:acme"):  # a conn id, a team id
        con = query.connect(root, team=name)
        per_team += con.execute("SELECT count(*) FROM sign_ins").fetchall()[0][0]
        con.close()
    assert per_team == total  # the views of the teams add up to the view of all


@pytest.mark.parametrize("name", ["acme", "dbtid:acme", "Acme 'Corp'"])
def test_one_team_by_conn_id_team_id_or_name(root, name):
    con = query.connect(root, team=name)
    try:
        assert counts(con, "SELECT team_id, count(*) FROM events GROUP BY 1") == {"dbtid:acme": 12}
        for view in ("unauthenticated_access", "external_sharing", "sign_ins", "admin_actions"):
            sql = "SELECT DISTINCT team_id, team_name FROM " + view  # ruff: ignore[hardcoded-sql-expression]
            seen = con.execute(sql).fetchall()
            assert seen in ([], [("dbtid:acme", "Acme 'Corp'")]), view
    finally:
        con.close()


def test_an_unknown_team_is_refused_with_the_known_ones(root):
    with pytest.raises(ValueError, match=r"no team 'nope'.*acme \(Acme 'Corp'\)"):
        query.connect(root, team="nope")


def test_a_dataset_without_cards_reads_as_before(tmp_path):
    root = str(tmp_path / "old")
    write_team(root, None, "dbtid:old", 5)
    con = query.connect(root)
    try:
        assert con.execute(
            "SELECT team_id, team_name, count(*) FROM events GROUP BY ALL"
        ).fetchall() == [("dbtid:old", None, 5)]
        assert con.execute("SELECT conn_id, team_id, events FROM teams").fetchall() == [
            (None, "dbtid:old", 5)
        ]
    finally:
        con.close()
    con = query.connect(root, team="dbtid:old")  # a team id needs no card
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(5,)]
    con.close()


def test_query_and_report_take_a_team(root, capsys, tmp_path):
    sql = "SELECT team_id, count(*) AS n FROM events GROUP BY 1"
    assert cli.main(["query", "--root", root, "--team", "acme", "--format", "json", sql]) == 0
    assert json.loads(capsys.readouterr().out) == {"team_id": "dbtid:acme", "n": 12}
    assert cli.main(["query", "--root", root, "--team", "nope", sql]) == 2
    assert "no team 'nope'" in capsys.readouterr().err

    period = resolve_period(DAY, DAY)
    everyone, acme = build(root, period), build(root, period, "acme")
    events = {d.team_id: {m.name: m.current for m in d.metrics}["events"] for d in (everyone, acme)}
    assert events == {None: 42, "dbtid:acme": 12}
    assert "one team only" in acme.news[0] and "dbtid:acme" in acme.news[0]
    out = tmp_path / "acme.html"
    args = ["report", "--root", root, "--team", "acme", "--quiet", "--out", str(out)]
    assert cli.main([*args, "--start", str(DAY), "--end", str(DAY)]) == 0
    assert out.exists()
