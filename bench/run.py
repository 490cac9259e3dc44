"""`make bench`: the pipeline's speed, memory and storage on the emulator, each with a baseline.

Prints a table, then (last line) one JSON object with every figure. Sizes follow the issue at
`--scale 1` (1M events over 60 days, 100k new events); the default `--scale 0.25` runs in 2-3
minutes, plus 1-3 for the memory day, which has the issue's 2M events at any scale
(`--memory-events`; the emulator takes 1-2 minutes to make it). Every timing has a reference
measured in the same run (SDK baseline, network floor, the same code without Airflow), so the ratios
hold on a noisy, shared machine.

The emulator runs in its own process (it is Python too: in-process it would share our GIL), with a
`latency` fault on every team_log call: each page is answered a fixed time after its request
arrived (the time to build it included, as with a remote API), the latency the network floor is
made of.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from tests.helpers import airflow_env  # Airflow home, connection via the Allow page
from tests.helpers.paths import REPO

airflow_env.configure()  # before anything imports Airflow

if TYPE_CHECKING:
    from dropbox_emulator.client import EmulatorClient

CLOCK = datetime(2026, 3, 1, tzinfo=UTC)  # the emulator's frozen "now" = connected_at
DAY = 86_400
CONN_ID = "dropbox_team_default"
TEAM_LOG_ROUTES = "2/team_log/*"


# --- emulator process and connection -----------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator_args(events_per_day: float, *, seed: int = 11, days: int = 60) -> list[str]:
    """The emulator's command line (also parsed in-process where a bench needs its config)."""
    args = ["--seed", str(seed), "--clock", CLOCK.isoformat()]
    args += ["--events-per-day", str(events_per_day), "--access-token-lifetime", "86400"]
    # Every day stays made: a day made again inside a timed call would be charged to the pipeline.
    args += ["--cache-events", str(int(max(200_000, 1.5 * events_per_day * (days + 10))))]
    return args


@contextmanager
def emulator(
    events_per_day: float, *, latency: float = 0.0, seed: int = 11, days: int = 60
) -> Iterator:
    """An emulator process with a fixed latency on every team_log call; its control client."""
    from dropbox_emulator.process import EmulatorStartError, emulator_process

    args = emulator_args(events_per_day, seed=seed, days=days)
    with tempfile.TemporaryFile() as log:
        try:
            with emulator_process(free_port(), args, log=log) as (proc, client):
                client.timeout = 900  # making a 2M-event day, or 60 days of 1M, takes minutes
                client.cpu_seconds = lambda: _cpu_seconds(proc.pid)  # type: ignore[attr-defined]
                if latency:
                    client.set_faults(
                        [
                            {
                                "kind": "latency",
                                "route": TEAM_LOG_ROUTES,
                                "seconds": latency,
                                "every": 1,
                            }
                        ]
                    )
                yield client
        except EmulatorStartError as exc:
            log.seek(0)
            raise SystemExit(f"{exc}: {log.read()[-2000:]!r}") from None


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def connect(client: EmulatorClient) -> None:
    """Grant the app on the emulator's Allow page; save it as AIRFLOW_CONN_* for every process."""
    from dropbox_emulator.config import DEMO_APP_KEY, DEMO_APP_SECRET
    from tests.helpers.pipeline import connection_json

    emu = SimpleNamespace(
        base_url=client.base_url,
        config=SimpleNamespace(app_key=DEMO_APP_KEY, app_secret=DEMO_APP_SECRET),
        approve=client.approve,
    )
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = connection_json(emu, connected_at=CLOCK)


def team_log_calls(client: EmulatorClient) -> int:
    """get_events + continue calls the emulator answered since its stats were reset."""
    calls = client.stats().get("calls", {})
    return sum(n for route, n in calls.items() if "team_log" in route)


# --- the pipeline, as the DAG tasks run it ----------------------------------------------------


@dataclass
class RunResult:
    wall: float
    events: int
    pages: int
    calls: int
    days: int


def sync_job(root: str, as_of: int) -> dict:
    """What the DAG's plan task hands each day's sync task (the day slice aside)."""
    from dropbox_team_log.sync.planning import SyncPolicy

    job = {"as_of": as_of, "conn_id": CONN_ID, "root": root, "team_id": "dbtid:bench"}
    return job | {"policy": SyncPolicy().to_xcom()}


