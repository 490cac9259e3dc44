"""`DropboxTeamHook.test_connection()` - what the UI's Test button, `airflow connections test`
and `dropbox-team-log test-connection` show - against the emulator over real HTTP: success from
the DB or an AIRFLOW_CONN_* variable alike, and the precise reason for each failure; against a
local server that echoes the request, no secret in any answer; the connection's host parsed
strictly (IPv6 with its port; no userinfo, no backslash)."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import traceback
import warnings
from urllib.parse import parse_qsl, quote, quote_plus

import pytest
import requests

from dropbox_team_log.cli import connect
from dropbox_team_log.cli import main as cli
from dropbox_team_log.cli.connect_options import ConnectOptions
from dropbox_team_log.errors import (
    AppCredentialsError,
    DropboxTeamLogError,
    MissingScopeError,
    PermanentError,
    RefreshTokenRevokedError,
)
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from tests.helpers.connecting import (
    APP_SECRET,
    closed_port,
    db_row,
    emulator_config,
    forget_connected,
    granted,
    row_as_json,
)
from tests.helpers.local_servers import ACCESS_TOKEN, LocalServer, Received, Reply, token_reply


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
        forget_connected("hook_db")


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


@pytest.fixture(scope="module")
def rest_app(airflow_db):
    """Airflow's REST API app (what the UI calls) in process, every user an admin: built once
    for the module's tests (building it takes seconds of CPU)."""
    from airflow.api_fastapi.app import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
        yield _quietly(create_app)


def _quietly(build):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build()


@pytest.fixture
def rest_api(rest_app):
    """A client of the REST API app, this test's own."""
    from fastapi.testclient import TestClient

    return TestClient(rest_app)


def test_ui_test_button_and_api_masking(emu, airflow_db, rest_api, transcript, spy, caplog):
    """The REST routes behind the UI: the Test button passes; secrets come back as ***."""
    saved(emu, "hook_ui")
    try:
        client = rest_api
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
        forget_connected("hook_ui")


def test_the_ui_test_button_as_airflow_3_3_2_sends_it_names_no_throwaway_id(
    emu, airflow_db, rest_api, transcript, spy, caplog
):
    """The body the 3.3.2 form posts (port 0, empty fields); on a revoked grant the fix names
    no made-up connection id."""
    saved(emu, "hook_ui_form")
    try:
        client = rest_api
        form = {
            "connection_id": "hook_ui_form",
            "conn_type": "dropbox_team",
            "description": "",
            "host": db_row("hook_ui_form").host,
            "port": 0,
            "schema": "",
        }
        tested = client.post("/api/v2/connections/test", json=form)
        assert tested.status_code == 200, tested.text
        assert tested.json()["status"] is True, tested.json()

        emu.revoke_refresh_tokens()
        tested = client.post("/api/v2/connections/test", json=form)
        assert tested.status_code == 200, tested.text
        answer = tested.json()
        assert answer["status"] is False
        assert answer["message"] == str(RefreshTokenRevokedError("<connection id>"))
        transcript.add(tested.text)
        refresh_token = json.loads(db_row("hook_ui_form").extra)["refresh_token"]
        transcript.assert_clean([APP_SECRET, refresh_token, *spy.tokens], caplog.text)
    finally:
        forget_connected("hook_ui_form")


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


# --- a server that echoes the request: no secret comes back out ------------------------------

ECHO_KEY = "echo-app-key"
ECHO_SECRET = "echo-s3cret/with+chars=&0f9d"
ECHO_REFRESH = "rt-Echo/Refresh+Token=0123456789"


def secret_forms_to_find(*secrets: str) -> list[str]:
    """What a leak looks like: each secret raw, percent- and form-encoded, and the Basic pair."""
    forms = [ECHO_KEY + ":" + ECHO_SECRET, _b64(f"{ECHO_KEY}:{ECHO_SECRET}")]
    for secret in secrets:
        forms += [
            secret,
            quote(secret, safe=""),
            quote(secret, safe="").lower(),
            quote_plus(secret),
        ]
    return forms


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def echoing(where: str, style: str):
    """Answers 400 on the token endpoint (`where`="token") or on the API call ("api") with a
    body that echoes what it received, in `style`: the raw form body, the decoded values, the
    values as JSON, or the client credentials as a Basic header would carry them."""

    def respond(request: Received) -> Reply:
        if request.path == "/oauth2/token" and where == "api":
            return token_reply()
        fields = dict(parse_qsl(request.text))
        auth = request.headers.get("Authorization", "")
        if style == "form":
            echo = f"{request.text} {auth}".strip()
            return Reply(400, {"error": "invalid_request", "error_description": echo})
        if style == "decoded":
            shown = ", ".join(f"{k}={v}" for k, v in fields.items())
            return Reply(400, f"Bad request: {shown} {request.text} Authorization={auth}")
        if style == "json":
            echo = json.dumps({**fields, "authorization": auth})
            return Reply(400, {"error": "invalid_request", "error_description": echo})
        basic = _b64(f"{fields.get('client_id')}:{fields.get('client_secret')}")
        return Reply(400, {"error": "invalid_request", "error_description": f"Basic {basic}"})

    return respond


