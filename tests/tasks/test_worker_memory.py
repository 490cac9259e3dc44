"""The sync task's allocator settings, in a fresh process as Airflow runs a task.

A day is synced by `sync_tasks.sync_day` in a child process (real HTTP to the emulator, the real
SDK, the real dataset). The child reports what it loaded and which pool Arrow used; the parent reads
the Parquet back and compares it with the emulator's ground truth. How much memory that saves is
the bench's job (`make bench`: memory_peak_rss_mb), not a test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dropbox_team_log.settings import WORKER_ENV
from tests.helpers import paths
from tests.helpers.pipeline import connection_json, utc

REPO = paths.REPO
T = utc(2026, 11, 20, 12, 0, 0)
DAY = (T - timedelta(days=3)).date()

CHILD = """
import json, logging, sys
from tests.helpers import airflow_env
airflow_env.configure()
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from datetime import date
from dropbox_team_log.tasks import sync_tasks
from dropbox_team_log.sync.planning import DaySpan, SyncPolicy
from dropbox_team_log.timeutil import day_start
import pyarrow as pa
day = date.fromisoformat({day!r})
lo = day_start(day)
job = {{"as_of": {as_of}, "conn_id": "dropbox_team_default", "root": {root!r},
        "team_id": "dbtid:test", "policy": SyncPolicy().to_xcom(),
        **DaySpan(day, lo, lo + 86_400).to_xcom()}}
report = sync_tasks.sync_day(job)
after_sync = {{"pandas": "pandas" in sys.modules, "pool": pa.default_memory_pool().backend_name,
               "events": report["events"]}}
pa.table({{"a": [1]}}).to_pandas()  # pandas still works for code that wants it
print(json.dumps(after_sync))
"""


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(seed=5, clock=T, events_per_day=3000, duplicate_rate=0.02) as emu:
        yield emu


def run_sync_task(emu, root: Path, env: dict[str, str]) -> tuple[dict, str]:
    child_env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV}
    child_env["AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT"] = connection_json(emu, connected_at=T)
    source = CHILD.format(day=DAY.isoformat(), as_of=int(T.timestamp()), root=str(root))
    done = subprocess.run(
        [sys.executable, "-c", source],
        cwd=REPO,  # `python -c` imports from its working directory: the tests package
        env=child_env | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def test_a_sync_task_runs_on_the_system_allocator_without_loading_pandas(emu, tmp_path):
    report, _ = run_sync_task(emu, tmp_path, dict(WORKER_ENV))
    assert report["pool"] == "system"
    assert report["pandas"] is False
    lo = utc(DAY.year, DAY.month, DAY.day)
    truth = emu.truth(lo, lo + timedelta(days=1))
    raws = [
        raw
        for path in sorted(tmp_path.glob("event_date=*/*.parquet"))  # the day's hour files
        for raw in pq.read_table(path, columns=["raw_event"]).column("raw_event").to_pylist()
    ]
    assert sorted(raws) == sorted(e.decode() for e in truth)
    assert report["events"] == len(truth)


def test_a_worker_without_the_allocator_setting_is_told_so_and_still_syncs(emu, tmp_path):
    report, output = run_sync_task(emu, tmp_path, {})
    assert "ARROW_DEFAULT_MEMORY_POOL is not 'system'" in output
    assert report["pool"] == "system"  # pyarrow's own calls still use it
    assert report["events"] > 0