def run_sync(
    kind: str, root: str, as_of: int, *, days: int = 60, parallel_days: int = 1
) -> RunResult:
    """Plan like `plan_days`, then `sync_tasks.sync_day` per due day: one at a time (as `dags test`
    runs mapped tasks) or `parallel_days` at once (as a scheduler runs them in the pool)."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow.sdk._shared.secrets_masker.secrets_masker import reset_secrets_masker

    from dropbox_team_log.dataset.store import EventDataset
    from dropbox_team_log.sync.engine import due_ranges
    from dropbox_team_log.sync.planning import (
        DaySpan,
        SyncPolicy,
        backfill_range,
        incremental_range,
        split_days,
    )
    from dropbox_team_log.tasks import sync_tasks

    policy = SyncPolicy()
    connected_at = int(CLOCK.timestamp())
    started = time.perf_counter()
    if kind == "backfill":
        lo, hi = backfill_range({"days": days}, connected_at=connected_at, as_of=as_of)
    else:
        lo, hi = incremental_range(connected_at=connected_at, as_of=as_of, policy=policy)
    dataset = EventDataset(root)
    job = sync_job(root, as_of)
    result = RunResult(0.0, 0, 0, 0, 0)
    due = [p for p in split_days(lo, hi) if due_ranges(dataset, p, as_of=as_of, policy=policy)]

    def task(span: DaySpan) -> dict:
        # Airflow runs each task in a process of its own, whose secrets masker starts empty;
        # here every day shares one, and each day's new access token would recompile a regex of
        # all earlier ones (~50 ms a day by day 60). The bench's logs are off: nothing is shown.
        reset_secrets_masker()
        return sync_tasks.sync_day({**job, **span.to_xcom()})

    with ThreadPoolExecutor(parallel_days) as pool:
        reports = list(pool.map(task, due))
    for report in reports:
        result.events += report["events"]
        result.pages += report["pages"]
        result.calls += report["api_calls"]
        result.days += 1
    result.wall = time.perf_counter() - started
    return result


def api_concurrency() -> int:
    """The per-task API concurrency sync uses (1 where the code has no such setting)."""
    from dropbox_team_log.sync import engine

    return engine.api_concurrency()


# --- 1. transform -------------------------------------------------------------------------------


def pages_of(raws: list[bytes], size: int = 1000, *, shuffle: bool = False) -> list[bytes]:
    """API pages as the wire carries them, from the emulator's served event bytes; `shuffle`:
    the events of each page in no order, as the API serves them."""
    pages = []
    for i in range(0, len(raws), size):
        events = raws[i : i + size]
        if shuffle:
            random.Random(i).shuffle(events)
        pages.append(b'{"events":[' + b",".join(events) + b'],"cursor":"AAAA","has_more":true}')
    return pages


def transform_ours(
    day_pages: list[tuple[date, list[bytes]]], root: str, *, settled: bool = True
) -> float:
    """Page bytes -> record batches -> the day files on local disk, by the pipeline's own code:
    each day's pages (its query's answer) become that day's file(s), as a day's sync writes them.
    `settled`: each day is written `DAY_FILE_AFTER_HOURS` after its end, as one day file (a
    backfill's days but its last two); else a day after its end, as 24 hour files (a recent
    day), whose per-file cost (writer set-up, fsync) then weighs as much as the transform."""
    from dropbox_team_log import settings
    from dropbox_team_log.client.wire import decode_page
    from dropbox_team_log.dataset.spool import RowSpool
    from dropbox_team_log.dataset.store import EventDataset
    from dropbox_team_log.timeutil import day_start
    from dropbox_team_log.transform.events import events_to_batch

    dataset = EventDataset(root)
    now = datetime.now(UTC)
    written_after_end = settings.DAY_FILE_AFTER_HOURS * 3600 if settled else DAY
    started = time.perf_counter()
    for day, pages in day_pages:
        with RowSpool() as rows:
            for page in pages:
                events = decode_page(page).events  # as the reader decodes a page
                rows.add(events_to_batch(events, team_id="dbtid:bench", ingested_at=now))
            first = day_start(day)
            fetched_at = first + DAY + written_after_end
            dataset.write_day(day, [(first, first + DAY)], rows, fetched_at=fetched_at)
    return time.perf_counter() - started


def transform_baseline(pages: list[bytes], path: str) -> float:
    """What a typical implementation does: the SDK's typed decoding of get_events results, one
    row per event from the typed objects (raw_event re-encoded by the SDK), pandas, to_parquet."""
    import pandas as pd
    from dropbox import stone_serializers
    from dropbox.team_log import GetTeamEventsResult_validator, TeamEvent_validator

    def tag(union) -> str | None:
        return None if union is None else union._tag

    started = time.perf_counter()
    rows = []
    for page in pages:
        result = stone_serializers.json_decode(GetTeamEventsResult_validator, page, strict=False)
        for event in result.events:
            actor = event.actor
            inner = None
            if actor is not None and actor._tag in ("user", "admin"):
                inner = actor.get_user() if actor.is_user() else actor.get_admin()
            origin = event.origin
            geo = origin.geo_location if origin is not None else None
            details = event.details
            rows.append(
                {
                    "timestamp": event.timestamp,
                    "event_type": tag(event.event_type),
                    "event_category": tag(event.event_category),
                    "actor_type": tag(actor),
                    "actor_email": getattr(inner, "email", None),
                    "actor_display_name": getattr(inner, "display_name", None),
                    "ip_address": geo.ip_address if geo is not None else None,
                    "country": geo.country if geo is not None else None,
                    "access_method": tag(origin.access_method) if origin is not None else None,
                    "context_type": tag(event.context),
                    "details": tag(details),
                    "raw_event": stone_serializers.json_encode(TeamEvent_validator, event),
                }
            )
    frame = pd.DataFrame(rows)
    frame["auth_status"] = frame["actor_type"].map(
        lambda t: "unauthenticated" if t == "anonymous" else ("unknown" if t is None else "auth")
    )
    frame.to_parquet(path, compression="zstd")
    return time.perf_counter() - started


def bench_transform(client: EmulatorClient, events: int, baseline_events: int, work: str) -> dict:
    day_pages: list[tuple[date, list[bytes]]] = []  # each day's query, as the API pages it
    raws: list[bytes] = []
    day = CLOCK - timedelta(days=10)
    while len(raws) < events:
        served = client.truth(day, day + timedelta(days=1))[: events - len(raws)]
        day_pages.append((day.date(), pages_of(served, shuffle=True)))
        raws += served
        day -= timedelta(days=1)
    import pyarrow as pa

    pa.set_cpu_count(1)  # "events/s on one core": no Arrow thread pool helping
    pa.set_io_thread_count(1)
    raw_bytes = sum(len(r) for r in raws)
    # best of 3: the first run also pays first-use costs (imports, allocator, page cache)
    ours = min(transform_ours(day_pages, tempfile.mkdtemp(dir=work)) for _ in range(3))
    recent = min(
        transform_ours(day_pages, tempfile.mkdtemp(dir=work), settled=False) for _ in range(3)
    )
    sample = pages_of(raws[:baseline_events])
    base = transform_baseline(sample, os.path.join(work, "baseline.parquet"))
    ours_rate = len(raws) / ours
    base_rate = baseline_events / base
    return {
        "transform_events": len(raws),
        "transform_raw_bytes_per_event": round(raw_bytes / len(raws)),
        "transform_events_per_s": round(ours_rate),
        "transform_hour_files_events_per_s": round(len(raws) / recent),
        "transform_baseline_events": baseline_events,
        "transform_baseline_events_per_s": round(base_rate),
        "transform_speedup": round(ours_rate / base_rate, 1),
        "transform_path": "decode_page+events_to_batch",
    }


# --- 2, 4, 5, 6: backfill, storage, incremental, queries ----------------------------------------


def bench_backfill(client: EmulatorClient, latency: float, days: int, work: str) -> dict:
    as_of = int(CLOCK.timestamp())
    root = os.path.join(work, "direct")
    expected = client.truth_count(CLOCK - timedelta(days=days), CLOCK)
    client.reset_stats()
    cpu_ours, cpu_emulator = _own_cpu(), client.cpu_seconds()
    run = run_sync("backfill", root, as_of, days=days)
    cpu_ours, cpu_emulator = _own_cpu() - cpu_ours, client.cpu_seconds() - cpu_emulator
    calls = team_log_calls(client)
    concurrency = api_concurrency()
    floor = calls * latency / concurrency
    first = CLOCK - timedelta(days=days)
    min_pages = sum(  # one unsplit query per day, full pages of 1000: the fewest calls possible
        max(1, math.ceil(client.truth_count(day, day + timedelta(days=1)) / 1000))
        for day in (first + timedelta(days=i) for i in range(days))
    )
    return {
        "backfill_days": days,
        "backfill_expected_events": expected,
        "backfill_events": run.events,
        "backfill_exact_count": run.events == expected,
        "backfill_api_calls": calls,
        "backfill_min_pages": min_pages,
        "latency_s": latency,
        "api_concurrency": concurrency,
        "backfill_wall_s": round(run.wall, 2),
        "backfill_floor_s": round(floor, 2),
        "backfill_ratio_to_floor": round(run.wall / floor, 2) if floor else None,
        "backfill_floor_min_pages_s": round(min_pages * latency / concurrency, 2),
        "backfill_ratio_to_min_pages_floor": round(run.wall * concurrency / min_pages / latency, 2),
        "backfill_events_per_s": round(run.events / run.wall),
        # What the 2 shared cores had to do: our process and the emulator serving the pages.
        "backfill_cpu_pipeline_s": round(cpu_ours, 1),
        "backfill_cpu_emulator_s": round(cpu_emulator, 1),
        "backfill_cpu_floor_2_cores_s": round((cpu_ours + cpu_emulator) / 2, 1),
        "_root": root,
    }


def bench_backfill_pool(client: EmulatorClient, latency: float, days: int, work: str) -> dict:
    """The same backfill with the day tasks run side by side, as a scheduler does within the
    `dropbox_api` pool: `api_concurrency()` slots, each task reading its day with one call at a
    time, so the team still sees at most that many calls in flight."""
    slots = api_concurrency()
    os.environ["DROPBOX_TEAM_LOG_API_CONCURRENCY"] = "1"
    try:
        client.reset_stats()
        run = run_sync(
            "backfill",
            os.path.join(work, "pool"),
            int(CLOCK.timestamp()),
            days=days,
            parallel_days=slots,
        )
    finally:
        del os.environ["DROPBOX_TEAM_LOG_API_CONCURRENCY"]
    calls = team_log_calls(client)
    floor = calls * latency / slots
    return {
        "pool_backfill_slots": slots,
        "pool_backfill_events": run.events,
        "pool_backfill_api_calls": calls,
        "pool_backfill_wall_s": round(run.wall, 2),
        "pool_backfill_floor_s": round(floor, 2),
        "pool_backfill_ratio_to_floor": round(run.wall / floor, 2) if floor else None,
    }


def bench_airflow(client: EmulatorClient, days: int, direct_wall: float, work: str) -> dict:
    """The same backfill through `airflow dags test` (task runner, XCom, mapped tasks)."""
    airflow_env.migrate()
    root = os.path.join(work, "airflow")
    env = {**os.environ, "AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT": root}
    airflow = str(airflow_env.VENV_BIN / "airflow")
    subprocess.run(
        [airflow, "pools", "set", "dropbox_api", "4", "bench"],
        env=env,
        check=True,
        capture_output=True,
    )
    client.reset_stats()
    started = time.perf_counter()
    done = subprocess.run(
        [
            *(airflow, "dags", "test", "dropbox_team_log_backfill", CLOCK.isoformat()),
            *("--conf", json.dumps({"days": days})),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"airflow dags test failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    events = _count_rows(root)
    return {
        "airflow_backfill_wall_s": round(wall, 2),
        "airflow_backfill_events": events,
        "airflow_api_calls": team_log_calls(client),
        "airflow_overhead_s": round(wall - direct_wall, 2),
        "airflow_ratio_to_direct": round(wall / direct_wall, 2),
    }


def _glob(root: str) -> str:
    from dropbox_team_log.schema import DAY_FILES_GLOB

    return os.path.join(root, DAY_FILES_GLOB)


def _count_rows(root: str) -> int:
    import duckdb

    sql = "SELECT count(*) FROM read_parquet(?)"
    return duckdb.connect().execute(sql, [_glob(root)]).fetchone()[0]


def bench_storage(root: str) -> dict:
    """Bytes on disk per event, against the raw JSON bytes the rows keep (raw_event)."""
    import duckdb

    from dropbox_team_log.schema import DAY_FILES_GLOB

    on_disk = sum(p.stat().st_size for p in Path(root).glob(DAY_FILES_GLOB))
    rows, raw = (
        duckdb.connect()
        .execute("SELECT count(*), sum(strlen(raw_event)) FROM read_parquet(?)", [_glob(root)])
        .fetchone()
    )
    return {
        "storage_bytes_per_event": round(on_disk / rows, 1),
        "storage_raw_json_bytes_per_event": round(raw / rows, 1),
        "storage_share_of_raw_json": round(on_disk / raw, 3),
    }


def bench_incremental(client: EmulatorClient, root: str, new_events: int, epd: float) -> dict:
    """A run right after the backfill (nothing new), then one after ~new_events more arrived."""
    as_of = int(CLOCK.timestamp())
    client.reset_stats()
    idle = run_sync("incremental", root, as_of)
    idle_calls = team_log_calls(client)
    hours = max(1, round(new_events / (epd / 24)))
    client.advance(hours * 3600)
    later = as_of + hours * 3600
    arrived = client.truth_count(as_of, later, as_of=later)
    client.reset_stats()
    busy = run_sync("incremental", root, later)
    return {
        "incr_idle_api_calls": idle_calls,
        "incr_idle_wall_s": round(idle.wall, 3),
        "incr_new_events": arrived,
        "incr_busy_events_fetched": busy.events,
        "incr_busy_api_calls": team_log_calls(client),
        "incr_busy_wall_s": round(busy.wall, 2),
    }


QUERIES = {
    "per_day_by_auth_status": """
        SELECT event_date, auth_status, count(*) AS events
        FROM read_parquet(?, hive_partitioning = true)
        GROUP BY ALL ORDER BY ALL""",
    "top_unauthenticated_links": """
        SELECT coalesce(json_extract_string(details, '$.shared_content_link'),
                        json_extract_string(assets, '$[0].display_name')) AS link_or_file,
               count(*) AS views
        FROM read_parquet(?, hive_partitioning = true)
        WHERE auth_status = 'unauthenticated'
        GROUP BY 1 ORDER BY views DESC, link_or_file LIMIT 10""",
    "baseline_count_star": "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)",
}


def bench_queries(root: str) -> dict:
    import duckdb

    out = {}
    db = duckdb.connect()
    for name, sql in QUERIES.items():
        db.execute(sql, [_glob(root)]).fetchall()  # warm the OS cache: time the query only
        started = time.perf_counter()
        db.execute(sql, [_glob(root)]).fetchall()
        out[f"query_{name}_s"] = round(time.perf_counter() - started, 3)
    return out


def bench_detections(root: str) -> dict:
    """Every detection over the whole benchmark dataset (what the detections DAG does on its
    first run, a backfill's worth of changed days), and the evaluation of one changed day."""
    from dropbox_team_log.analytics.findings import evaluate

    evaluate(root)  # warm the OS cache: time the detections only
    full = evaluate(root)
    last_day = date.fromisoformat(max(p.name for p in Path(root).glob("event_date=*"))[11:])
    one_day = evaluate(root, since=last_day)
    return {
        "detections_events": full.events,
        "detections_findings": len(full.rows),
        "detections_wall_s": round(full.seconds, 3),
        "detections_events_per_s": round(full.events / full.seconds),
        "detections_one_changed_day_s": round(one_day.seconds, 3),
    }


def bench_ocsf(root: str, work: str) -> dict:
    """The OCSF export of the whole benchmark dataset on one core (DuckDB and Arrow at one
    thread): hive layout, best of 3 (the first run also pays first-use costs); then once with
    the Security Lake layout too (each file encoded once, written twice). Events per CPU second
    (the export's user + system time) is the per-core figure; per wall second it also counts
    the time other processes hold the cores."""
    import pyarrow as pa

    from dropbox_team_log.analytics.ocsf_export import SecurityLakeTarget, export

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    out = os.path.join(work, "ocsf")
    best = min((export(root, out, threads=1) for _ in range(3)), key=lambda r: r.cpu_seconds)
    lake = SecurityLakeTarget(region="us-east-1", account_id="123456789012")
    both = export(root, os.path.join(work, "ocsf-both"), security_lake=lake, threads=1)
    on_disk = sum(p.stat().st_size for p in Path(out).rglob("*.parquet"))
    return {
        "ocsf_events": best.records,
        "ocsf_classes": len(best.by_class),
        "ocsf_export_s": round(best.seconds, 3),
        "ocsf_export_cpu_s": round(best.cpu_seconds, 3),
        "ocsf_events_per_s": round(best.events_per_second),
        "ocsf_events_per_cpu_s": round(best.events_per_cpu_second),
        "ocsf_both_layouts_events_per_s": round(both.events_per_second),
        "ocsf_both_layouts_events_per_cpu_s": round(both.events_per_cpu_second),
        "ocsf_bytes_per_event": round(on_disk / best.records, 1),
    }


# --- 3. memory ----------------------------------------------------------------------------------


#: The emulator makes a weekday (the memory day is one) 1.2x its --events-per-day, +-15%.
WEEKDAY_FACTOR = 1.2


def bench_memory(events: int, work: str, *, s3: bool = True) -> dict:
    """Peak RSS of a fresh process that syncs one day of about `events` events (no latency),
    with the environment the Dockerfile gives a worker (`settings.WORKER_ENV`): into a local
    folder (`memory_*`), then, with `s3`, the same day into an S3 root on moto (`memory_s3_*`)."""
    with emulator(events / WEEKDAY_FACTOR, seed=12) as client:
        connect(client)
        day = CLOCK - timedelta(days=3)
        expected = client.truth_count(day, day + timedelta(days=1))
        figures = run_memory_child(os.path.join(work, "memory"), day.date(), {})
        if s3:
            with s3_server() as env:
                on_s3 = run_memory_child(f"s3://{S3_BUCKET}/memory", day.date(), env)
            figures |= {key.replace("memory_", "memory_s3_", 1): v for key, v in on_s3.items()}
    figures["memory_day_events_expected"] = expected
    return figures


def run_memory_child(root: str, day: date, env: dict[str, str]) -> dict:
    """`memory_child` in a fresh process with `env` added to a worker's environment."""
    from dropbox_team_log.settings import WORKER_ENV

    child = subprocess.run(
        [*(sys.executable, "-m", "bench.run", "--memory-child"), root, day.isoformat()],
        cwd=REPO,
        env={**os.environ, **WORKER_ENV, **env},
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise SystemExit(f"memory child failed:\n{child.stdout[-2000:]}\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


S3_BUCKET = "dtl-bench"


@contextmanager
def s3_server() -> Generator[dict[str, str], None, None]:
    """moto's S3 on a loopback port with bucket `S3_BUCKET`; the AWS environment that reaches it
    (moto keeps objects in this process: the child's memory is what is measured)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=S3_BUCKET)
        yield env
    finally:
        server.stop()


def peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM). Not `ru_maxrss`: Linux folds the parent's RSS at
    the (v)fork into a child's ru_maxrss across exec, so it would report the bench's own size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: peak RSS needs Linux")


def memory_child(root: str, day: str) -> None:
    from dropbox_team_log.sync.planning import DaySpan
    from dropbox_team_log.tasks import sync_tasks
    from dropbox_team_log.timeutil import day_start

    base = peak_rss_mb()
    lo = day_start(datetime.fromisoformat(day).date())
    span = DaySpan(datetime.fromisoformat(day).date(), lo, lo + DAY)
    started = time.perf_counter()
    report = sync_tasks.sync_day({**sync_job(root, int(CLOCK.timestamp())), **span.to_xcom()})
    wall = time.perf_counter() - started
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "memory_day_events": report["events"],
                "memory_rss_after_imports_mb": round(base),
                "memory_peak_rss_mb": round(peak),
                "memory_day_wall_s": round(wall, 2),
            }
        )
    )


# --- report -------------------------------------------------------------------------------------

TARGETS = {
    "transform_events_per_s": (">=", 100_000),
    "transform_speedup": (">=", 25),
    "ocsf_events_per_cpu_s": (">=", 100_000),  # per core: the export's CPU time
    "ocsf_to_transform_ratio": (">=", 1.0),  # the same, against the transform in the same run
    "backfill_ratio_to_floor": ("<=", 1.3),
    "pool_backfill_ratio_to_floor": ("<=", 1.3),
    "memory_peak_rss_mb": ("<=", 300),
    "memory_s3_peak_rss_mb": ("<=", 300),  # the same day into S3, sent a part at a time
    "storage_share_of_raw_json": ("<=", 0.20),
    "incr_idle_api_calls": ("<=", 2),
    "fresh_tail_p95_s": ("<=", 300),
    "fresh_tail_p95_s_at_2m": ("<=", 300),
    "fresh_tail_fetches_per_event": ("<=", 3),
    "fresh_tail_cpu_h_per_day_at_2m": ("<=", 0.1),
    "incr_hours_rows_written_per_new_row": ("<=", 10),
    "incr_hours_wall_end_over_start": ("<=", 1.3),
    "incr_hours_events_fetched_per_event": ("<=", 3),
    "incr_hours_cpu_h_per_day_at_scale_1": ("<=", 0.1),
}


def run_freshness(events_per_day: float, args: argparse.Namespace, work: str) -> dict:
    """bench/freshness.py on an emulator of its own: a 2M-a-day team (times the scale), then a
    smaller team (`--fresh-fit-scale`) for the fit of CPU per run to events per run."""
    from bench.freshness import cpu_per_day_at_2m, schedule_seconds

    figures = _freshness_at(events_per_day, args, f"{work}/fresh-main")
    runs = figures.pop("_runs")
    small = 2_000_000 * args.fresh_fit_scale
    if args.fresh_fit_scale and small != events_per_day:
        step("freshness fit", f"the same runs for a {small:,.0f}-events-a-day team")
        other = _freshness_at(small, args, f"{work}/fresh-fit")
        runs += other["_runs"]
        figures["fresh_fit_events_per_day"] = other["fresh_events_per_day"]
        figures["fresh_fit_cpu_h_per_day"] = other["fresh_tail_cpu_h_per_day"]
    return figures | cpu_per_day_at_2m(runs, schedule_seconds())


def _freshness_at(events_per_day: float, args: argparse.Namespace, work: str) -> dict:
    from bench.freshness import bench_freshness
    from dropbox_emulator.__main__ import build_parser, config_from_args
    from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook

    days = 3
    config = config_from_args(build_parser().parse_args(emulator_args(events_per_day, days=days)))
    with emulator(events_per_day, latency=args.latency, days=days) as client:
        connect(client)
        reader = DropboxTeamHook(dropbox_team_conn_id=CONN_ID).event_reader()
        return bench_freshness(
            client,
            config,
            reader,
            work,
            hours=args.fresh_hours,
            warmup=args.fresh_warmup,
            own_cpu=_own_cpu,
            calls=lambda: team_log_calls(client),
        )


def print_table(figures: dict) -> None:
    print()
    print(f"{'figure':<40} {'value':>16}  target")
    print("-" * 72)
    for key, value in figures.items():
        target = ""
        if key in TARGETS:
            op, bound = TARGETS[key]
            met = value is not None and (value >= bound if op == ">=" else value <= bound)
            target = f"{op} {bound}  {'met' if met else 'MISSED'}"
        print(f"{key:<40} {value!s:>16}  {target}")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25, help="1 = the issue's sizes")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per team_log call")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--skip-airflow", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--memory-events",
        type=float,
        default=2_000_000,
        help="events of the memory day (the issue's 2M whatever the scale: 1-3 minutes)",
    )
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument(
        "--fresh-hours",
        type=float,
        default=2.0,
        help="hours of tail runs in the freshness step (it takes 8-16 minutes at scale 0.25)",
    )
    parser.add_argument(
        "--fresh-warmup", type=float, default=24.0, help="hours the tail's chain starts earlier"
    )
    parser.add_argument(
        "--fresh-fit-scale",
        type=float,
        default=0.05,
        help="the freshness step's second, smaller team (for the CPU fit; 0: none; ~2 minutes)",
    )
    parser.add_argument(
        "--incr-scale",
        type=float,
        default=0.05,
        help="the day of incremental runs: share of the issue's 2M events a day (1 = the issue's)",
    )
    parser.add_argument(
        "--incr-no-baseline",
        action="store_true",
        help="skip the day of runs on whole-day files (the old layout, the slow part)",
    )
    parser.add_argument(
        "--only-incremental-day", action="store_true", help="run the day of incremental runs only"
    )
    parser.add_argument(
        "--only-backfill",
        action="store_true",
        help="the sequential backfill, its storage and the queries over it only (~2 minutes)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--memory-child", nargs=2, metavar=("ROOT", "DAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        logging.disable(logging.INFO)
        memory_child(*args.memory_child)
        return 0

    logging.disable(logging.INFO)  # the per-call and per-day logs would bury the figures
    work = tempfile.mkdtemp(prefix="dtl-bench-")
    total = 1_000_000 * args.scale
    epd = total / args.days
    figures: dict = {"scale": args.scale, "cores": os.cpu_count()}
    started = time.perf_counter()
    try:
        if args.only_incremental_day:
            figures |= _incremental_day(args, work)
            return _report(figures, started)
        with emulator(epd, latency=args.latency, days=args.days) as client:
            connect(client)
            if args.only_backfill:
                step("backfill", f"{args.days} days, ~{total:,.0f} events, {args.latency}s a call")
                client.truth_count()  # not timed: the emulator generates its days on first use
                backfill = bench_backfill(client, args.latency, args.days, work)
                root = backfill.pop("_root")
                figures |= backfill | bench_storage(root) | bench_queries(root)
                return _report(figures, started)
            step("transform", "page bytes -> rows -> Parquet, and the SDK-typed baseline")
            figures |= bench_transform(client, int(50_000 * min(1, args.scale * 2)), 5_000, work)
            step("backfill", f"{args.days} days, ~{total:,.0f} events, {args.latency}s per call")
            client.truth_count()  # not timed: the emulator generates its days on first use
            backfill = bench_backfill(client, args.latency, args.days, work)
            root = backfill.pop("_root")
            figures |= backfill
            figures |= bench_backfill_pool(client, args.latency, args.days, work)
            figures |= bench_storage(root)
            step("queries", "DuckDB over the backfill dataset")
            figures |= bench_queries(root)
            step("detections", "every detect_* view over the backfill dataset")
            figures |= bench_detections(root)
            step("ocsf", "OCSF export of the backfill dataset, one core")
            figures |= bench_ocsf(root, work)
            figures["ocsf_to_transform_ratio"] = round(
                figures["ocsf_events_per_cpu_s"] / figures["transform_events_per_s"], 2
            )
            if not args.skip_airflow:
                step("airflow", "the same backfill via `airflow dags test`")
                figures |= bench_airflow(client, args.days, backfill["backfill_wall_s"], work)
            step("incremental", "nothing new, then ~100k new events")
            figures |= bench_incremental(client, root, int(100_000 * args.scale), epd)
        figures |= _incremental_day(args, work)
        if not args.skip_freshness:
            epd = 2_000_000 * args.scale  # the issue's 2M events a day, times the scale
            step("freshness", f"tail polls of a {epd:,.0f}-events-a-day team, and the baseline")
            figures |= run_freshness(epd, args, work)
        if not args.skip_memory:
            step("memory", f"one day of ~{args.memory_events:,.0f} events in a fresh process")
            figures |= bench_memory(args.memory_events, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return _report(figures, started)


def _incremental_day(args: argparse.Namespace, work: str) -> dict:
    from bench.incremental_day import bench_incremental_day

    events = 2_000_000 * args.incr_scale
    step("incremental day", f"a day of runs, {events:,.0f} events a day, hour vs day files")
    return bench_incremental_day(args.incr_scale, work, baseline=not args.incr_no_baseline)


def _report(figures: dict, started: float) -> int:
    figures["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print_table(figures)
    print(json.dumps(figures, separators=(",", ":")))
    return 0


def step(name: str, what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
