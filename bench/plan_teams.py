"""`python -m bench.plan_teams`: what planning one incremental run costs with many teams.

50 teams (`--teams`) on one emulator, their connections and the registry in the metadata DB
(SQLite here), each team's dataset holding the days a first incremental run wrote. Then the
plan task's body (`sync_tasks.plan_days`) runs as a server process reads Airflow: connections
and Variables through the secrets backends, the metastore last. Measured: wall seconds and the
SQL statements sent to the metadata DB, for the whole registry, for the same registry without
the connected_at copies (entries written by hand), and, as the baseline in the same run, for
one team (the `conn_id` param). In a worker each lookup is one Execution-API request,
which runs the same query in the API server. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from tests.helpers import airflow_env

airflow_env.configure()  # before anything imports Airflow

T0 = datetime(2026, 11, 20, 10, 30, 15, tzinfo=UTC)


def save_connections(emu, count: int) -> list[str]:
    """One connection per emulated team in the metadata DB, granted on its Allow page."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from tests.helpers.pipeline import grant_app

    conn_ids = []
    with create_session() as session:
        for n, team in enumerate(emu.teams()[:count]):
            conn_id = f"bench_team_{n:02d}"
            extra = {
                "refresh_token": grant_app(emu, n).refresh_token,
                "connected_at": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "team_id": team["team_id"],
                "team_name": team["name"],
                "backoff_base": 0.01,
            }
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            session.add(
                Connection(
                    conn_id=conn_id,
                    conn_type="dropbox_team",
                    login=emu.config.app_key,
                    password=emu.config.app_secret,
                    host=emu.base_url,
                    extra=json.dumps(extra),
                )
            )
            conn_ids.append(conn_id)
    return conn_ids


class QueryCounter:
    """SQL statements the metadata DB's engine runs while active."""

    def __init__(self) -> None:
        from airflow import settings
        from sqlalchemy import event

        self.count = 0
        event.listen(settings.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        self.count += 1


def measure(params: dict, as_of: datetime, counter: QueryCounter, repeat: int) -> dict:
    from dropbox_team_log.tasks import sync_tasks

    seconds, queries, jobs = [], [], 0
    for _ in range(repeat):
        before, start = counter.count, time.perf_counter()
        jobs = len(sync_tasks.plan_days("incremental", params, {"data_interval_end": as_of}))
        seconds.append(time.perf_counter() - start)
        queries.append(counter.count - before)
    return {"seconds": statistics.median(seconds), "queries": max(queries), "jobs": jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    airflow_env.migrate()
    from dropbox_emulator import running_emulator
    from dropbox_team_log.cli.connection_store import save_variable
    from tests.helpers.pipeline import fresh_dag

    root = tempfile.mkdtemp(prefix="dtl-plan-bench-")
    with running_emulator(
        seed=3,
        clock=T0,
        timeline_start=T0 - timedelta(days=3),
        timeline_end=T0 + timedelta(days=2),
        teams=[{"events_per_day": 10}] * args.teams,
    ) as emu:
        conn_ids = save_connections(emu, args.teams)
        # As connect writes it: each entry holds its connection's connected_at.
        wire = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
        registry = [
            {"conn_id": c, "backfill_triggered_at": "never", "connected_at": wire} for c in conn_ids
        ]
        save_variable("dropbox_team_log_teams", json.dumps(registry), "bench")
        save_variable("dropbox_team_log_output", root, "bench")
        os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"  # lookups read the metastore too
        # A first run writes each team's due days: the plan then reads real footers.
        first = T0 + timedelta(minutes=15)
        emu.set_clock(first)
        started = time.perf_counter()
        state = fresh_dag("dropbox_team_log_incremental").test(logical_date=first).state
        fill = time.perf_counter() - started
        as_of = first + timedelta(minutes=15)
        emu.set_clock(as_of)
        counter = QueryCounter()
        one = measure({"conn_id": conn_ids[0]}, as_of, counter, args.repeat)
        many = measure({}, as_of, counter, args.repeat)
        # Entries written by hand, without the copy: the plan reads every connection.
        bare = [{k: v for k, v in e.items() if k != "connected_at"} for e in registry]
        save_variable("dropbox_team_log_teams", json.dumps(bare), "bench")
        uncached = measure({}, as_of, counter, args.repeat)
    figures = {
        "teams": args.teams,
        "first_run_state": state,
        "first_run_seconds": round(fill, 1),
        "plan_1_team_seconds": round(one["seconds"], 3),
        "plan_1_team_queries": one["queries"],
        "plan_1_team_jobs": one["jobs"],
        f"plan_{args.teams}_teams_seconds": round(many["seconds"], 3),
        f"plan_{args.teams}_teams_queries": many["queries"],
        f"plan_{args.teams}_teams_jobs": many["jobs"],
        f"plan_{args.teams}_teams_no_copy_seconds": round(uncached["seconds"], 3),
        f"plan_{args.teams}_teams_no_copy_queries": uncached["queries"],
    }
    for key, value in figures.items():
        print(f"{key:36} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
