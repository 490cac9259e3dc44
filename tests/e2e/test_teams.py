"""End to end with three teams through a real scheduler (CeleryExecutor, PostgreSQL, Redis):
all registered in the Variable, nobody triggers a backfill; a heavy team whose backfill is big,
a light one, and one revoked part-way.

The incremental DAG (every minute) starts each team's backfill itself; the backfill DAG is
active from creation. While the heavy team's backfill runs, every incremental run syncs the
light team within one schedule interval of its start. Then the third team's grant is revoked:
its tasks fail at once and alert once (not at every run), while the other teams' tasks keep
succeeding run after run. The heavy and light teams' datasets are compared with their truth in
the emulator (multisets, duplicates counted).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import SCHEDULE, Deployment
from tests.e2e.rest import AirflowRest
from tests.e2e.stack import AirflowStack
from tests.e2e.test_unattended import TERMINAL, iso, parse
from tests.helpers.pipeline import connection_json, dataset_raws, multiset

pytestmark = pytest.mark.e2e

BACKFILL = "dropbox_team_log_backfill"
INCREMENTAL = "dropbox_team_log_incremental"
HEAVY, LIGHT, REVOKED = "dropbox_team_default", "team_light", "team_revoked"
BACKFILL_DAYS = 2
HEAVY_BACKFILL_DAYS = 20
INTERVAL = timedelta(minutes=1)  # SCHEDULE
SETTLE = timedelta(hours=25)
HORIZON = timedelta(days=2)


@pytest.fixture(scope="module")
def emu(connected_at):
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=43,
        clock=datetime.now(UTC),
        clock_rate=1.0,
        timeline_start=connected_at - timedelta(days=HEAVY_BACKFILL_DAYS + 2),
        timeline_end=connected_at + timedelta(days=2),
        teams=[
            {"events_per_day": 4000},
            {"events_per_day": 60, "team_name": "Light"},
            {"events_per_day": 60, "team_name": "Revoked"},
        ],
        page_size=50,
        duplicate_rate=0.03,
        late_rate=0.3,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, emu, connected_at, alert_target):
    root = tmp_path_factory.mktemp("e2e-teams")
    stack = AirflowStack(
        root=root,
        extra_env={
            f"AIRFLOW_CONN_{HEAVY.upper()}": connection_json(
                emu, connected_at=connected_at, team=0
            ),
            f"AIRFLOW_CONN_{LIGHT.upper()}": connection_json(
                emu, connected_at=connected_at, team=1
            ),
            f"AIRFLOW_CONN_{REVOKED.upper()}": connection_json(
                emu, connected_at=connected_at, team=2
            ),
            "AIRFLOW_CONN_DROPBOX_TEAM_LOG_ALERTS": json.dumps(
                {"conn_type": "http", "host": alert_target.url}
            ),
            "AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT": str(root / "dataset"),
            "DROPBOX_TEAM_LOG_SCHEDULE": SCHEDULE,
        },
    )
    started = time.monotonic()
    try:
        stack.start()
        rest = AirflowRest(stack.api_url, stack.username, stack.password)
        stack.wait_for("the api-server", rest.healthy, timeout=180)
        rest.login()
        yield Deployment(stack, rest, root / "dataset")
    except BaseException:
        print(stack.log_tails())
        raise
    finally:
        stack.close()
        print(f"\ne2e teams wall time: {time.monotonic() - started:.0f}s")


def sync_tasks(rest, run: dict, task_id: str = "sync_day") -> dict[str, dict]:
    """The run's task instances of `task_id` by label ("<conn_id> <day>"; the tail's:
    "<conn_id>"); an empty mapping (nothing due: one skipped instance, no label) has none."""
    tis = rest.task_instances(INCREMENTAL, run["dag_run_id"])
    return {
        t["rendered_map_index"]: t
        for t in tis
        if t["task_id"] == task_id and t["rendered_map_index"]
    }


def tail_states(rest, run: dict) -> dict[str, str]:
    """Each team's tail task state in the run."""
    return {label: t["state"] for label, t in sync_tasks(rest, run, "tail").items()}


