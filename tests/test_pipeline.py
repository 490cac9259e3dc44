"""The two DAGs, run for real through Airflow (dag.test) against the emulator over HTTP.

Every exactness claim is checked against the emulator's ground truth, duplicates counted:
- settled time (older than the run's time minus the settle window) equals the *final* truth;
- fresher time never holds an event more often than it exists.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import timedelta

import pytest

from dropbox_team_log.settings import TEAMS_VARIABLE
from tests.helpers.connecting import delete_variable
from tests.helpers.pipeline import (
    DAGS_FOLDER,
    connection_json,
    dataset_raws,
    event_calls,
    fresh_dag,
    multiset,
    run_dag,
    settled_until,
    utc,
)

T0 = utc(2026, 11, 20, 10, 30, 15)  # the moment the admin connected the team
SETTLE = timedelta(hours=25)
BACKFILL_START = T0 - timedelta(days=60)
HORIZON = timedelta(days=2)  # truth "as of" T + 2 days: every late event has landed


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=11,
        clock=T0,
        timeline_start=T0 - timedelta(days=62),
        timeline_end=T0 + timedelta(days=6),
        events_per_day=120,
        page_size=40,
        empty_page_rate=0.05,
        duplicate_rate=0.02,
        late_rate=0.3,
        unknown_type_rate=0.01,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=DAGS_FOLDER)
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def connected(emu, airflow_db):
    """The team of the default connection: the only one the DAGs run when no team is
    registered (a module that ran `connect` before on this worker may have left a registry)."""
    delete_variable(TEAMS_VARIABLE)
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", connection_json(emu, connected_at=T0))
    yield
    mp.undo()


@pytest.fixture
def output(tmp_path, monkeypatch):
    root = tmp_path / "dataset"
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    return root


def asset_events() -> int:
    """Asset events recorded for the dataset's Asset (downstream DAGs schedule on them)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count(AssetEvent.id))
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == "dropbox_team_log_events")
        )


def check_exact(root, emu, lo, hi, as_of):
    got = multiset(dataset_raws(str(root), lo, hi))
    want = multiset(emu.truth(lo, hi, as_of=as_of))
    assert sum(got.values()) == sum(want.values()), (lo, hi)
    assert got == want


def check_never_overcounts(root, emu, lo, hi, as_of):
    got = multiset(dataset_raws(str(root), lo, hi))
    want = multiset(emu.truth(lo, hi, as_of=as_of))
    extra = got - want
    assert not extra, f"{sum(extra.values())} rows more than the API holds in [{lo}, {hi})"


@pytest.fixture(scope="module")
def backfilled(emu, dagbag, connected, tmp_path_factory):
    """One 60-day backfill at T0, shared (tests copy it before changing it)."""
    root = tmp_path_factory.mktemp("backfill") / "dataset"
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    emu.clear_faults()
    run_dag(emu, "dropbox_team_log_backfill", T0)
    mp.undo()
    return root


def test_backfill_is_exact_for_the_60_days_before_connection(backfilled, emu):
    # Everything the API held at T0 for the whole range, byte-identical duplicates included.
    check_exact(backfilled, emu, BACKFILL_START, T0, as_of=T0)
    days = sorted(p.name for p in backfilled.iterdir() if p.name.startswith("event_date="))
    assert days[0] == f"event_date={BACKFILL_START.date()}" and len(days) == 61
    assert not list(backfilled.glob("event_date=*/.*")), "temp files left behind"
    assert asset_events() >= 61, "each day written should emit an Asset event"
    # Late events just before connected_at are not there yet: that is what settling is for.
    assert len(emu.truth(T0 - SETTLE, T0, as_of=T0 + HORIZON)) > len(
        emu.truth(T0 - SETTLE, T0, as_of=T0)
    )


def test_backfill_rerun_changes_nothing(backfilled, emu, dagbag, output):
    shutil.copytree(backfilled, output)
    before = {p: p.read_bytes() for p in output.rglob("*.parquet")}
    stats_before = event_calls(emu)
    run_dag(emu, "dropbox_team_log_backfill", T0)
    assert {p: p.read_bytes() for p in output.rglob("*.parquet")} == before
    calls = event_calls(emu)
    assert calls == stats_before, "a finished day was re-fetched"


#: One entry per run, in turn. An incremental run makes a few team_log calls (2-7, at least one
#: continue), so each fault lands early enough to fire in whichever run it is given.
FAULT_ROTATION = [
    [{"kind": "rate_limit", "route": "2/team_log/*", "every": 2, "count": 2, "retry_after": 0}],
    [{"kind": "expire_access_token", "route": "2/team_log/*", "count": 1}],
    [{"kind": "cursor_reset", "count": 2}],
    [{"kind": "bad_cursor", "count": 1}],
    [{"kind": "server_error", "route": "2/team_log/*", "count": 2}],
    [
        {"kind": "drop_connection", "route": "2/team_log/*", "count": 1},
        {"kind": "truncated_body", "route": "2/team_log/*", "after": 1, "count": 1},
    ],
]


