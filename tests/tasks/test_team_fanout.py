"""The incremental DAG over several registered teams, run for real (dag.test) against one
emulator serving three teams over HTTP: tasks named "<conn_id> <day>", each team exact against
its own truth in its own dataset, a revoked team failing alone (its alert naming it), a paused
team left alone, and a newly registered team's backfill started once, by the DAG itself.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from dropbox_team_log.cli.connection_store import load_variable, save_variable
from dropbox_team_log.settings import ALERT_STATE_VARIABLE, TEAMS_VARIABLE
from tests.helpers.connecting import delete_variable
from tests.helpers.pipeline import connection_json, dataset_raws, fresh_dag, multiset, utc

T0 = utc(2026, 11, 20, 10, 30, 15)  # every team connected then
SETTLE = timedelta(hours=25)
HORIZON = timedelta(days=2)
CONN_IDS = ["dropbox_team_default", "team_b", "team_c"]  # team_c gets revoked


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=7,
        clock=T0,
        timeline_start=T0 - timedelta(days=62),
        timeline_end=T0 + timedelta(days=4),
        teams=[{"events_per_day": 150}, {"events_per_day": 40}, {"events_per_day": 20}],
        page_size=40,
        duplicate_rate=0.02,
        late_rate=0.3,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def connected(emu, airflow_db):
    """Three connections (environment backend), one per emulated team."""
    mp = pytest.MonkeyPatch()
    team_ids = [t["team_id"] for t in emu.teams()]
    for n, conn_id in enumerate(CONN_IDS):
        mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(emu, connected_at=T0, team=n))
    yield team_ids
    mp.undo()


@pytest.fixture
def root(tmp_path, monkeypatch, connected):
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(tmp_path / "dataset"))
    monkeypatch.delenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", raising=False)
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):  # no team alerted by an earlier test
        delete_variable(key)
    yield tmp_path / "dataset"
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):
        delete_variable(key)


def register(*entries) -> None:
    """The registry in the metadata DB, as `connect` / `teams` write it."""
    save_variable(TEAMS_VARIABLE, json.dumps(list(entries)), "test")


def run(emu, dag_id: str, at, conf=None):
    emu.set_clock(at)
    return fresh_dag(dag_id).test(logical_date=at, run_conf=conf)


def task_states(run, task_id: str) -> dict[str, str]:
    """Label ("<conn_id> <day>") -> state of each mapped task of `task_id` in the run."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(
            dag_id=run.dag_id, run_id=run.run_id, task_id=task_id
        )
        return {ti.rendered_map_index or str(ti.map_index): ti.state for ti in tis}


def check_exact(root, emu, team_id, lo, hi, as_of):
    got = multiset(dataset_raws(str(root), lo, hi, team_id))
    want = multiset(emu.truth(lo, hi, as_of=as_of, team=team_id))
    assert sum(want.values()) > 0
    assert got == want, f"{team_id}: {sum(got.values())} rows, truth {sum(want.values())}"


def test_each_team_syncs_alone_and_a_revoked_one_fails_alone(emu, root, connected, caplog):
    register(
        "dropbox_team_default",
        {"conn_id": "team_b"},
        "team_c",
        {"conn_id": "x", "paused": True},
        "team_gone",  # registered, but its connection was deleted
    )
    assert emu.revoke_refresh_tokens(team=connected[2]) == "team"
    late = T0 + timedelta(hours=13)  # settles T0-25h..T0-12h; its days are still the first's
    with caplog.at_level(logging.ERROR):
        first = run(emu, "dropbox_team_log_incremental", T0 + timedelta(minutes=15))
        second = run(emu, "dropbox_team_log_incremental", late)
    assert first.state == second.state == "failed"  # team_c's tasks, and only those

    # each team's tail polled on its own: the revoked and the missing one fail alone
    assert task_states(second, "tail") == {
        "dropbox_team_default": "success",
        "team_b": "success",
        "team_c": "failed",
        "team_gone": "failed",
    }
    states = task_states(second, "sync_day")
    by_team: dict[str, set[str]] = {}
    for label, state in states.items():
        conn_id, day = label.split(" ")
        assert day.startswith("2026-11-") or label == "team_gone setup", label
        by_team.setdefault(conn_id, set()).add(state)
    assert by_team == {
        "dropbox_team_default": {"success"},
        "team_b": {"success"},
        "team_c": {"failed"},
        "team_gone": {"failed"},  # one task, saying what to do
    }  # the paused team "x" (no connection at all) was never planned
    # Round robin: the first tasks are one per team, not team A's whole list first.
    labels = [label for _, label in sorted((int(k), v) for k, v in _by_index(second).items())]
    assert [label.split(" ")[0] for label in labels[:4]] == [*CONN_IDS, "team_gone"]

    alerts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT")]
    revoked = [a for a in alerts if "sync_day[team_c 2026-11-" in a or "tail[team_c]" in a]
    gone = [a for a in alerts if "sync_day[team_gone setup]" in a or "tail[team_gone]" in a]
    # one alert per failing team over both runs: its first failed task (the tail); the rest
    # of its failed tasks log a REPEAT warning (notifications/alert_state.py)
    assert len(revoked) == len(gone) == 1 and len(alerts) == 2
    assert "tail[team_c]" in revoked[0]  # each team's tail polled on its own
    assert all("connect --conn-id team_c" in a for a in revoked)
    assert all("'team_gone' does not exist" in a for a in gone)

    # Each team exact against its own truth, in the one dataset readers glob: the default
    # team's files unprefixed, team_b's named team_b.events-HH.parquet, none of team_c's.
    lo, hi = T0 - SETTLE, late - SETTLE
    check_exact(root, emu, connected[0], lo, hi, as_of=late + HORIZON)
    check_exact(root, emu, connected[1], lo, hi, as_of=late + HORIZON)
    names = {p.name for p in root.glob("event_date=*/*.parquet")}
    assert {n for n in names if n.startswith("events-")} and not {n for n in names if "team_c" in n}
    assert {n.split(".")[0] for n in names if not n.startswith("events")} == {"team_b"}
    assert multiset(dataset_raws(str(root), lo, hi)) == multiset(
        dataset_raws(str(root), lo, hi, connected[0])
    ) + multiset(dataset_raws(str(root), lo, hi, connected[1]))  # no third team's rows


