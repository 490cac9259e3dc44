"""team_registry: the teams Variable in both forms, every malformed value refused with the fix,
and the deployment reading it through Airflow's Variables (environment-variable backend)."""

from __future__ import annotations

import json

import pytest

from dropbox_team_log import deployment, team_registry
from dropbox_team_log.team_registry import RegistryError, Team

NOW = "2026-12-06T22:00:00Z"
LATER = "2026-12-07T01:15:00Z"


def test_absent_or_empty_is_the_implicit_default_team():
    for raw in (None, "", "  \n", "[]"):
        (team,) = team_registry.parse(raw, "dropbox_team_default")
        assert team == Team(conn_id="dropbox_team_default", implicit=True)
        assert not team.needs_backfill  # today's deployments start nothing by themselves
        assert team_registry.dump([team]) == "[]"


def test_ids_and_objects_mix_and_unknown_keys_survive_a_round_trip():
    raw = json.dumps(
        [
            "acme",
            {"conn_id": "globex", "paused": True, "note": "EU subsidiary"},
            {"conn_id": "initech.eu-1", "added_at": NOW, "backfill_triggered_at": LATER},
            {"conn_id": "hooli", "backfill_days": 7, "connected_at": NOW},
        ]
    )
    teams = team_registry.parse(raw, "unused")
    assert [(t.conn_id, t.paused, t.needs_backfill) for t in teams] == [
        ("acme", False, True),
        ("globex", True, False),
        ("initech.eu-1", False, False),
        ("hooli", False, True),
    ]
    assert teams[3].backfill_days == 7 and teams[3].connected_at == NOW
    assert teams[1].other == {"note": "EU subsidiary"}
    assert team_registry.parse(team_registry.dump(teams), "unused") == teams
    assert [t.conn_id for t in team_registry.active(teams)] == ["acme", "initech.eu-1", "hooli"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("acme", "is not JSON"),
        ('{"conn_id": "acme"}', "must be a JSON list"),
        ("[42]", "item 1 is a int"),
        ('["acme", {"paused": true}]', 'item 2 has no "conn_id"'),
        ('[{"conn_id": "acme", "paused": "no"}]', '"paused" must be true or false'),
        ('[{"conn_id": "acme", "added_at": 5}]', '"added_at" must be a string'),
        ('[{"conn_id": "acme", "connected_at": 5}]', '"connected_at" must be a string'),
        ('[{"conn_id": "acme", "backfill_days": 0}]', '"backfill_days" must be a whole number'),
        ('[{"conn_id": "acme", "backfill_days": 366}]', "from 1 to 365"),
        ('[{"conn_id": "acme", "backfill_days": "7"}]', "not '7'"),
        ('[{"conn_id": "acme", "backfill_days": true}]', "not True"),
        ('["acme", {"conn_id": "acme"}]', "lists connection 'acme' twice"),
        ('["../etc"]', "is not usable"),
        ('["a b"]', "is not usable"),
        ('[".hidden"]', "is not usable"),
        ('[""]', "is not usable"),
        ('["x/y"]', "is not usable"),
    ],
)
def test_malformed_values_say_what_to_fix(raw, message):
    with pytest.raises(RegistryError, match="dropbox_team_log_teams") as caught:
        team_registry.parse(raw, "dropbox_team_default")
    assert message in str(caught.value)


def test_add_is_idempotent_and_pause_resume_remove_edit_one_team():
    teams = team_registry.parse(None, "dropbox_team_default")
    teams = team_registry.add(teams, "acme", now=NOW, connected_at=NOW)
    assert team_registry.add(teams, "acme", now=LATER) == teams  # idempotent, added_at kept
    # Adding again refreshes only the copy of connected_at (a reconnect moved it).
    (moved,) = team_registry.add(teams, "acme", now=LATER, connected_at=LATER)
    assert (moved.added_at, moved.connected_at) == (NOW, LATER)
    assert [t.conn_id for t in teams] == ["acme"]  # the implicit default is not written
    teams = team_registry.add(teams, "globex", now=LATER, backfill=False)
    assert teams[1].backfill_triggered_at == team_registry.NO_BACKFILL
    assert not teams[1].needs_backfill

    paused = team_registry.set_paused(teams, "acme", True)
    assert [t.paused for t in paused] == [True, False]
    assert team_registry.set_paused(paused, "acme", False) == teams
    assert [t.conn_id for t in team_registry.remove(teams, "acme")] == ["globex"]
    with pytest.raises(RegistryError, match=r"'initech' is not registered .*acme, globex"):
        team_registry.remove(teams, "initech")
    with pytest.raises(RegistryError, match="is not usable"):
        team_registry.add(teams, "bad id", now=NOW)
    with pytest.raises(RegistryError, match="from 1 to 365"):
        team_registry.add(teams, "initech", now=NOW, backfill_days=400)
    (hooli,) = team_registry.add([], "hooli", now=NOW, backfill_days=7)
    assert hooli.to_json()["backfill_days"] == 7


def test_marking_backfills_and_their_run_ids():
    teams = team_registry.add([], "acme", now=NOW)
    teams = team_registry.add(teams, "globex", now=NOW)
    marked = team_registry.mark_backfill_triggered(teams, {"acme", "gone"}, LATER)
    assert [t.backfill_triggered_at for t in marked] == [LATER, None]
    assert team_registry.backfill_run_id(teams[0]) == "team_backfill__acme__20261206220000"
    assert team_registry.backfill_run_id(Team("acme")) == "team_backfill__acme"
    # Re-registering after a removal is a new registration: a new run id, a new backfill.
    again = team_registry.add(team_registry.remove(teams, "acme"), "acme", now=LATER)
    assert team_registry.backfill_run_id(again[-1]) != team_registry.backfill_run_id(teams[0])


def test_a_tools_note_is_kept_with_its_team_and_survives_a_round_trip():
    teams = team_registry.add(team_registry.add([], "acme", now=NOW), "globex", now=NOW)
    note = {"at": LATER, "ok": False, "message": "revoked"}
    noted = team_registry.set_note(teams, "globex", "last_test", note)
    assert [t.other for t in noted] == [{}, {"last_test": note}]
    assert team_registry.parse(team_registry.dump(noted), "x") == noted
    with pytest.raises(RegistryError, match="'initech' is not registered"):
        team_registry.set_note(teams, "initech", "last_test", note)
    with pytest.raises(ValueError, match="paused is a registry field"):
        team_registry.set_note(teams, "acme", "paused", True)


def test_the_deployment_reads_the_variable_from_any_secrets_backend(monkeypatch, airflow_db):
    monkeypatch.delenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_CONN_ID", "legacy_team")
    (team,) = deployment.registered_teams()
    assert (team.conn_id, team.implicit) == ("legacy_team", True)

    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", '["legacy_team", "acme"]')
    assert [t.conn_id for t in deployment.registered_teams()] == ["legacy_team", "acme"]
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", "[acme]")
    with pytest.raises(RegistryError, match="is not JSON"):
        deployment.registered_teams()


def test_the_default_team_keeps_unprefixed_files_every_other_is_keyed_by_its_conn_id():
    assert deployment.team_key("dflt", "dflt") is None
    assert deployment.team_key("acme.eu-1", "dflt") == "acme.eu-1"
    with pytest.raises(RegistryError):
        deployment.team_key("../escape", "dflt")