def test_incremental_runs_over_three_days_converge_to_truth(backfilled, emu, dagbag, output):
    """Backfill at T0, then incremental runs every 12 h for 3 simulated days, under faults (each
    entry of the rotation in one run; late events settle across the hand-off)."""
    shutil.copytree(backfilled, output)
    injected_before = Counter(emu.stats().get("faults_injected", {}))
    at = T0
    for step in range(1, 3 * 2 + 1):
        at = T0 + timedelta(hours=12 * step)
        emu.set_faults(FAULT_ROTATION[step % len(FAULT_ROTATION)])
        run_dag(emu, "dropbox_team_log_incremental", at)
        emu.clear_faults()
        settled = settled_until(at)  # whole settle batches (an hour) before at - SETTLE
        # Settled: exactly the final truth (late events included, nothing twice), hand-off too.
        check_exact(output, emu, BACKFILL_START, settled, as_of=at + HORIZON)
        # Fresh: possibly incomplete, never over-counted.
        check_never_overcounts(output, emu, settled, at, as_of=at + HORIZON)
    injected = Counter(emu.stats().get("faults_injected", {})) - injected_before
    kinds = {fault["kind"] for faults in FAULT_ROTATION for fault in faults}
    assert set(injected) == kinds, f"fault kinds that never fired: {kinds - set(injected)}"

    # Clearing and re-running the last run leaves the dataset exactly as it was.
    before = {p: p.read_bytes() for p in output.rglob("*.parquet")}
    run_dag(emu, "dropbox_team_log_incremental", at)
    assert {p: p.read_bytes() for p in output.rglob("*.parquet")} == before


def test_incremental_alone_fills_from_before_the_connection(emu, dagbag, connected, output):
    """Without a backfill, incremental runs still settle the hours just before connected_at
    (no gap at the hand-off), and a replay of an older run never moves data backwards."""
    late = T0 + timedelta(hours=26)
    run_dag(emu, "dropbox_team_log_incremental", T0 + timedelta(minutes=15))
    run_dag(emu, "dropbox_team_log_incremental", late)
    check_exact(output, emu, T0 - SETTLE, settled_until(late), as_of=late + HORIZON)
    before = {p: p.read_bytes() for p in output.rglob("*.parquet")}
    run_dag(emu, "dropbox_team_log_incremental", T0 + timedelta(minutes=15))
    assert {p: p.read_bytes() for p in output.rglob("*.parquet")} == before


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"days": 0}, "days"),
        ({"start": "2026-10-05", "end": "2026-10-01"}, "must be after start"),
        ({"start": "not-a-date", "end": "2026-10-01"}, "does not match"),  # trigger form
        ({"start": "2026-13-45", "end": "2026-10-01"}, "is not a date"),  # the plan
        ({"conn_id": "no_such_connection"}, "does not exist"),
    ],
)
def test_bad_params_fail_before_any_api_call(emu, dagbag, connected, output, conf, message, capfd):
    emu.set_clock(T0)
    calls_before = event_calls(emu)
    from airflow.sdk.exceptions import ParamValidationError

    try:
        run = fresh_dag("dropbox_team_log_backfill").test(logical_date=T0, run_conf=conf)
    except ParamValidationError as exc:  # Airflow's own check of the params' JSON schema
        assert message in str(exc)
    else:
        assert run.state == "failed"
        seen = capfd.readouterr()
        assert message in seen.out + seen.err
    assert event_calls(emu) == calls_before
    assert not output.exists()


def test_sync_tasks_are_labelled_by_connection_and_day(emu, dagbag, connected, output):
    run = run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 2})
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        labels = {
            ti.map_index: ti.rendered_map_index
            for ti in session.query(TaskInstance).filter_by(
                dag_id="dropbox_team_log_backfill", run_id=run.run_id, task_id="sync_day"
            )
        }
    days = [(T0 - timedelta(days=n)).date().isoformat() for n in (2, 1, 0)]
    assert sorted(labels.values()) == [f"dropbox_team_default {day}" for day in days]


#: The killed backfill's range: days enough for a kill early and one well into the run.
KILL_DAYS = 8


@pytest.mark.parametrize("kill_at_files", [2, 5])
def test_killed_backfill_leaves_a_valid_dataset_and_its_rerun_completes_it(
    emu, dagbag, connected, output, kill_at_files
):
    """SIGKILL a real `airflow dags test` mid-backfill: readers still see whole files and no
    event too often; the re-run then makes the range exact."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import pyarrow.dataset as ds

    conf = {"days": KILL_DAYS}
    lo = T0 - timedelta(days=KILL_DAYS)
    emu.clear_faults()
    emu.set_clock(T0)
    airflow = Path(sys.executable).parent / "airflow"
    command = [str(airflow), "dags", "test", "dropbox_team_log_backfill", T0.isoformat()]
    proc = subprocess.Popen(
        [*command, "--conf", json.dumps(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list(output.glob("event_date=*/*.parquet"))) < kill_at_files:
        assert proc.poll() is None and time.monotonic() < deadline, "backfill ended too soon"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    days_with_files = {p.parent for p in output.glob("event_date=*/*.parquet")}
    assert len(days_with_files) < KILL_DAYS + 1, "killed too late to matter"
    if output.exists():
        # Every visible file is a whole Parquet file (reading it fails otherwise).
        ds.dataset(str(output), format="parquet", partitioning="hive").to_table()
    check_never_overcounts(output, emu, lo, T0, as_of=T0)
    run_dag(emu, "dropbox_team_log_backfill", T0, conf)
    check_exact(output, emu, lo, T0, as_of=T0)