def echo_conn(monkeypatch, conn_id: str, host: str) -> dict:
    value = {
        "conn_type": "dropbox_team",
        "login": ECHO_KEY,
        "password": ECHO_SECRET,
        "host": host,
        "extra": {"refresh_token": ECHO_REFRESH},
    }
    env_conn(monkeypatch, conn_id, value)
    return value


@pytest.mark.parametrize(
    ("where", "style"),
    [
        *(("token", style) for style in ("form", "decoded", "json", "basic")),
        *(("api", style) for style in ("form", "decoded", "json")),  # a Bearer token, no Basic
    ],
)
def test_an_echoed_request_never_shows_a_secret(where, style, monkeypatch, transcript, caplog):
    """The connection test's answer, the exception, every log record at DEBUG and the
    `test-connection` output: the secrets the requests carried (refresh token, app secret,
    access token) appear in none of them, in no encoding."""
    with LocalServer(echoing(where, style)) as server:
        echo_conn(monkeypatch, "echo", server.base_url)
        ok, message = DropboxTeamHook(dropbox_team_conn_id="echo").test_connection()
        with pytest.raises(DropboxTeamLogError) as failed:
            DropboxTeamHook(dropbox_team_conn_id="echo").get_team_info()
        assert cli.main(["test-connection", "--conn-id", "echo"]) == 1
        echoed = server.everything()

    # The server did get the secrets (so the checks below mean something).
    assert quote_plus(ECHO_SECRET) in echoed and quote_plus(ECHO_REFRESH) in echoed
    assert where == "token" or f"Bearer {ACCESS_TOKEN}" in echoed
    exception_text = "".join(traceback.format_exception(failed.value))
    transcript.add(message, exception_text)
    transcript.assert_clean(
        secret_forms_to_find(ECHO_SECRET, ECHO_REFRESH, ACCESS_TOKEN), caplog.text
    )
    # ... and the answer still says what went wrong.
    assert not ok
    if where == "token":
        assert "token endpoint refused to refresh the access token of connection 'echo'" in message
        assert isinstance(failed.value, PermanentError)  # a 400 is not retried
    else:
        assert message.startswith("Dropbox team/get_info failed: bad_input (")


def test_the_ui_test_button_shows_an_echo_scrubbed(airflow_db, rest_api, transcript, caplog):
    """The REST route behind the UI's Test button, on a connection typed into the form."""
    client = rest_api
    with LocalServer(echoing("token", "decoded")) as server:
        tested = client.post(
            "/api/v2/connections/test",
            json={
                "connection_id": "echo_ui",
                "conn_type": "dropbox_team",
                "host": server.base_url,
                "login": ECHO_KEY,
                "password": ECHO_SECRET,
                "extra": json.dumps({"refresh_token": ECHO_REFRESH}),
            },
        )
        assert server.requests, "the test reached the echoing server"
    assert tested.status_code == 200, tested.text
    assert tested.json()["status"] is False
    assert "token endpoint refused" in tested.json()["message"]
    transcript.add(tested.text)
    transcript.assert_clean(secret_forms_to_find(ECHO_SECRET, ECHO_REFRESH), caplog.text)


# --- the connection's host ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "::1", "schema": "http"},
        {"host": "[::1]", "schema": "http"},
        {"host": "http://[::1]"},
    ],
    ids=["bare", "bracketed", "url"],
)
def test_an_ipv6_host_keeps_the_connections_port(fields, monkeypatch):
    """Host and port in their own fields, as the UI form and a connection URI give them."""
    from dropbox_emulator import running_emulator

    with running_emulator(emulator_config(), host="::1") as emu:
        value = granted(emu, "ipv6")
        value.update(fields, port=int(emu.base_url.rsplit(":", 1)[1]))
        env_conn(monkeypatch, "ipv6", value)
        hook = DropboxTeamHook(dropbox_team_conn_id="ipv6")
        assert hook.settings.base_url == emu.base_url
        ok, message = hook.test_connection()
    assert ok, message


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("http://admin:hunter2-pw@127.0.0.1:8765", "carries credentials (user:password@)"),
        ("admin:hunter2-pw@127.0.0.1", "carries credentials (user:password@)"),
        ("http://127.0.0.1:8765\\@evil.example", "contains a backslash"),
        ("127.0.0.1\\evil.example", "contains a backslash"),
    ],
)
def test_userinfo_or_a_backslash_in_the_host_is_refused_before_any_request(host, says, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network call was made")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    env_conn(
        monkeypatch,
        "odd_host",
        {
            "conn_type": "dropbox_team",
            "login": "k",
            "password": "s",
            "host": host,
            "schema": "http",
            "extra": {"refresh_token": "r" * 20},
        },
    )
    ok, message = DropboxTeamHook(dropbox_team_conn_id="odd_host").test_connection()
    assert not ok
    assert message.startswith("Connection 'odd_host' host: API base URL") and says in message
    assert "hunter2-pw" not in message
