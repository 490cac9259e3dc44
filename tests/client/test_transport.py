"""transport: no Dropbox call follows a redirect, and the base URL override is parsed strictly.

Real servers on loopback: an origin that answers a token refresh or an API call with a redirect
to a second server, which records everything it receives and must receive nothing (the refresh
token, app secret and access token stay with the host they were meant for). The https origin
is a real TLS server with a certificate made for the test.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from dropbox_team_log.client.api import DropboxTeamClient
from dropbox_team_log.client.transport import (
    RedirectRefusedError,
    base_url_of_connection,
    build_session,
    normalize_base_url,
)
from dropbox_team_log.errors import PermanentError
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from tests.helpers.local_servers import (
    ACCESS_TOKEN,
    TEAM_INFO,
    LocalServer,
    Received,
    Reply,
    self_signed_certificate,
    token_reply,
)

APP_KEY = "local-app-key"
APP_SECRET = "app-s3cret/with+chars=0f9d"
REFRESH_TOKEN = "rt-Refresh/Token+Value=0123456789"
SECRETS = (APP_SECRET, REFRESH_TOKEN, ACCESS_TOKEN, quote(APP_SECRET, safe=""))
TOKEN, GET_INFO = "/oauth2/token", "/2/team/get_info"


def redirecting(status: int, where: str, path: str):
    """An origin that answers `path` with a redirect to `where` (same path), the rest as
    Dropbox would."""

    def respond(request: Received) -> Reply:
        if request.path == path:
            return Reply(status, "moved", {"Location": where + request.path})
        if request.path == TOKEN:
            return token_reply()
        return Reply(200, TEAM_INFO)

    return respond


def connect_env(monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "dropbox_team",
                "login": APP_KEY,
                "password": APP_SECRET,
                "host": host,
                "extra": {"refresh_token": REFRESH_TOKEN, "backoff_base": 0},
            }
        ),
    )


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.fixture
def elsewhere():
    """The host a redirect names: it must never hear from us."""
    with LocalServer() as server:
        yield server


@pytest.mark.parametrize("path", [TOKEN, GET_INFO], ids=["token_refresh", "api_call"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_refused_and_nothing_is_resent(
    status, path, elsewhere, monkeypatch
):
    with LocalServer(redirecting(status, elsewhere.base_url, path)) as origin:
        connect_env(monkeypatch, "redirected", origin.base_url)
        hook = DropboxTeamHook(dropbox_team_conn_id="redirected", sleep=lambda s: None)
        with pytest.raises(RedirectRefusedError) as refused:
            hook.get_team_info()
        ok, message = hook.test_connection()
        hits = [r for r in origin.requests if r.path == path]

    assert elsewhere.requests == []
    assert isinstance(refused.value, PermanentError)  # not retried: a person has to act
    assert len(hits) == 2  # once per attempt above, never re-sent by the session itself
    text = str(refused.value)
    assert f"HTTP {status}, a redirect to {elsewhere.base_url}: refused" in text
    assert origin.base_url in text and path in text
    assert not ok and "redirect" in message and "connection's host" in message
    assert_no_secret(text + message)


def test_an_https_host_redirecting_to_plain_http_is_refused(elsewhere, tmp_path):
    """The downgrade: an https override whose token endpoint points at http."""
    cert, key = self_signed_certificate(tmp_path)
    with LocalServer(redirecting(307, elsewhere.base_url, TOKEN), tls=(cert, key)) as origin:
        assert origin.base_url.startswith("https://")
        session = build_session(origin.base_url)
        session.verify = str(cert)  # trust the test's certificate, as a CA bundle would
        client = DropboxTeamClient(
            oauth2_refresh_token=REFRESH_TOKEN,
            app_key=APP_KEY,
            app_secret=APP_SECRET,
            session=session,
            max_retries_on_error=0,
            max_retries_on_rate_limit=0,
        )
        with pytest.raises(RedirectRefusedError) as refused:
            client.team_get_info()
        assert [r.path for r in origin.requests] == [TOKEN]  # TLS worked: it was asked

    assert elsewhere.requests == []
    assert f"{origin.base_url} answered POST {TOKEN}" in str(refused.value)
    assert f"a redirect to {elsewhere.base_url}" in str(refused.value)
    assert_no_secret(str(refused.value))


def test_a_same_origin_redirect_is_refused_too(monkeypatch):
    """Dropbox never redirects: one rule for every redirect, whatever its target."""
    holder: dict[str, str] = {}

    def respond(request: Received) -> Reply:
        if request.path == TOKEN:
            return Reply(307, "", {"Location": f"{holder['base']}/oauth2/token-elsewhere"})
        return Reply(200, token_reply().body)

    with LocalServer(respond) as origin:
        holder["base"] = origin.base_url
        connect_env(monkeypatch, "same_origin", origin.base_url)
        ok, message = DropboxTeamHook(dropbox_team_conn_id="same_origin").test_connection()
        paths = [r.path for r in origin.requests]

    assert not ok and "refused" in message
    assert "/oauth2/token-elsewhere" not in paths


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765"),
        ("http://[::1]:8765", "http://[::1]:8765"),
        ("http://localhost:8765", "http://localhost:8765"),
        ("https://api.example.com/prefix", "https://api.example.com/prefix"),
    ],
)
def test_base_urls_that_are_accepted(url, expected):
    assert normalize_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://user:pa55-w0rd@127.0.0.1:8765", "carries credentials (user:password@)"),
        ("https://tok3n-secret@api.example.com", "carries credentials (user:password@)"),
        ("http://127.0.0.1:8765\\@evil.example", "contains a backslash"),
        ("http:\\\\127.0.0.1:8765", "contains a backslash"),
        ("http://127.0.0.1:8765/\r\nX-Injected: 1", "a control character"),
        ("http://127.0.0.1 :8765", "a space"),
        ("http://127.0.0.1:99999", "invalid port"),
        ("http://127.0.0.1:port", "invalid port"),
        ("http://127.0.0.1:", "invalid port"),
        ("http://[::1:8765", "an IPv6 address goes in brackets"),
        ("ftp://127.0.0.1", "is not an http(s) URL"),
        ("http://203.0.113.7:8765", "plain http on a non-loopback host"),
    ],
)
def test_base_urls_that_are_refused_say_why(url, says):
    with pytest.raises(ValueError, match="API base URL") as refused:
        normalize_base_url(url)
    assert says in str(refused.value)
    for secret in ("pa55-w0rd", "tok3n-secret"):
        assert secret not in str(refused.value)


@pytest.mark.parametrize(
    ("host", "scheme", "port", "expected"),
    [
        ("::1", "http", 8765, "http://[::1]:8765"),
        ("[::1]", "http", 8765, "http://[::1]:8765"),
        ("http://[::1]", None, 8765, "http://[::1]:8765"),
        ("http://[::1]:8765", None, None, "http://[::1]:8765"),
        ("http://[::1]:8765", None, 8765, "http://[::1]:8765"),
        ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765"),
        ("http://127.0.0.1", None, 8765, "http://127.0.0.1:8765"),
        ("api.example.com", None, None, "https://api.example.com"),
        ("api.example.com", None, 8443, "https://api.example.com:8443"),
    ],
)
def test_a_connections_host_schema_and_port_make_one_url(host, scheme, port, expected):
    assert base_url_of_connection(host, scheme=scheme, port=port) == expected


def test_a_host_and_port_field_that_disagree_are_refused():
    with pytest.raises(ValueError, match="names port 8765 but the connection's port field says"):
        base_url_of_connection("http://127.0.0.1:8765", scheme=None, port=9999)
