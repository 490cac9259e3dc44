"""deployment: roots resolved once and the same in every process, and S3 credentials from an
Airflow AWS connection.

A relative root is planned, synced and read from three working directories and ends in one
folder; the AWS connection (AIRFLOW_CONN_* JSON) is read with and without the Amazon provider
and used against a local S3 server (moto), its secret masked.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import fsspec.config
import pytest

from dropbox_team_log import deployment
from dropbox_team_log.analytics import views
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.errors import ConnectionConfigError
from tests.dataset.test_store import DAY, HI, LO, ids, make_batch
from tests.dataset.test_store_s3 import KEYS, bucket, s3_endpoint
from tests.test_pipeline import T0, connected, dagbag, emu

__all__ = ["bucket", "connected", "dagbag", "emu", "s3_endpoint"]  # fixtures

SECRET = "dtl-aws-secret-key-d4e5f6a7"  # distinctive, to look for it in the output


# --- paths ------------------------------------------------------------------------------------


def test_local_paths_resolve_from_airflow_home_and_urls_stay_as_given(monkeypatch, tmp_path):
    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.chdir(tmp_path)
    assert deployment.resolve_path("data/x") == str(home / "data" / "x")
    assert deployment.resolve_path("./data/../y/") == str(home / "y")
    assert deployment.resolve_path("~/team log") == str(tmp_path / "me" / "team log")
    assert deployment.resolve_path("file://rel/z") == str(home / "rel" / "z")
    assert deployment.resolve_path("file:///abs/z") == "/abs/z"
    assert deployment.resolve_path("/abs/data[1]") == "/abs/data[1]"  # literally
    assert deployment.resolve_path("s3://bucket/rel") == "s3://bucket/rel"
    assert deployment.resolve_path("  ") == "  "  # left for the root check to refuse


def test_a_relative_root_planned_synced_and_read_from_three_folders_is_one_folder(
    emu, dagbag, connected, tmp_path, monkeypatch
):
    """The plan in one working directory, the day tasks in another, the reader in a third:
    one dataset, under AIRFLOW_HOME, and nothing written where the processes happened to be."""
    from dropbox_team_log.tasks import sync_tasks

    relative = f"rel-{uuid.uuid4().hex[:8]}/dataset"
    expected = Path(os.environ["AIRFLOW_HOME"], relative)
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", relative)
    folders = [tmp_path / name for name in ("planner", "worker", "analyst")]
    for folder in folders:
        folder.mkdir()
    emu.set_clock(T0)
    monkeypatch.chdir(folders[0])
    jobs = sync_tasks.plan_days("backfill", {"days": 1}, {"logical_date": T0})
    assert jobs and {job["root"] for job in jobs} == {str(expected)}  # absolute in the XCom
    monkeypatch.chdir(folders[1])
    events = sum(sync_tasks.sync_day(job)["events"] for job in jobs)
    monkeypatch.chdir(folders[2])
    root = deployment.output_root()
    assert root == str(expected)
    con = views.connect(root)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == events > 0
    con.close()
    assert all(not any(folder.iterdir()) for folder in folders)


# --- S3 credentials from an AWS connection ----------------------------------------------------


@pytest.fixture
def aws_connection_only(s3_endpoint, bucket, monkeypatch):
    """Once the bucket is made, no AWS credentials in the environment and its endpoint
    unreachable: only an AWS connection (`dtl_aws`, as AIRFLOW_CONN_ JSON) reaches moto.
    fsspec's defaults and s3fs's cached clients are this test's own."""
    import s3fs

    for name in KEYS:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing there
    monkeypatch.setattr(fsspec.config, "conf", {})
    connection = {
        "conn_type": "aws",
        "login": "dtl-access-key-id",
        "password": SECRET,
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DTL_AWS", json.dumps(connection))
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_AWS_CONN_ID", "dtl_aws")
    s3fs.S3FileSystem.clear_instance_cache()
    yield "dtl_aws"
    s3fs.S3FileSystem.clear_instance_cache()


def test_the_dags_write_and_read_s3_with_an_aws_connection(
    aws_connection_only, bucket, emu, dagbag, connected, monkeypatch, capfd
):
    from tests.helpers.pipeline import run_dag

    url = f"s3://{bucket}/team-log"
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", url)
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 1})
    run_dag(emu, "dropbox_team_log_report", T0 + timedelta(minutes=5))
    out = capfd.readouterr()
    assert SECRET not in out.out + out.err
    dataset = EventDataset(url)  # this process uses the connection now too
    assert len(dataset.days()) == 2
    assert dataset.fs.exists(f"{bucket}/team-log/_reports/dropbox_team_log_report.html")


def test_without_the_amazon_provider_the_connection_fields_are_used(
    aws_connection_only, bucket, s3_endpoint, monkeypatch
):
    monkeypatch.setitem(sys.modules, "airflow.providers.amazon.aws.hooks.base_aws", None)
    assert deployment.s3_options("dtl_aws") == {
        "key": "dtl-access-key-id",
        "secret": SECRET,
        "token": None,
        "endpoint_url": s3_endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
    }
    url = f"s3://{bucket}/events"
    deployment.use_aws_connection(url, deployment.aws_conn_id())
    dataset = EventDataset(url)
    dataset.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1], "a")], fetched_at=HI)
    assert ids(dataset.read_day(DAY)) == ["a#0"]


def test_the_secret_key_is_masked_in_logs(aws_connection_only):
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    deployment.s3_options("dtl_aws")
    assert SECRET not in str(redact(f"key={SECRET}"))


def test_a_local_root_or_no_connection_changes_nothing(aws_connection_only, tmp_path):
    deployment.use_aws_connection(str(tmp_path), "dtl_aws")
    deployment.use_aws_connection("s3://bucket/x", None)
    assert fsspec.config.conf == {}


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        (None, "names the AWS connection 'dtl_aws', which does not exist: create it"),
        ({"conn_type": "aws", "login": "id-only"}, "no secret access key"),
    ],
)
def test_a_missing_or_half_filled_connection_says_what_to_fix(
    aws_connection_only, monkeypatch, connection, message
):
    monkeypatch.setitem(sys.modules, "airflow.providers.amazon.aws.hooks.base_aws", None)
    if connection is None:
        monkeypatch.delenv("AIRFLOW_CONN_DTL_AWS")
    else:
        monkeypatch.setenv("AIRFLOW_CONN_DTL_AWS", json.dumps(connection))
    with pytest.raises(ConnectionConfigError, match=message):
        deployment.use_aws_connection("s3://bucket/x", "dtl_aws")


def test_the_plan_refuses_a_missing_aws_connection_before_any_api_call(
    aws_connection_only, bucket, emu, dagbag, connected, monkeypatch, capfd
):
    from tests.helpers.pipeline import event_calls, fresh_dag

    monkeypatch.delenv("AIRFLOW_CONN_DTL_AWS")
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", f"s3://{bucket}/x")
    emu.set_clock(T0)
    calls = event_calls(emu)
    run = fresh_dag("dropbox_team_log_backfill").test(logical_date=T0, run_conf={"days": 2})
    assert run.state == "failed"
    seen = capfd.readouterr()
    assert "AWS connection 'dtl_aws', which does not exist" in seen.out + seen.err
    assert event_calls(emu) == calls
