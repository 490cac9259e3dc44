"""`DropboxTeamHook.test_connection()` - what the UI's Test button, `airflow connections test`
and `dropbox-team-log test-connection` show - against the emulator over real HTTP: success from
the DB or an AIRFLOW_CONN_* variable alike, and the precise reason for each failure."""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings

import pytest
import requests

from dropbox_team_log.cli import connect
from dropbox_team_log.cli import main as cli
from dropbox_team_log.cli.connect_options import ConnectOptions
from dropbox_team_log.errors import (
    AppCredentialsError,
    MissingScopeError,
    RefreshTokenRevokedError,
)
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from tests.helpers.connecting import (
    APP_SECRET,
    closed_port,
    db_row,
    delete_row,
    emulator_config,
    granted,
    row_as_json,
)


@pytest.fixture
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(emulator_config()) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _logs(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="dropbox")


def env_conn(monkeypatch, conn_id: str, value: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))


def saved(emu, conn_id: str) -> None:
    """Connect through the command's flow and save to the metadata DB."""
    connect.run_connect(
        dataclasses.replace(
            ConnectOptions(app_key=emu.config.app_key, app_secret=APP_SECRET, conn_id=conn_id),
            base_url=emu.base_url,
        ),
        read_code=emu.approve,
    )


def test_env_var_connection_works_like_the_db_one(
    emu, airflow_db, monkeypatch, transcript, spy, caplog
):
    saved(emu, "hook_db")
    try:
        row = db_row("hook_db")
        monkeypatch.setenv("AIRFLOW_CONN_HOOK_ENV", row_as_json(row))
        # Server processes (API server, `airflow connections test`) read the metadata DB.
        monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
        from_db = DropboxTeamHook(dropbox_team_conn_id="hook_db")
        from_env = DropboxTeamHook(dropbox_team_conn_id="hook_env")
        assert dataclasses.replace(from_env.settings, conn_id="hook_db") == from_db.settings
        for hook in (from_db, from_env):
            ok, message = hook.test_connection()
            assert ok, message
            assert f"Connected to Dropbox team '{emu.config.team_name}'" in message
            transcript.add(message)

        assert cli.main(["test-connection", "--conn-id", "hook_env"]) == 0
        refresh_token = json.loads(row.extra)["refresh_token"]
        transcript.assert_clean([APP_SECRET, refresh_token, *spy.tokens], caplog.text)
    finally:
        delete_row("hook_db")


def _expect(kind: str, conn_id: str) -> str:
    return {
        "revoked": str(RefreshTokenRevokedError(conn_id)),
        "missing_scope": str(MissingScopeError(conn_id, "events.read")),
        "wrong_app_key": str(AppCredentialsError(conn_id)),
        "wrong_app_secret": str(AppCredentialsError(conn_id)),
        "unreachable": "Dropbox API unreachable for team/get_info after 2 attempts "
        "(connection_error: ConnectionError)",
        "plain_http_remote": f"Connection '{conn_id}' host: API base URL "
        "'http://203.0.113.7:8765' uses plain http on a non-loopback host",
        "no_refresh_token": f"Connection '{conn_id}' has no extra.refresh_token",
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "revoked",
        "missing_scope",
        "wrong_app_key",
        "wrong_app_secret",
        "unreachable",
        "plain_http_remote",
        "no_refresh_token",
    ],
)
def test_failure_messages(kind, emu, monkeypatch, transcript, spy, caplog):
    conn_id = "probe"
    value = granted(emu, conn_id, scope="team_info.read" if kind == "missing_scope" else None)
    if kind == "revoked":
        emu.revoke_refresh_tokens()
    elif kind == "wrong_app_key":
        value["login"] = "not-our-app-key"
    elif kind == "wrong_app_secret":
        value["password"] = "not-our-app-secret-0123"
    elif kind == "unreachable":
        value["host"] = f"http://127.0.0.1:{closed_port()}"
    elif kind == "plain_http_remote":
        value["host"] = "http://203.0.113.7:8765"
    elif kind == "no_refresh_token":
        del value["extra"]["refresh_token"]
    env_conn(monkeypatch, conn_id, value)
    before = emu.stats()["calls"]

    ok, message = DropboxTeamHook(dropbox_team_conn_id=conn_id).test_connection()
    assert not ok
    assert message.startswith(_expect(kind, conn_id)), message
    if kind in ("plain_http_remote", "no_refresh_token"):
        assert emu.stats()["calls"] == before  # refused before any request

    # The CLI shows the same reason and exits 1.
    assert cli.main(["test-connection", "--conn-id", conn_id]) == 1
    _, err = transcript.take()
    assert _expect(kind, conn_id) in err
    secrets = [APP_SECRET, "not-our-app-secret-0123", *spy.tokens]
    secrets.append(value["extra"].get("refresh_token", ""))
    transcript.add(message)
    transcript.assert_clean(secrets, caplog.text)


def test_missing_connection_message(monkeypatch, transcript, airflow_db):
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    assert cli.main(["test-connection", "--conn-id", "nobody_made_this"]) == 1
    assert "dropbox-team-log connect --conn-id nobody_made_this" in transcript.take()[1]


def test_ui_test_button_and_api_masking(emu, airflow_db, monkeypatch, transcript, spy, caplog):
    """The REST routes behind the UI: the Test button passes; secrets come back as ***."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    saved(emu, "hook_ui")
    try:
        from airflow.api_fastapi.app import create_app

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = TestClient(create_app())
        got = client.get("/api/v2/connections/hook_ui")
        assert got.status_code == 200, got.text
        body = got.json()
        refresh_token = json.loads(db_row("hook_ui").extra)["refresh_token"]
        assert body["password"] == "***"
        assert json.loads(body["extra"])["refresh_token"] == "***"
        assert json.loads(body["extra"])["team_name"] == emu.config.team_name
        tested = client.post(
            "/api/v2/connections/test",
            json={"connection_id": "hook_ui", "conn_type": "dropbox_team"},
        )
        assert tested.status_code == 200, tested.text
        assert tested.json()["status"] is True, tested.json()
        transcript.add(got.text, tested.text)
        transcript.assert_clean([APP_SECRET, refresh_token, *spy.tokens], caplog.text)
    finally:
        delete_row("hook_ui")


def test_no_network_for_a_bad_host(monkeypatch):
    """A non-loopback http host is refused by the hook itself, before any request."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network call was made")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    env_conn(
        monkeypatch,
        "bad_host",
        {
            "conn_type": "dropbox_team",
            "login": "k",
            "password": "s",
            "host": "http://example.com",
            "extra": {"refresh_token": "r" * 20},
        },
    )
    ok, message = DropboxTeamHook(dropbox_team_conn_id="bad_host").test_connection()
    assert not ok and "plain http on a non-loopback host" in message