def states_by_team(rest, run: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for label, ti in sync_tasks(rest, run).items():
        out.setdefault(label.split(" ")[0], set()).add(ti["state"])
    return out


def check_exact(root, emu, team: int, lo, hi, as_of) -> int:
    team_id = emu.teams()[team]["team_id"]
    got = multiset(dataset_raws(str(root), lo, hi, team_id))
    want = multiset(emu.truth(lo, hi, as_of=as_of, team=team_id))
    assert sum(want.values()) > 20, "the emulator served too little to prove anything"
    assert got == want, f"team {team}: {sum(got.values())} rows, truth {sum(want.values())}"
    return sum(got.values())


def light_lag(rest, run: dict) -> timedelta | None:
    """How long after the run was due its last task of the light team ended (None: it has
    none, or one is not finished)."""
    tis = [
        t
        for t in rest.task_instances(INCREMENTAL, run["dag_run_id"])
        if (t["rendered_map_index"] or "").split(" ")[0] == LIGHT
    ]
    if not tis or not all(t["end_date"] for t in tis):
        return None
    return max(parse(t["end_date"]) for t in tis) - parse(run["run_after"])


def test_three_teams_heavy_backfill_light_on_time_one_revoked(
    deployment, emu, connected_at, alert_target
):
    stack, rest = deployment.stack, deployment.rest
    for dag_id in (BACKFILL, INCREMENTAL):
        stack.wait_for(f"{dag_id} parsed", lambda d=dag_id: rest.dag(d), timeout=240)
    assert rest.dag(BACKFILL)["is_paused"] is False  # a started backfill must not sit queued
    rest.set_pool("dropbox_api", 3, "Dropbox team API concurrency")
    registry = [
        {
            "conn_id": c,
            "added_at": iso(connected_at),
            "connected_at": iso(connected_at),  # the copy connect writes: no lookup in the plan
            "backfill_days": days,
        }
        for c, days in ((HEAVY, HEAVY_BACKFILL_DAYS), (LIGHT, BACKFILL_DAYS), (REVOKED, 2))
    ]
    rest.call(
        "POST", "variables", json={"key": "dropbox_team_log_teams", "value": json.dumps(registry)}
    )
    rest.set_paused(INCREMENTAL, False)

    # Nobody triggers a backfill: the scheduled run starts one per team.
    def team_backfills():
        runs = [r for r in rest.runs(BACKFILL) if r["dag_run_id"].startswith("team_backfill__")]
        return runs if len(runs) == 3 and all(r["state"] in TERMINAL for r in runs) else None

    backfills = stack.wait_for("the teams' backfills", team_backfills, timeout=900)
    assert {r["state"] for r in backfills} == {"success"}, backfills
    assert sorted(r["conf"]["conn_id"] for r in backfills) == [HEAVY, LIGHT, REVOKED]

    # While the heavy backfill ran, each incremental run synced the light team within one
    # schedule interval of being due (the pool's priority and the backfill's slot cap).
    (heavy,) = [r for r in backfills if r["conf"]["conn_id"] == HEAVY]
    busy_from, busy_to = parse(heavy["start_date"]), parse(heavy["end_date"])
    during = [
        r
        for r in rest.runs(INCREMENTAL)
        if r["state"] in TERMINAL and busy_from <= parse(r["run_after"]) <= busy_to
    ]
    lags = {r["dag_run_id"]: light_lag(rest, r) for r in during}
    print(f"\nheavy backfill {busy_to - busy_from}; light team's lag per run: {lags}")
    assert lags, "the heavy backfill overlapped no incremental run: make it bigger"

    # A scheduled incremental run in which every team's tail (and any due days) succeeded.
    def all_synced():
        return [
            r
            for r in rest.runs(INCREMENTAL)
            if r["state"] == "success"
            and tail_states(rest, r) == {HEAVY: "success", LIGHT: "success", REVOKED: "success"}
        ]

    stack.wait_for("an incremental run of every team", all_synced, timeout=300)

    # The third team's grant is revoked part-way.
    revoked_at = datetime.now(UTC)
    emu.revoke_refresh_tokens(team=emu.teams()[2]["team_id"])

    def runs_after_revoke():
        runs = [
            r
            for r in rest.runs(INCREMENTAL)
            if r["start_date"] and parse(r["start_date"]) > revoked_at and r["state"] in TERMINAL
        ]
        return runs if len(runs) >= 2 else None

    after = stack.wait_for("two incremental runs after the revocation", runs_after_revoke, 420)
    for run in after:
        # the revoked team's tasks fail, and only those (a run with none of its days due fails
        # only its tail task, which is no leaf: Airflow then marks the run a success)
        assert tail_states(rest, run) == {
            HEAVY: "success",
            LIGHT: "success",
            REVOKED: "failed",
        }, run
        by_team = states_by_team(rest, run)
        assert by_team.get(HEAVY, {"success"}) == {"success"}, by_team
        assert by_team.get(LIGHT, {"success"}) == {"success"}, by_team
        assert by_team.get(REVOKED, {"failed"}) == {"failed"}, by_team
        if REVOKED in by_team:
            assert run["state"] == "failed", run
        tis = sync_tasks(rest, run).items()
        revoked = [t for label, t in tis if label.startswith(f"{REVOKED} ")]
        assert all(t["try_number"] == 1 for t in revoked), "a revoked grant was retried"

    # One alert for the revoked team over all those runs and their failed tasks (its tail
    # task's and its day tasks'); none for the others.
    alerts = [a for a in alert_target.received if "reason" in a]  # not the findings
    assert [a.get("team") for a in alerts] == [REVOKED], alerts
    (alert,) = alerts
    assert alert["kind"] == "RefreshTokenRevokedError" and alert["status"] == "failing"
    assert f"connect --conn-id {REVOKED}" in alert["reason"]

    stack.wait_for(
        "a moment with no incremental run in flight",
        lambda: all(r["state"] in TERMINAL for r in rest.runs(INCREMENTAL)),
        timeout=240,
        every=0.5,
    )
    rest.set_paused(INCREMENTAL, True)
    runs = [r for r in rest.runs(INCREMENTAL) if r["state"] in TERMINAL]
    as_of = max(parse(r["data_interval_end"]) for r in runs)

    # The heavy and light teams: exact over every settled second from their backfill's start
    # on; the light one in its own files (<conn_id>.events-HH.parquet in the same day folders).
    for team, days in ((0, HEAVY_BACKFILL_DAYS), (1, BACKFILL_DAYS)):
        start = connected_at - timedelta(days=days)
        check_exact(deployment.dataset, emu, team, start, as_of - SETTLE, as_of + HORIZON)
        team_id = emu.teams()[team]["team_id"]
        fresh = multiset(dataset_raws(str(deployment.dataset), as_of - SETTLE, as_of, team_id))
        truth = emu.truth(as_of - SETTLE, as_of, as_of=as_of + HORIZON, team=team_id)
        assert not fresh - multiset(truth), "recent rows the API does not hold"
    assert list(deployment.dataset.glob(f"event_date=*/{LIGHT}.events-*.parquet"))
    # The revoked team (few events: too few to prove exactness on its own): never more rows
    # than the API holds.
    start = connected_at - timedelta(days=2)
    revoked_id = emu.teams()[2]["team_id"]
    got = multiset(dataset_raws(str(deployment.dataset), start, as_of, revoked_id))
    assert not got - multiset(emu.truth(start, as_of, as_of=as_of + HORIZON, team=revoked_id))
    # Checked last, so that a late light team still shows whether the rest holds.
    assert all(lag is not None and lag <= INTERVAL for lag in lags.values()), lags
