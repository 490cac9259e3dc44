"""No secret is ever written anywhere: connect, a backfill, incremental runs and a run whose
refresh token is revoked mid-way, with a known (non-demo) app secret; then everything written is
scanned - task logs under AIRFLOW_HOME/logs, every table of Airflow's metadata DB, captured
stdout/stderr and log records, exception texts with their chains, every column of every Parquet
file - for the app secret, the refresh token and every access token issued. Also: the saved
connection is Fernet-encrypted in the DB, and the failure alert scrubs an error that quotes a
server's echo of the request."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import sqlite3
import traceback
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dropbox_team_log.cli import connect
from dropbox_team_log.cli.connect_options import ConnectOptions
from dropbox_team_log.cli.connection_store import load_saved
from dropbox_team_log.errors import RefreshTokenRevokedError
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from tests.helpers.connecting import (
    ACCESS_TOKEN_RE,
    APP_SECRET,
    delete_row,
    forget_connected,
    row_as_json,
    run_cli,
)
from tests.helpers.pipeline import run_dag
from tests.reliability.matrix import T0, record_scan

CONN_ID = "secret_scan"


def _metadata_db_dump(home: Path) -> str:
    """Every row of every table of the SQLite metadata DB, as SQL text."""
    with sqlite3.connect(home / "airflow.db") as db:
        return "\n".join(db.iterdump())


def _parquet_text(root: Path) -> tuple[int, str]:
    files = sorted(root.rglob("*.parquet"))
    parts = []
    for path in files:
        table = pq.read_table(path)
        for column in table.columns:
            parts.extend(str(v) for v in column.to_pylist())
        parts.append(str(pq.read_metadata(path).metadata))
    return len(files), "\n".join(parts)


def _logs_text(home: Path) -> tuple[int, str]:
    files = (
        [p for p in (home / "logs").rglob("*") if p.is_file()] if (home / "logs").is_dir() else []
    )
    return len(files), "\n".join(p.read_text(errors="replace") for p in files)


def _leaks(where: str, text: str, secrets: dict[str, str]) -> list[str]:
    found = [f"{name} in {where}" for name, value in secrets.items() if value and value in text]
    if ACCESS_TOKEN_RE.search(text):
        found.append(f"an access token (sl....) in {where}")
    return found


@pytest.fixture
def saved_conn(emu, airflow_db):
    """`dropbox-team-log connect` through its real flow, saved to the (Fernet-keyed) DB."""
    delete_row(CONN_ID)
    opts = dataclasses.replace(
        ConnectOptions(app_key=emu.config.app_key, app_secret=APP_SECRET, conn_id=CONN_ID),
        base_url=emu.base_url,
    )
    connect.run_connect(opts, read_code=emu.approve)
    yield load_saved(CONN_ID)
    forget_connected(CONN_ID)


def test_fernet_key_encrypts_the_saved_connection(saved_conn, airflow_db):
    assert os.environ.get("AIRFLOW__CORE__FERNET_KEY"), "the test session sets a Fernet key"
    row = saved_conn
    assert row.is_encrypted and row.is_extra_encrypted
    with sqlite3.connect(airflow_db / "airflow.db") as db:
        password, extra = db.execute(
            "SELECT password, extra FROM connection WHERE conn_id = ?", (CONN_ID,)
        ).fetchone()
    refresh_token = json.loads(row.extra)["refresh_token"]
    assert APP_SECRET not in password and refresh_token not in extra
    assert password.startswith("gAAAA") and extra.startswith("gAAAA")  # Fernet tokens


def test_nothing_written_holds_a_secret(
    emu, saved_conn, airflow_db, output, monkeypatch, spy, capfd, caplog
):
    refresh_token = json.loads(saved_conn.extra)["refresh_token"]
    extra = {**json.loads(saved_conn.extra), "connected_at": T0.strftime("%Y-%m-%dT%H:%M:%SZ")}
    # The DAGs read the grant the connect command saved (connected_at moved to the emulator's
    # time), through the conn_id param and Variable as a user would point them at it.
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", row_as_json(saved_conn, extra=extra))
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_CONN_ID", CONN_ID)
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 3})
    cli_output = []  # separate processes: Airflow's own connection test, and ours
    proc = run_cli("airflow", "connections", "test", CONN_ID)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cli_output += [proc.stdout, proc.stderr]
    emu.set_faults([{"kind": "expire_access_token", "route": "2/team_log/*", "every": 3}])
    for hours in (4, 8):
        run_dag(emu, "dropbox_team_log_incremental", T0 + timedelta(hours=hours))
    emu.set_faults([{"kind": "revoke_refresh_token", "route": "2/team_log/*", "after": 3}])
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 5}, expect="failed")  # 2 days due
    emu.clear_faults()
    errors = []
    try:
        DropboxTeamHook(dropbox_team_conn_id=CONN_ID).get_team_info()
    except RefreshTokenRevokedError as exc:
        errors.append("".join(traceback.format_exception(exc)))
        errors.append(repr(exc))
    ok, message = DropboxTeamHook(dropbox_team_conn_id=CONN_ID).test_connection()
    assert not ok and errors, "the revoked grant should fail"
    errors.append(message)
    proc = run_cli("dropbox-team-log", "test-connection", "--conn-id", CONN_ID)
    assert proc.returncode == 1 and "dropbox-team-log connect" in proc.stderr
    cli_output += [proc.stdout, proc.stderr]

    secrets = {"app secret": APP_SECRET, "refresh token": refresh_token}
    secrets.update({f"token #{i}": t for i, t in enumerate(sorted(spy.tokens))})
    assert len(spy.tokens) >= 4, "the runs should have refreshed several access tokens"
    seen = capfd.readouterr()
    n_logs, logs = _logs_text(airflow_db)
    n_parquet, parquet = _parquet_text(output)
    assert n_parquet >= 4
    sources = {
        "stdout/stderr of the runs": seen.out + seen.err,
        "log records": caplog.text,
        "exception texts (with chains)": "\n".join(errors),
        "CLI processes' output": "\n".join(cli_output),
        "metadata DB (all tables)": _metadata_db_dump(airflow_db),
        f"AIRFLOW_HOME/logs ({n_logs} files)": logs,
        f"Parquet, all columns + metadata ({n_parquet} files)": parquet,
    }
    leaks = [leak for where, text in sources.items() for leak in _leaks(where, text, secrets)]
    record_scan({where: len(text) for where, text in sources.items()}, len(secrets), leaks)
    assert leaks == []
    # The scan did look at real output: the failure and the SDK's refreshes were logged.
    assert "dropbox-team-log connect" in seen.out + seen.err + caplog.text
    assert "Refreshing access token" in seen.out + seen.err + caplog.text


def test_the_alert_webhook_never_carries_an_echoed_secret(monkeypatch, caplog):
    """A task fails with an error that quotes what a server echoed (here the SDK's own
    BadInputError with the token endpoint's body, as it left a refresh before scrubbing was
    added): the alert's log line and the webhook's body show neither the secrets the
    connection holds nor their URL-encoded and `Basic` forms."""
    from urllib.parse import quote_plus, urlencode

    from dropbox.exceptions import BadInputError

    from dropbox_team_log.notifications import alerts
    from tests.e2e.webhook import WebhookReceiver

    key, secret, refresh = "alert-app-key", "alert-s3cret/+=&x", "rt-Alert/Refresh+Token=01234"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERT_SCAN",
        json.dumps(
            {
                "conn_type": "dropbox_team",
                "login": key,
                "password": secret,
                "extra": {"refresh_token": refresh},
            }
        ),
    )
    assert DropboxTeamHook(dropbox_team_conn_id="alert_scan").settings.app_key == key  # as a task
    form = urlencode({"refresh_token": refresh, "client_id": key, "client_secret": secret})
    basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
    echoed = BadInputError("req-1", f"Error in call: {form} / {secret} / Basic {basic}")
    with WebhookReceiver() as receiver, caplog.at_level(logging.DEBUG):
        monkeypatch.setenv(
            "AIRFLOW_CONN_DROPBOX_TEAM_LOG_ALERTS",
            json.dumps({"conn_type": "http", "host": receiver.url}),
        )
        alerts.on_failure({"run_id": "manual__scan", "exception": echoed})
    (body,) = receiver.received
    sent = json.dumps(body) + caplog.text
    assert f"refresh_token=***&client_id={key}&client_secret=***" in body["text"]
    for leak in (secret, refresh, quote_plus(secret), quote_plus(refresh), basic):
        assert leak not in sent
