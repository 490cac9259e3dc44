"""Shared by the connect command's and the hook's tests: emulator, connections, leak checks.

Plain functions and classes (no fixtures) so each test module states the fixtures it uses.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterable
from typing import Any

import dropbox.dropbox_client
import dropbox.oauth
import pytest

from dropbox_team_log.cli import connection_store
from dropbox_team_log.cli.connect_options import ConnectOptions
from dropbox_team_log.cli.oauth_flow import finish_flow, start_flow

#: Not the emulator's public demo secret: a leak of this one would mean something.
APP_SECRET = "s3cr3t-app-0f9d8c7b6a5e4d3c"
#: Emulator access tokens start with "sl." (like Dropbox's short-lived tokens).
ACCESS_TOKEN_RE = re.compile(r"sl\.[A-Za-z0-9_-]{16,}")
CONTRACT_EXTRA = {"refresh_token", "connected_at", "team_id", "team_name"}
CONNECTED_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class TokenSpy:
    """Records every token the SDK obtains in this process, to prove none is ever shown."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tokens: set[str] = set()
        finish = dropbox.oauth.DropboxOAuth2FlowBase._finish
        refresh = dropbox.dropbox_client._DropboxTransport.refresh_access_token

        def spy_finish(flow: Any, *args: Any, **kwargs: Any) -> Any:
            result = finish(flow, *args, **kwargs)
            self.tokens.update(t for t in (result.access_token, result.refresh_token) if t)
            return result

        def spy_refresh(client: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return refresh(client, *args, **kwargs)
            finally:
                if client._oauth2_access_token:
                    self.tokens.add(client._oauth2_access_token)

        monkeypatch.setattr(dropbox.oauth.DropboxOAuth2FlowBase, "_finish", spy_finish)
        monkeypatch.setattr(
            dropbox.dropbox_client._DropboxTransport, "refresh_access_token", spy_refresh
        )


class Transcript:
    """Everything a user or a log reader could see during a test, checked for secrets."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.parts: list[str] = []

    def take(self) -> tuple[str, str]:
        """stdout, stderr captured since the last call (kept for the final check)."""
        captured = self.capsys.readouterr()
        self.parts += [captured.out, captured.err]
        return captured.out, captured.err

    def add(self, *texts: str) -> None:
        self.parts.extend(texts)

    def assert_clean(self, secrets: Iterable[str], caplog_text: str = "") -> None:
        self.take()
        text = "\n".join([*self.parts, caplog_text])
        for secret in secrets:
            if secret:
                assert secret not in text, "a secret leaked into output, logs or errors"
        assert not ACCESS_TOKEN_RE.search(text), "an access token leaked"


def emulator_config(**overrides: Any) -> Any:
    from dropbox_emulator import EmulatorConfig

    return EmulatorConfig(app_secret=APP_SECRET, **overrides)


def options(emu: Any, conn_id: str, *, pkce: bool = False, **kw: Any) -> ConnectOptions:
    return ConnectOptions(
        app_key=emu.config.app_key,
        app_secret=None if pkce else emu.config.app_secret,
        conn_id=conn_id,
        base_url=emu.base_url,
        **kw,
    )


def fresh_code(emu: Any, conn_id: str = "unused") -> str:
    """An authorization code for the secret flow, as an admin gets it from a link."""
    _, url = start_flow(options(emu, conn_id))
    return emu.approve(url)


def db_row(conn_id: str) -> Any:
    return connection_store.load_saved(conn_id)


def delete_row(conn_id: str) -> None:
    from sqlalchemy import delete

    model = connection_store._orm_connection()
    with connection_store._db_session() as session:
        session.execute(delete(model).where(model.conn_id == conn_id))


def delete_variable(key: str) -> None:
    """Remove a Variable's metadata-DB row (the teams registry a test's connect wrote) and those
    of its per-team Variables `<key>.<conn_id>` (the alert state's)."""
    from airflow.models.variable import Variable
    from sqlalchemy import delete, or_

    with connection_store._db_session() as session:
        session.execute(
            delete(Variable).where(or_(Variable.key == key, Variable.key.startswith(f"{key}.")))
        )


def forget_connected(*conn_ids: str) -> None:
    """Undo what `connect` left in the metadata DB: the connections' rows and the teams
    registry it added them to (the DAG tests that follow on this worker expect none)."""
    from dropbox_team_log.settings import TEAMS_VARIABLE

    for conn_id in conn_ids:
        delete_row(conn_id)
    delete_variable(TEAMS_VARIABLE)


def row_as_json(row: Any, **changes: Any) -> str:
    """A saved connection as an AIRFLOW_CONN_* JSON value, optionally altered."""
    value = {
        "conn_type": row.conn_type,
        "login": row.login,
        "password": row.password,
        "host": row.host,
        "extra": json.loads(row.extra),
    }
    value.update(changes)
    return json.dumps({k: v for k, v in value.items() if v is not None})


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    """A console script in a subprocess, with this session's Airflow environment."""
    return subprocess.run(
        list(args),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def granted(emu: Any, conn_id: str, *, scope: str | None = None, pkce: bool = False) -> dict:
    """A grant obtained through the real flow (link -> Allow -> code -> token), as the JSON
    of an AIRFLOW_CONN_* variable; `scope` narrows what the admin approves."""
    opts = options(emu, conn_id, pkce=pkce)
    flow, url = start_flow(opts)
    if scope is not None:
        url = re.sub(r"scope=[^&]+", f"scope={scope}", url)
    tokens = finish_flow(flow, emu.approve(url), opts)
    return {
        "conn_type": "dropbox_team",
        "login": opts.app_key,
        "password": opts.app_secret,
        "host": emu.base_url,
        "extra": {
            "refresh_token": tokens.refresh_token,
            "connected_at": "2026-11-01T00:00:00Z",
            "team_id": emu.config.resolved_team_id,
            "team_name": emu.config.team_name,
        },
    }
