"""The OCSF export DAG in real Airflow runs (`dag.test`): after a backfill it writes the Security
Lake layout its Variable names, every event of the dataset once; a run with nothing new writes
nothing; a wrong Variable fails the run at once, saying what to fix, and writes nothing.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dropbox_team_log.settings import (
    ALERT_STATE_VARIABLE,
    OCSF_EXPORT_DAG_ID,
    OCSF_STATE_DIR,
    TEAMS_VARIABLE,
)
from tests.analytics.test_ocsf_export import LAKE_FILE, dataset_raw_events
from tests.helpers.connecting import delete_variable
from tests.helpers.detection_data import T0, team_emulator
from tests.helpers.pipeline import run_dag

LAKE_SETTING = {"layout": "security-lake", "region": "eu-west-1", "account_id": "123456789012"}
VARIABLE_ENV = "AIRFLOW_VAR_DROPBOX_TEAM_LOG_OCSF_EXPORT"


@pytest.fixture
def airflow_output(tmp_path, monkeypatch, airflow_db):
    root = tmp_path / "dataset"
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):  # no team or alert of an earlier test
        delete_variable(key)
    yield root
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):
        delete_variable(key)


def lake_files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*.parquet"))
        if LAKE_FILE.fullmatch(str(p.relative_to(out)))
    }


def test_the_dag_keeps_a_security_lake_copy_of_the_dataset(airflow_output, airflow_db, monkeypatch):
    relative = f"ocsf-lake-{uuid.uuid4().hex}"  # taken from AIRFLOW_HOME, as every path
    lake = airflow_db / relative
    monkeypatch.setenv(VARIABLE_ENV, json.dumps({"out": relative, **LAKE_SETTING}))
    try:
        with team_emulator(days=3) as emu:
            run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 2})
            run_dag(emu, OCSF_EXPORT_DAG_ID, T0 + timedelta(minutes=1))
            written = lake_files(lake)
            every_file = {str(p.relative_to(lake)) for p in lake.rglob("*.parquet")}
            assert written and set(written) == every_file  # the lake layout only: no hive copy
            raws = [r for n in written for r in pq.read_table(lake / n)["raw_data"].to_pylist()]
            assert sorted(raws) == sorted(dataset_raw_events(airflow_output).elements())

            run_dag(emu, OCSF_EXPORT_DAG_ID, T0 + timedelta(minutes=2))  # nothing written since
            assert lake_files(lake) == written
    finally:
        shutil.rmtree(lake, ignore_errors=True)


def test_a_wrong_variable_fails_the_run_and_writes_nothing(
    airflow_output, tmp_path, monkeypatch, capsys
):
    lake = tmp_path / "lake"
    monkeypatch.setenv(VARIABLE_ENV, json.dumps({"out": str(lake), "layout": "security-lake"}))
    with team_emulator(days=2) as emu:
        run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 1})
        run = run_dag(emu, OCSF_EXPORT_DAG_ID, T0 + timedelta(minutes=1), expect="failed")
    (ti,) = run.get_task_instances()
    assert ti.task_id == "export_ocsf"
    assert "needs dropbox_team_log_ocsf_export.region, an AWS region" in capsys.readouterr().out
    assert not lake.exists() and not (airflow_output / OCSF_STATE_DIR).exists()
