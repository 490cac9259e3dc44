"""Airflow's fixed cost of one incremental run, measured on a production-shaped deployment.

Issue 15 budgets a quarter of a core for keeping a team fresh, Airflow's own cost per run
included. This starts the end-to-end stack (api-server, scheduler, dag-processor, triggerer,
Celery worker on PostgreSQL + Redis: tests/e2e/stack.py) against an emulated team with no
activity, so every run has nothing to fetch, and measures the CPU seconds of every component's
process tree over two windows of equal length:

- idle: every DAG paused (what the deployment costs doing nothing: heartbeats, DAG parsing);
- active: the incremental DAG unpaused on a one-minute schedule.

(active - idle) / runs finished in the window is the fixed cost of one run; with it, the delay
from each run's schedule tick to its first task's start (what Airflow adds to freshness). The
figures, and the projection to the default schedule, go to the last line as JSON.

    .venv/bin/python -m bench.airflow_run_cost --window 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from croniter import croniter
from cryptography.fernet import Fernet

from dropbox_emulator import running_emulator
from dropbox_team_log import settings
from tests.e2e.rest import AirflowRest
from tests.e2e.stack import AirflowStack
from tests.helpers.pipeline import connection_json

INCREMENTAL = settings.INCREMENTAL_DAG_ID
#: Every DAG of the package: all paused in the idle window.
DAG_IDS = (
    settings.BACKFILL_DAG_ID,
    settings.INCREMENTAL_DAG_ID,
    settings.REPORT_DAG_ID,
    settings.DETECTIONS_DAG_ID,
)
TERMINAL = {"success", "failed"}


def runs_per_day(cron: str) -> int:
    """How often a cron schedule fires in one (UTC) day."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    fires = croniter(cron, start - timedelta(seconds=1))
    count = 0
    while fires.get_next(datetime) < start + timedelta(days=1):
        count += 1
    return count


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def start_delay(run: dict, instances: list[dict]) -> float:
    """Seconds from the run's schedule tick (its data interval end) to its first task's start:
    the part of freshness Airflow adds before any of our code runs."""
    tick = _instant(run.get("data_interval_end") or run["run_after"])
    first = min(_instant(ti["start_date"]) for ti in instances if ti.get("start_date"))
    return round((first - tick).total_seconds(), 1)


def finished_runs(rest: AirflowRest) -> list[dict]:
    return [r for r in rest.runs(INCREMENTAL) if r["state"] in TERMINAL]


def window_cpu(stack: AirflowStack, window: float) -> dict[str, float]:
    """CPU seconds each component spent over the next `window` seconds."""
    start = stack.cpu_seconds()
    time.sleep(window)
    end = stack.cpu_seconds()
    return {name: end[name] - start[name] for name in start}


def measure(stack: AirflowStack, rest: AirflowRest, window: float) -> dict:
    for dag_id in DAG_IDS:
        stack.wait_for(f"DAG {dag_id} parsed", lambda d=dag_id: rest.dag(d), timeout=300)
        rest.set_paused(dag_id, True)
    time.sleep(30)  # let start-up work (first parse, migrations' follow-ups) pass
    idle = window_cpu(stack, window)

    rest.set_paused(INCREMENTAL, False)
    # the first run settles the day before the connection: not a "nothing to do" run
    stack.wait_for("the first incremental run", lambda: finished_runs(rest), timeout=600)
    before = {r["dag_run_id"] for r in finished_runs(rest)}
    active = window_cpu(stack, window)
    runs = [r for r in finished_runs(rest) if r["dag_run_id"] not in before]
    rest.set_paused(INCREMENTAL, True)
    instances = [rest.task_instances(INCREMENTAL, r["dag_run_id"]) for r in runs]
    tasks = [len(tis) for tis in instances]
    delays = sorted(start_delay(run, tis) for run, tis in zip(runs, instances, strict=True))
    failed = [r["dag_run_id"] for r in runs if r["state"] != "success"]
    if failed:
        raise SystemExit(f"incremental runs failed: {failed}\n{stack.log_tails()}")
    if not runs:
        raise SystemExit(f"no incremental run finished in {window:.0f} s\n{stack.log_tails()}")

    # The worker runs the task processes: its share is the least noisy figure. The other
    # components' share (scheduling the run) rides on loops that cost as much when idle.
    per_component = {n: round((active[n] - idle[n]) / len(runs), 2) for n in active}
    per_run = max(sum(active.values()) - sum(idle.values()), 0.0) / len(runs)
    runs_a_day = runs_per_day(settings.DEFAULT_SCHEDULE)
    return {
        "window_s": window,
        "idle_cpu_s": round(sum(idle.values()), 1),
        "idle_core_share": round(sum(idle.values()) / window, 4),
        "active_cpu_s": round(sum(active.values()), 1),
        "runs": len(runs),
        "task_instances_per_run": round(sum(tasks) / len(tasks), 2),
        "fixed_cpu_s_per_run": round(per_run, 2),
        "cpu_s_per_run_by_component": per_component,
        "tick_to_first_task_s_median": delays[len(delays) // 2],
        "tick_to_first_task_s_max": delays[-1],
        "default_schedule": settings.DEFAULT_SCHEDULE,
        "default_schedule_runs_per_day": runs_a_day,
        "fixed_core_share_at_default_schedule": round(per_run * runs_a_day / 86400, 4),
        "fixed_cpu_h_per_day_at_default_schedule": round(per_run * runs_a_day / 3600, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=300.0, help="seconds per window")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    connected_at = datetime.now(UTC).replace(second=0, microsecond=0)
    with (
        tempfile.TemporaryDirectory(prefix="dtl-runcost-") as tmp,
        running_emulator(
            seed=7,
            clock=datetime.now(UTC),
            clock_rate=1.0,
            timeline_start=connected_at - timedelta(days=2),
            timeline_end=connected_at + timedelta(days=1),
            events_per_day=0,
        ) as emu,
    ):
        root = Path(tmp)
        stack = AirflowStack(
            root=root,
            extra_env={
                "AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT": connection_json(
                    emu, connected_at=connected_at
                ),
                "AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT": str(root / "dataset"),
                "DROPBOX_TEAM_LOG_SCHEDULE": "* * * * *",
            },
            parse_once=False,  # the idle figure includes a deployment's periodic re-parse
        )
        try:
            stack.start()
            rest = AirflowRest(stack.api_url, stack.username, stack.password)
            stack.wait_for("the api-server", rest.healthy, timeout=180)
            rest.login()
            rest.set_pool(settings.API_POOL, settings.API_POOL_SLOTS, "bench")
            figures = measure(stack, rest, args.window)
        finally:
            stack.close()
    for key, value in figures.items():
        print(f"{key:>42}  {value}", file=sys.stderr)
    print(json.dumps({"airflow_run_cost": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