def _by_index(run) -> dict[str, str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(
            dag_id=run.dag_id, run_id=run.run_id, task_id="sync_day"
        )
        return {str(ti.map_index): ti.rendered_map_index for ti in tis}


def test_a_new_team_s_backfill_starts_once_by_itself(emu, root, connected):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    def backfill_runs() -> dict[str, dict]:
        with create_session() as session:
            runs = session.query(DagRun).filter_by(dag_id="dropbox_team_log_backfill")
            return {r.run_id: r.conf for r in runs}

    before = backfill_runs()
    register(
        {"conn_id": "dropbox_team_default", "backfill_triggered_at": "never"},
        {"conn_id": "team_b", "added_at": "2026-11-20T10:30:15Z", "backfill_days": 2},
    )
    at = T0 + timedelta(minutes=15)
    assert run(emu, "dropbox_team_log_incremental", at).state == "success"
    started = {k: v for k, v in backfill_runs().items() if k not in before}
    conf = {"conn_id": "team_b", "days": 2}
    assert started == {"team_backfill__team_b__20261120103015": conf}
    entries = {e["conn_id"]: e for e in json.loads(load_variable(TEAMS_VARIABLE)[1])}
    assert entries["team_b"]["backfill_triggered_at"] == "2026-11-20T10:45:15Z"
    assert entries["dropbox_team_default"]["backfill_triggered_at"] == "never"

    # The next run starts nothing; nor would a lost record (the run id exists: skipped).
    second = run(emu, "dropbox_team_log_incremental", at + timedelta(minutes=15))
    assert second.state == "success"
    assert task_states(second, "start_backfill") in ({}, {"-1": "skipped"})
    register({"conn_id": "team_b", "added_at": "2026-11-20T10:30:15Z"})  # the record lost
    third = run(emu, "dropbox_team_log_incremental", at + timedelta(minutes=30))
    assert third.state == "success"
    assert set(task_states(third, "start_backfill").values()) == {"skipped"}
    assert backfill_runs() == {**before, **started}

    # The started backfill, run as the scheduler would (its conf), fills team_b's 2 days.
    assert run(emu, "dropbox_team_log_backfill", at, conf).state == "success"
    check_exact(root, emu, connected[1], T0 - timedelta(days=2), T0, as_of=at)


def test_the_registry_s_copy_of_connected_at_spares_the_plan_and_is_checked(emu, root, connected):
    """With each team's connected_at copied in the registry (as connect writes it) the plan
    reads no connection; a copy that no longer matches fails that team's tasks, saying how to
    refresh it, and the other team syncs."""
    wire = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    register(
        {"conn_id": "dropbox_team_default", "connected_at": wire},
        {"conn_id": "team_b", "connected_at": "2026-11-01T00:00:00Z"},  # stale
    )
    at = T0 + timedelta(hours=3)
    result = run(emu, "dropbox_team_log_incremental", at)
    assert result.state == "failed"
    states = task_states(result, "sync_day")
    assert {s for label, s in states.items() if label.startswith("dropbox_team_default ")} == {
        "success"
    }
    assert {s for label, s in states.items() if label.startswith("team_b ")} == {"failed"}
    check_never_overcounts = multiset(dataset_raws(str(root), T0 - SETTLE, at, connected[0]))
    truth = emu.truth(T0 - SETTLE, at, as_of=at + HORIZON, team=connected[0])
    assert sum(check_never_overcounts.values()) > 0
    assert not check_never_overcounts - multiset(truth)
    # team_b's tail reads its connection itself (not the copy): what it wrote is never more
    team_b = multiset(dataset_raws(str(root), T0 - SETTLE, at, connected[1]))
    assert not team_b - multiset(emu.truth(T0 - SETTLE, at, as_of=at + HORIZON, team=connected[1]))
