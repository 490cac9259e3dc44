"""End to end at production shape: api-server, scheduler, dag-processor, triggerer and a Celery
worker as separate processes, on PostgreSQL + Redis, against the emulator over HTTP.

Nothing is run by hand: the test only uses Airflow's REST API (authenticated) like an operator
would: create the pool, unpause both DAGs, trigger the backfill. The scheduler runs the
incremental DAG on its (one-minute) schedule. The dataset is then compared with the emulator's
ground truth as multisets (duplicates counted). Finally a revoked token must fail the next run
at once (no retries) and raise an alert naming the DAG, the task and the reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.pipeline import dataset_raws, multiset, settled_until

pytestmark = pytest.mark.e2e

BACKFILL = "dropbox_team_log_backfill"
INCREMENTAL = "dropbox_team_log_incremental"
REPORT = "dropbox_team_log_report"
DETECTIONS = "dropbox_team_log_detections"
BACKFILL_DAYS = 3
POOL_SLOTS = 2
SETTLE = timedelta(hours=25)
HORIZON = timedelta(days=2)  # truth as of "later": every late event has landed
TERMINAL = {"success", "failed"}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def max_overlap(items: list[dict]) -> int:
    """Most items running at once, from their start_date/end_date (API records)."""
    edges = sorted(
        edge
        for item in items
        for edge in ((parse(item["start_date"]), 1), (parse(item["end_date"]), -1))
    )
    running = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start (+1)
        running += step
        peak = max(peak, running)
    return peak


def finished(rest, dag_id: str, run_id: str) -> dict | None:
    run = rest.run(dag_id, run_id)
    return run if run["state"] in TERMINAL else None


def test_scheduler_runs_both_dags_unattended_on_celery(deployment, emu, connected_at, alert_target):
    stack, rest = deployment.stack, deployment.rest
    for dag_id in (BACKFILL, INCREMENTAL):
        stack.wait_for(f"{dag_id} parsed", lambda d=dag_id: rest.dag(d), timeout=240)
        assert rest.dag(dag_id)["max_active_runs"] == 1, "overlapping runs of one DAG"
    rest.set_pool("dropbox_api", POOL_SLOTS, "Dropbox team API concurrency")
    rest.set_paused(INCREMENTAL, False)
    rest.set_paused(BACKFILL, False)

    # The backfill, triggered through the REST API as an operator would.
    run = rest.trigger(BACKFILL, {"days": BACKFILL_DAYS}, iso(datetime.now(UTC)))
    done = stack.wait_for(
        "the backfill run", lambda: finished(rest, BACKFILL, run["dag_run_id"]), 420
    )
    assert done["state"] == "success", done
    synced = [
        t for t in rest.task_instances(BACKFILL, run["dag_run_id"]) if t["task_id"] == "sync_day"
    ]
    assert len(synced) >= BACKFILL_DAYS and {t["pool"] for t in synced} == {"dropbox_api"}
    assert all(t["state"] == "success" and t["try_number"] == 1 for t in synced)

    # The incremental DAG, on its schedule: at least one scheduled run after the connection.
    def scheduled_success():
        runs = [
            r
            for r in rest.runs(INCREMENTAL)
            if r["run_type"] == "scheduled" and r["state"] == "success"
        ]
        return [r for r in runs if parse(r["data_interval_end"]) >= connected_at]

    stack.wait_for("a scheduled incremental run", scheduled_success, timeout=300)
    # Hold still while we compare: wait for a moment with no incremental run in flight, then
    # pause. (A paused DAG's runs are not scheduled further, so waiting for a run caught by the
    # pause could hang; runs that did not finish are left out of the comparison.)
    stack.wait_for(
        "a moment with no incremental run in flight",
        lambda: all(r["state"] in TERMINAL for r in rest.runs(INCREMENTAL)),
        timeout=240,
        every=0.5,
    )
    rest.set_paused(INCREMENTAL, True)
    runs = [r for r in rest.runs(INCREMENTAL) if r["state"] in TERMINAL]
    assert all(r["state"] == "success" for r in runs), [(r["run_id"], r["state"]) for r in runs]
    as_of = max(parse(r["data_interval_end"]) for r in runs)
    # No overlapping writers: one run of a DAG at a time, pool-bounded day tasks across both.
    assert max_overlap(runs) == 1
    day_tasks = [
        t
        for dag_id in (BACKFILL, INCREMENTAL)
        for r in rest.runs(dag_id)
        for t in rest.task_instances(dag_id, r["dag_run_id"])
        if t["task_id"] == "sync_day" and t["start_date"] and t["end_date"]
    ]
    assert len(day_tasks) > POOL_SLOTS and max_overlap(day_tasks) <= POOL_SLOTS

    # Ground truth: settled time exact (duplicates counted), fresher time never over-counted.
    root = str(deployment.dataset)
    start = connected_at - timedelta(days=BACKFILL_DAYS)
    settled = settled_until(as_of)  # whole settle batches (an hour) before as_of - SETTLE
    got = multiset(dataset_raws(root, start, settled))
    want = multiset(emu.truth(start, settled, as_of=as_of + HORIZON))
    # The window is ~46 h; weekends serve half a weekday's events, so at 100 a day it holds 80 to
    # 190 depending on the hour of the week the test starts.
    assert sum(want.values()) > 40, "the emulator served too little to prove anything"
    assert sum(got.values()) == sum(want.values())
    assert got == want
    fresh = multiset(dataset_raws(root, settled, as_of))
    assert sum(fresh.values()) > 0, "the runs fetched nothing recent"
    extra = fresh - multiset(emu.truth(settled, as_of, as_of=as_of + HORIZON))
    assert not extra, f"{sum(extra.values())} recent rows more than the API holds"

    # The DAGs on the dataset's Asset ran with nobody unpausing them; findings were sent.
    for dag_id in (REPORT, DETECTIONS):
        runs = stack.wait_for(
            f"a finished {dag_id} run",
            lambda d=dag_id: [r for r in rest.runs(d) if r["state"] in TERMINAL],
            timeout=240,
        )
        assert all(r["state"] == "success" for r in runs), runs

    # A revoked token: the next run fails at once (no retry) and raises an alert.
    emu.revoke_refresh_tokens()
    day = (connected_at - timedelta(days=9)).replace(hour=0, minute=0)  # one UTC day: one task
    conf = {"start": iso(day), "end": iso(day + timedelta(days=1))}
    run = rest.trigger(BACKFILL, conf, iso(datetime.now(UTC)))
    done = stack.wait_for(
        "the revoked run", lambda: finished(rest, BACKFILL, run["dag_run_id"]), 300
    )
    assert done["state"] == "failed"
    (failed,) = [
        t for t in rest.task_instances(BACKFILL, run["dag_run_id"]) if t["task_id"] == "sync_day"
    ]
    assert failed["state"] == "failed" and failed["try_number"] == 1, failed

    def failure_alerts():  # the detections DAG sends its findings to the same target
        return [a for a in alert_target.received if a.get("dag_id") == BACKFILL]

    (alert,) = stack.wait_for("the alert", failure_alerts, timeout=60)
    assert alert["dag_id"] == BACKFILL and alert["task_id"] == "sync_day"
    assert "refresh token revoked" in alert["reason"] and "reconnect" in alert["reason"].lower()
    assert "ALERT Dropbox team log" in "".join(
        p.read_text(errors="replace") for p in stack.log_dir.glob("dag_id=*/**/*.log")
    )

    # Secrets never reach a log: not the refresh token, not the app secret.
    saved = json.loads(stack.extra_env["AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT"])
    logs = "".join(p.read_text(errors="replace") for p in stack.log_dir.rglob("*.log"))
    assert saved["extra"]["refresh_token"] not in logs
    assert saved["password"] not in logs
