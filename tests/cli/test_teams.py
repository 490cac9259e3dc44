"""`dropbox-team-log teams`: the registry edited in the real metadata DB, read back the way the
DAGs read it; connections from the environment-variable backend (no listing needed)."""

from __future__ import annotations

import json

import pytest

from dropbox_team_log import deployment, team_registry
from dropbox_team_log.cli import main as cli
from dropbox_team_log.cli.connection_store import load_variable
from tests.helpers.connecting import delete_variable

TEAMS = "dropbox_team_log_teams"


def env_connection(monkeypatch, conn_id: str, **extra: str) -> None:
    """A Dropbox Team connection defined only in the environment (no DB row to list)."""
    value = {
        "conn_type": "dropbox_team",
        "login": "app-key",
        "password": "app-secret-123",
        "extra": extra,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))


@pytest.fixture
def registry(airflow_db, monkeypatch):
    """An empty registry and default connection; the Variable row removed afterwards."""
    for name in ("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", "AIRFLOW_VAR_DROPBOX_TEAM_LOG_CONN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", raising=False)
    delete_variable(TEAMS)
    yield
    delete_variable(TEAMS)


def stored() -> list[dict]:
    return json.loads(load_variable(TEAMS)[1] or "[]")


def teams(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["teams", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def table(out: str) -> list[str]:
    """The lines of `teams list` from its header on (Airflow's own log lines may precede it:
    in this test process Airflow was imported before the CLI could quiet it)."""
    lines = out.splitlines()
    return next(lines[i:] for i, line in enumerate(lines) if line.startswith("CONN_ID "))


def test_add_pause_resume_remove_round_trip_through_the_db(registry, monkeypatch, capsys):
    env_connection(monkeypatch, "acme", connected_at="2026-11-20T10:30:15Z", team_name="Acme")
    rc, out, _ = teams(capsys, "add", "acme")
    assert rc == 0
    assert "Registered team 'acme'" in out
    assert "within one schedule interval" in out
    assert 'airflow dags trigger dropbox_team_log_backfill --conf \'{"conn_id": "acme"}\'' in out
    (entry,) = stored()
    assert entry["conn_id"] == "acme" and entry["paused"] is False and entry["added_at"]
    assert "backfill_triggered_at" not in entry
    assert entry["connected_at"] == "2026-11-20T10:30:15Z"  # the plan's copy: no lookup

    assert "Team 'acme' is registered already." in teams(capsys, "add", "acme")[1]
    assert stored() == [entry]
    # The connection's connected_at moved (a reconnect with --reset-connected-at): the copy
    # follows on the next `add` (connect runs the same), nothing else changes.
    env_connection(monkeypatch, "acme", connected_at="2026-12-01T00:00:00Z", team_name="Acme")
    assert teams(capsys, "add", "acme")[0] == 0
    assert stored() == [{**entry, "connected_at": "2026-12-01T00:00:00Z"}]
    env_connection(monkeypatch, "acme", connected_at="2026-11-20T10:30:15Z", team_name="Acme")
    teams(capsys, "add", "acme")

    rc, out, _ = teams(capsys, "add", "globex", "--no-backfill")
    assert rc == 0 and "WARNING: no connection 'globex' exists yet" in out
    assert "backfill starts" not in out

    assert teams(capsys, "pause", "acme")[0] == 0
    # The DAGs' view (Airflow's Variable lookup, reading the DB as a server process does)
    # agrees with what the CLI wrote.
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    seen = deployment.registered_teams()
    assert [(t.conn_id, t.paused) for t in seen] == [("acme", True), ("globex", False)]
    assert [t.conn_id for t in team_registry.active(seen)] == ["globex"]
    monkeypatch.delenv("_AIRFLOW_PROCESS_CONTEXT")

    rc, out, _ = teams(capsys, "list")
    assert rc == 0
    header, acme, globex = table(out)[:3]
    assert header.split() == ["CONN_ID", "PAUSED", "CONNECTED_AT", "TEAM", "BACKFILL"]
    assert acme.split() == ["acme", "yes", "2026-11-20T10:30:15Z", "Acme", "pending"]
    assert globex.split()[:2] == ["globex", "no"] and "(no such connection)" in globex
    assert globex.split()[-1] == "never"

    assert teams(capsys, "resume", "acme")[0] == 0
    assert [e["paused"] for e in stored()] == [False, False]
    rc, out, _ = teams(capsys, "remove", "globex")
    assert rc == 0 and "its data and connection are kept" in out
    assert [e["conn_id"] for e in stored()] == ["acme"]
    rc, out, _ = teams(capsys, "remove", "acme")
    assert "the DAGs read the default connection 'dropbox_team_default'" in out
    assert stored() == []


def test_the_first_added_team_keeps_the_existing_default_one(registry, monkeypatch, capsys):
    """A deployment from before the registry collects the default connection: registering a
    second team must not silently stop it, nor start a second backfill of it."""
    env_connection(monkeypatch, "dropbox_team_default", connected_at="2026-01-01T00:00:00Z")
    assert teams(capsys, "add", "acme")[0] == 0
    assert [(e["conn_id"], e.get("backfill_triggered_at")) for e in stored()] == [
        ("dropbox_team_default", "never"),
        ("acme", None),
    ]


def test_without_a_registry_list_shows_the_default_and_says_so(registry, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_CONN_ID", "legacy")
    rc, out, _ = teams(capsys)  # `teams` alone lists
    assert rc == 0
    assert table(out)[1].split()[:2] == ["legacy", "no"]
    assert "is not set: the DAGs collect the default connection" in out


def test_a_hostile_team_name_is_shown_as_its_characters(registry, monkeypatch, capsys):
    env_connection(monkeypatch, "acme", team_name="Acme\x1b[2J\u202eevil\r\nforged row")
    teams(capsys, "add", "acme")
    rc, out, _ = teams(capsys, "list")
    assert rc == 0
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    assert "Acme\\u001b[2J\\u202eevil\\u000d\\u000aforged row" in out
    assert len(table(out)) == 2  # the header and one row: no forged line


def test_errors_say_what_to_fix(registry, monkeypatch, capsys):
    rc, _, err = teams(capsys, "pause", "nope")
    assert rc == 1 and "'nope' is not registered" in err and "teams add nope" in err
    rc, _, err = teams(capsys, "add", "bad/id")
    assert rc == 1 and "is not usable" in err
    rc, _, err = teams(capsys, "add", "acme", "--backfill-days", "0")
    assert rc == 1 and '"backfill_days" must be a whole number from 1 to 365' in err
    assert stored() == []

    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", "not json")
    rc, _, err = teams(capsys, "list")
    assert rc == 1 and "Variable dropbox_team_log_teams is not JSON" in err

    # Defined in another secrets backend, which wins: edits in the DB would be invisible.
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", '["acme"]')
    rc, _, err = teams(capsys, "add", "globex")
    assert rc == 1 and "set outside the metadata DB" in err and "edit it there" in err
    assert load_variable(TEAMS)[1] is None
    assert teams(capsys, "add", "acme")[0] == 0  # registered there already: nothing to write
