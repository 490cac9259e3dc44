"""A team's persistent failure alerts once, then stays quiet until the team succeeds again.

Real incremental runs (dag.test) against one emulator serving two teams over HTTP, the alert
connection pointing at a loopback webhook, the state in the metadata DB's Variable: a revoked
team's several failed tasks send one alert in the first run and none in the second, while a
team whose connection is missing alerts once on its own and the healthy team never alerts;
reconnected, the revoked team sends one "recovered" message. The claim protocol itself is also
run from concurrent threads over a store that takes time to answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta

import pytest

from dropbox_team_log.cli.connection_store import load_variable, save_variable
from dropbox_team_log.notifications.alert_state import AlertState
from dropbox_team_log.settings import ALERT_STATE_VARIABLE, TEAMS_VARIABLE
from tests.e2e.webhook import WebhookReceiver
from tests.helpers.connecting import delete_variable
from tests.helpers.pipeline import connection_json, fresh_dag, utc

T0 = utc(2026, 11, 20, 10, 30, 15)
HEALTHY, REVOKED, GONE = "dropbox_team_default", "team_r", "team_gone"
INCREMENTAL = "dropbox_team_log_incremental"


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=11,
        clock=T0,
        timeline_start=T0 - timedelta(days=3),
        timeline_end=T0 + timedelta(days=2),
        teams=[{"events_per_day": 30}, {"events_per_day": 20}],
        page_size=50,
    ) as emu:
        yield emu


@pytest.fixture
def deployment(emu, airflow_db, tmp_path, monkeypatch):
    """Two connected teams and a registered one without connection; alerts to a webhook."""
    for n, conn_id in enumerate((HEALTHY, REVOKED)):
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(emu, connected_at=T0, team=n)
        )
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(tmp_path / "dataset"))
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):
        delete_variable(key)
    save_variable(TEAMS_VARIABLE, json.dumps([HEALTHY, REVOKED, GONE]), "test")
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(
            "AIRFLOW_CONN_DROPBOX_TEAM_LOG_ALERTS",
            json.dumps({"conn_type": "http", "host": receiver.url}),
        )
        yield receiver
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):
        delete_variable(key)


def run(emu, at):
    emu.set_clock(at)
    return fresh_dag(INCREMENTAL).test(logical_date=at)


def failed_tasks(dag_run, conn_id: str) -> list[str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        return [
            f"{ti.task_id}[{ti.rendered_map_index}]"
            for ti in tis
            if ti.state == "failed" and (ti.rendered_map_index or "").split(" ")[0] == conn_id
        ]


def stored_state() -> dict:
    """The teams whose alert state holds something, from their Variables."""
    from airflow.models.variable import Variable
    from sqlalchemy import select

    from dropbox_team_log.cli.connection_store import db_session

    prefix = f"{ALERT_STATE_VARIABLE}."
    with db_session() as session:
        keys = session.scalars(select(Variable.key).where(Variable.key.startswith(prefix))).all()
    states = {key[len(prefix) :]: json.loads(load_variable(key)[1]) for key in keys}
    return {conn_id: state for conn_id, state in states.items() if state}


def test_a_revoked_team_alerts_once_then_recovers(emu, deployment, monkeypatch, caplog):
    receiver = deployment
    assert emu.revoke_refresh_tokens(team=emu.teams()[1]["team_id"]) == "team"

    with caplog.at_level(logging.WARNING):
        first = run(emu, T0 + timedelta(minutes=15))
    assert first.state == "failed"
    assert len(failed_tasks(first, REVOKED)) >= 2  # its tail and its day tasks all failed
    by_team = {m["team"]: m for m in receiver.received}
    assert len(receiver.received) == 2 and set(by_team) == {REVOKED, GONE}
    assert by_team[REVOKED]["kind"] == "RefreshTokenRevokedError"
    assert by_team[REVOKED]["status"] == "failing"
    assert "connect --conn-id team_r" in by_team[REVOKED]["text"]
    assert "alerted once" in by_team[REVOKED]["text"]
    assert by_team[GONE]["kind"] == "ConnectionMissing"
    assert set(stored_state()) == {REVOKED, GONE}
    repeats = [r for r in caplog.records if r.getMessage().startswith("REPEAT")]
    assert len(repeats) == len(failed_tasks(first, REVOKED)) + len(failed_tasks(first, GONE)) - 2

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        second = run(emu, T0 + timedelta(minutes=30))
    assert second.state == "failed" and failed_tasks(second, REVOKED)
    assert len(receiver.received) == 2  # nothing new: both teams already alerted
    assert not [r for r in caplog.records if r.getMessage().startswith("ALERT")]

    # The admin reconnects the revoked team (a new grant): its next run recovers it, once.
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{REVOKED.upper()}", connection_json(emu, connected_at=T0, team=1)
    )
    third = run(emu, T0 + timedelta(minutes=45))
    assert not failed_tasks(third, REVOKED) and failed_tasks(third, GONE)
    (recovered,) = receiver.received[2:]
    assert recovered["status"] == "recovered" and recovered["team"] == REVOKED
    assert recovered["kinds"] == ["RefreshTokenRevokedError"]
    assert "team 'team_r' recovered" in recovered["text"]
    assert set(stored_state()) == {GONE}  # the missing connection still alerted, still quiet
    assert HEALTHY not in {m["team"] for m in receiver.received}

    # Revoked again: a new failure, so a new alert.
    emu.revoke_refresh_tokens(team=emu.teams()[1]["team_id"])
    run(emu, T0 + timedelta(hours=1))
    (again,) = receiver.received[3:]
    assert again["team"] == REVOKED and again["status"] == "failing"


def test_a_state_kept_in_the_earlier_shared_variable_still_counts(emu, deployment, caplog):
    """A team alerted by a version that kept every team in one Variable is not alerted again
    for the same failure; a team without an entry there alerts as usual."""
    receiver = deployment
    # the team the earlier state names, and one without an entry there (no healthy team needed)
    save_variable(TEAMS_VARIABLE, json.dumps([REVOKED, GONE]), "test")
    shared = {REVOKED: {"RefreshTokenRevokedError": {"since": "2026-11-20T10:00:00Z", "by": "x"}}}
    save_variable(ALERT_STATE_VARIABLE, json.dumps(shared), "an earlier version's state")
    emu.revoke_refresh_tokens(team=emu.teams()[1]["team_id"])
    with caplog.at_level(logging.WARNING):
        first = run(emu, T0 + timedelta(hours=2))
    assert first.state == "failed" and failed_tasks(first, REVOKED)
    assert [m["team"] for m in receiver.received] == [GONE]
    repeats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REPEAT")]
    assert any("team_r" in r for r in repeats)


class SlowStore:
    """A state store that answers after a delay, as a remote metadata DB does."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.raw = "{}"
        self.lock = threading.Lock()

    def read(self) -> dict:
        time.sleep(self.delay)
        with self.lock:
            return json.loads(self.raw)

    def write(self, state: dict) -> None:
        time.sleep(self.delay)
        with self.lock:
            self.raw = json.dumps(state)


def test_tasks_failing_at_once_claim_one_alert_and_keep_each_team():
    stores = {conn_id: SlowStore(delay=0.01) for conn_id in ("a", "b")}
    state = AlertState(stores.__getitem__, settle=0.2)
    sent: list[tuple[str, str]] = []

    def fail(conn_id: str, n: int) -> None:
        if state.failed(conn_id, "RefreshTokenRevokedError", f"{conn_id}/{n}", {}):
            sent.append((conn_id, f"{n}"))

    threads = [threading.Thread(target=fail, args=(c, n)) for c in ("a", "b") for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c for c, _ in sent) == ["a", "b"]  # one alert per team, neither lost
    assert all(store.read() for store in stores.values())

    done = []
    threads = [
        threading.Thread(target=lambda n=n: done.append(state.succeeded("a", f"ok/{n}")))
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([d for d in done if d]) == 1
    assert not stores["a"].read() and stores["b"].read()
