"""End to end with three teams through a real scheduler (CeleryExecutor, PostgreSQL, Redis):
all registered in the Variable, nobody triggers a backfill; a heavy team whose backfill is big
(many days, each slow to fetch: its API answers after a latency), a light one, and one revoked
part-way.

The incremental DAG (every minute) starts each team's backfill itself; the backfill DAG is
active from creation. While the heavy team's backfill runs, every incremental run syncs the
light team within one schedule interval of being due, and what makes it so is checked from the
task instances' own records: the backfill never holds more than its share of the pool, and no
incremental task waits for a slot while the pool hands one to the backfill (the priority), so
the check does not rest on the machine's speed. Then the third team's grant is revoked:
its tasks fail at once and alert once (not at every run), while the other teams' tasks keep
succeeding run after run. The heavy and light teams' datasets are compared with their truth in
the emulator (multisets, duplicates counted).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dropbox_team_log import settings
from tests.e2e.conftest import deployed, stack_env
from tests.e2e.test_unattended import TERMINAL, iso, max_overlap, parse
from tests.helpers.pipeline import connection_json, dataset_raws, multiset

pytestmark = pytest.mark.e2e

BACKFILL = "dropbox_team_log_backfill"
INCREMENTAL = "dropbox_team_log_incremental"
HEAVY, LIGHT, REVOKED = "dropbox_team_default", "team_light", "team_revoked"
BACKFILL_DAYS = 2
HEAVY_BACKFILL_DAYS = 14
HEAVY_EVENTS_PER_DAY = 1000
HEAVY_LATENCY = 2.0  # seconds per team_log call of the heavy team
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
            {"events_per_day": HEAVY_EVENTS_PER_DAY},
            # Light's exactness window is ~23 h; at 120 a day it holds 50+ events at any hour of
            # the week (weekends serve half a weekday's), so check_exact's floor always holds.
            {"events_per_day": 120, "team_name": "Light"},
            {"events_per_day": 60, "team_name": "Revoked"},
        ],
        page_size=50,
        duplicate_rate=0.03,
        late_rate=0.3,
    ) as emu:
        # The heavy team's API answers slowly: its day tasks hold their pool slots for long
        # while costing little CPU, which the light team's tasks need on a small machine.
        slow = {"kind": "latency", "route": "2/team_log/*", "count": None, "seconds": HEAVY_LATENCY}
        emu.set_faults([slow], team=emu.teams()[0]["team_id"])
        yield emu


@pytest.fixture(scope="module")
def deployment(request, tmp_path_factory, emu, connected_at, alert_target):
    root = tmp_path_factory.mktemp("e2e-teams")
    connections = {
        conn_id: connection_json(emu, connected_at=connected_at, team=i)
        for i, conn_id in enumerate((HEAVY, LIGHT, REVOKED))
    }
    with deployed(request, root, stack_env(root, alert_target, connections)) as deployment:
        yield deployment


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


def slot_holds(tis: list[dict]) -> list[dict]:
    """When each task held its pool slot: from being queued (the pool's count) to its end."""
    return [
        {"start_date": t["queued_when"], "end_date": t["end_date"]}
        for t in tis
        if t["queued_when"] and t["end_date"]
    ]


def slots_given_over_waiting(waiting: list[dict], given: list[dict]) -> list[str]:
    """Each time the pool handed one of `given` a slot while a task of `waiting` waited for one
    (scheduled, not yet queued): what the incremental's priority rules out for the backfill.
    The scheduler queues by priority in one pass, so a task queued in the same pass as the
    waiting one (same queued_when) did not overtake it."""
    handed = [(parse(t["queued_when"]), t["rendered_map_index"]) for t in given if t["queued_when"]]
    out = []
    for t in waiting:
        if not (t["scheduled_when"] and t["queued_when"]):
            continue
        since, until = parse(t["scheduled_when"]), parse(t["queued_when"])
        out += [
            f"{t['task_id']}[{t['rendered_map_index']}] waited {since:%H:%M:%S.%f}-"
            f"{until:%H:%M:%S.%f} while backfill [{label}] got a slot at {at:%H:%M:%S.%f}"
            for at, label in handed
            if since < at < until
        ]
    return out


def test_three_teams_heavy_backfill_light_on_time_one_revoked(
    deployment, emu, connected_at, alert_target
):
    stack, rest = deployment.stack, deployment.rest
    for dag_id in settings.PIPELINE_DAG_IDS:
        stack.wait_for(f"{dag_id} parsed", lambda d=dag_id: rest.dag(d), timeout=240)
    assert rest.dag(BACKFILL)["is_paused"] is False  # a started backfill must not sit queued
    # The DAGs on the dataset's Asset (report, detections) would run on every day written,
    # doubling the task processes on this small machine; test_unattended proves they run.
    for dag_id in (settings.REPORT_DAG_ID, settings.DETECTIONS_DAG_ID):
        rest.set_paused(dag_id, True)
    # The pool `connect` creates: the backfill's share and two slots for the teams' syncs.
    assert settings.API_POOL_SLOTS > settings.BACKFILL_MAX_ACTIVE_DAYS + 1
    rest.set_pool(settings.API_POOL, settings.API_POOL_SLOTS, "Dropbox team API concurrency")
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

    backfills = stack.wait_for("the teams' backfills", team_backfills, timeout=900, every=5)
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
    assert len(lags) >= 2, "the heavy backfill overlapped too few incremental runs: make it bigger"
    # How: the backfills never held more than their share of the pool, and no incremental
    # task (any team's) waited for a slot while a backfill task was handed one.
    backfill_days = [
        t
        for r in backfills
        for t in rest.task_instances(BACKFILL, r["dag_run_id"])
        if t["task_id"] == "sync_day"
    ]
    incremental_pool_tasks = [
        t
        for r in rest.runs(INCREMENTAL)
        for t in rest.task_instances(INCREMENTAL, r["dag_run_id"])
        if t["task_id"] in ("tail", "sync_day") and t["rendered_map_index"]
    ]
    held = max_overlap(slot_holds(backfill_days))
    assert held <= settings.BACKFILL_MAX_ACTIVE_DAYS, f"the backfills held {held} slots at once"
    waits = sorted(
        (parse(t["queued_when"]) - parse(t["scheduled_when"])).total_seconds()
        for t in incremental_pool_tasks
        if t["scheduled_when"] and t["queued_when"]
    )
    print(f"incremental pool tasks' wait for a slot (s): {[round(w, 1) for w in waits]}")
    overtaken = slots_given_over_waiting(incremental_pool_tasks, backfill_days)
    assert not overtaken, "\n".join(overtaken)

    # A scheduled incremental run in which every team's tail (and any due days) succeeded.
    def all_synced():
        latest = sorted(
            (r for r in rest.runs(INCREMENTAL) if r["state"] == "success"),
            key=lambda r: r["run_after"],
        )[-2:]  # earlier ones were checked by earlier probes
        return [
            r
            for r in latest
            if tail_states(rest, r) == {HEAVY: "success", LIGHT: "success", REVOKED: "success"}
        ]

    stack.wait_for("an incremental run of every team", all_synced, timeout=300, every=5)

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
    # Checked last, so that a late light team still shows whether the rest holds. The pool
    # gave the backfill no slot a team waited for (checked above): a lag here is the time
    # Airflow's own steps took, i.e. the CPU the deployment got.
    assert all(lag is not None and lag <= INTERVAL for lag in lags.values()), lags
