"""OAuth on the emulator through the real SDK: code flow (secret, PKCE, redirect), refresh,
single-use codes, revocation, wrong credentials, scopes, expiring access tokens."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import dropbox
import pytest
import requests
from dropbox.exceptions import AuthError, BadInputError

from dropbox_emulator import approve

_SAME = object()  # "use the configured app secret"


def _team(emulator, session, refresh_token, secret=_SAME, key=None):
    return dropbox.DropboxTeam(
        oauth2_refresh_token=refresh_token,
        app_key=key or emulator.config.app_key,
        app_secret=emulator.config.app_secret if secret is _SAME else secret,
        session=session,
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
    )


def test_code_flow_with_secret(emulator, session, link):
    result = link()
    assert result.account_id == emulator.config.resolved_team_id  # team-linked token
    assert result.refresh_token and result.access_token.startswith("sl.")
    assert result.scope == "events.read team_info.read"
    assert result.expires_at is not None
    info = _team(emulator, session, result.refresh_token).team_get_info()
    assert info.team_id == emulator.config.resolved_team_id
    assert info.name == emulator.config.team_name
    assert info.num_licensed_users == emulator.config.num_licensed_users
    assert 0 < info.num_used_licenses <= info.num_provisioned_users <= info.num_licensed_users


def test_consent_page_shows_app_team_and_scopes(emulator):
    url = (
        f"{emulator.base_url}/oauth2/authorize?client_id={emulator.config.app_key}"
        "&response_type=code&token_access_type=offline&scope=events.read+team_info.read"
    )
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "X-Dropbox-Request-Id" in page.headers
    for text in (
        emulator.config.app_name,
        emulator.config.team_name,
        "events.read",
        "team_info.read",
        'value="allow"',
        'name="decision"',
    ):
        assert text in page.text


def test_code_flow_with_pkce_refreshes_without_secret(emulator, session, link):
    result = link(use_pkce=True)
    client = _team(emulator, session, result.refresh_token, secret=None)
    assert client.team_get_info().team_id == emulator.config.resolved_team_id


def test_pkce_code_needs_the_right_verifier(emulator, session):
    flow = dropbox.DropboxOAuth2FlowNoRedirect(
        emulator.config.app_key, use_pkce=True, token_access_type="offline"
    )
    flow.requests_session = session
    code = emulator.approve(flow.start())
    flow.code_verifier = "x" * 64  # not the one the challenge was made from
    with pytest.raises(requests.HTTPError) as err:
        flow.finish(code)
    assert err.value.response.status_code == 400
    assert err.value.response.json()["error"] == "invalid_grant"


def test_code_is_single_use(emulator, session):
    cfg = emulator.config
    flow = dropbox.DropboxOAuth2FlowNoRedirect(
        cfg.app_key, cfg.app_secret, token_access_type="offline"
    )
    flow.requests_session = session
    code = emulator.approve(flow.start())
    flow.finish(code)
    with pytest.raises(requests.HTTPError) as err:
        flow.finish(code)
    body = err.value.response.json()
    assert err.value.response.status_code == 400
    assert body["error"] == "invalid_grant"
    assert "expired" in body["error_description"]


def test_code_expires(emulator, session):
    cfg = emulator.config
    flow = dropbox.DropboxOAuth2FlowNoRedirect(
        cfg.app_key, cfg.app_secret, token_access_type="offline"
    )
    flow.requests_session = session
    code = emulator.approve(flow.start())
    emulator.advance(cfg.code_lifetime + 1)
    with pytest.raises(requests.HTTPError) as err:
        flow.finish(code)
    assert err.value.response.json()["error"] == "invalid_grant"


def test_revoked_refresh_token_is_invalid_grant(emulator, session, link):
    keep, drop = link(), link()
    assert emulator.revoke_refresh_tokens(drop.refresh_token) == "one"
    with pytest.raises(AuthError) as err:  # the SDK maps invalid_grant to this
        _team(emulator, session, drop.refresh_token).team_get_info()
    assert err.value.error.is_invalid_access_token()
    _team(emulator, session, keep.refresh_token).team_get_info()  # others still work
    raw = session.post(
        f"{emulator.base_url}/oauth2/token",
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": drop.refresh_token,
            "client_id": emulator.config.app_key,
            "client_secret": emulator.config.app_secret,
        },
    )
    assert raw.status_code == 400
    assert raw.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token is invalid or revoked",
    }
    emulator.revoke_refresh_tokens()  # all
    with pytest.raises(AuthError):
        _team(emulator, session, keep.refresh_token).team_get_info()
    _team(emulator, session, link().refresh_token).team_get_info()  # new grants work again


def test_revocation_kills_live_access_tokens(emulator, session, link):
    result = link()
    client = dropbox.DropboxTeam(result.access_token, session=session, max_retries_on_error=0)
    client.team_get_info()
    emulator.revoke_refresh_tokens(result.refresh_token)
    with pytest.raises(AuthError) as err:
        client.team_get_info()
    assert err.value.error.is_invalid_access_token()


@pytest.mark.parametrize("what", ["secret", "key"])
def test_wrong_app_credentials_are_invalid_client(emulator, session, link, what):
    token = link().refresh_token
    if what == "secret":
        client = _team(emulator, session, token, secret="not-the-secret")
    else:
        client = _team(emulator, session, token, key="not-the-app-key")
    with pytest.raises(BadInputError) as err:  # not AuthError: tells "wrong app" from "revoked"
        client.team_get_info()
    assert json.loads(err.value.message)["error"] == "invalid_client"


def test_redirect_flow_returns_code_and_state(emulator, session):
    cfg = emulator.config
    store: dict[str, str] = {}
    redirect = "http://127.0.0.1:9/callback"  # never contacted: approve() reads the 302
    flow = dropbox.DropboxOAuth2Flow(
        cfg.app_key, redirect, store, "csrf", cfg.app_secret, token_access_type="offline"
    )
    flow.requests_session = session
    url = flow.start(url_state="from-test")
    query = parse_qs(urlsplit(url).query)
    code = approve(url, emulator.base_url)
    # what the browser brings back to the redirect URI
    status = requests.Session()
    status.trust_env = False
    page = status.get(url.replace("https://www.dropbox.com", emulator.base_url), timeout=10)
    assert page.status_code == 200
    result = flow.finish({"code": code, "state": query["state"][0]})
    assert result.url_state == "from-test"
    assert result.refresh_token


def test_redirect_allow_and_deny_locations(emulator):
    cfg = emulator.config
    base = (
        f"{emulator.base_url}/oauth2/authorize?client_id={cfg.app_key}&response_type=code"
        "&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb&state=s1"
    )
    s = requests.Session()
    s.trust_env = False
    page = s.get(base, timeout=10).text
    fields = dict(_hidden_fields(page))
    denied = s.post(
        f"{emulator.base_url}/oauth2/authorize",
        data={**fields, "decision": "deny"},
        allow_redirects=False,
        timeout=10,
    )
    assert denied.status_code == 302
    loc = parse_qs(urlsplit(denied.headers["Location"]).query)
    assert loc["error"] == ["access_denied"] and loc["state"] == ["s1"]
    allowed = s.post(
        f"{emulator.base_url}/oauth2/authorize",
        data={**fields, "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    loc = urlsplit(allowed.headers["Location"])
    assert loc.netloc == "localhost:8080" and loc.path == "/cb"
    assert parse_qs(loc.query)["state"] == ["s1"] and parse_qs(loc.query)["code"]
    tampered = s.post(
        f"{emulator.base_url}/oauth2/authorize",
        data={**fields, "scope": "events.read", "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    assert tampered.status_code == 400


def _hidden_fields(page: str):
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("client_id=nope&response_type=code", "Invalid client_id"),
        ("client_id={key}&response_type=token", "response_type"),
        ("client_id={key}&response_type=code&scope=files.content.write", "Invalid scope"),
        (
            "client_id={key}&response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2F",
            "redirect_uri",
        ),
    ],
)
def test_bad_authorize_requests_get_an_error_page(emulator, query, needle):
    url = f"{emulator.base_url}/oauth2/authorize?" + query.format(key=emulator.config.app_key)
    page = requests.get(url, timeout=10)
    assert page.status_code == 400
    assert needle in page.text


def test_missing_scope(emulator, session, link):
    result = link(scope=["team_info.read"])
    client = _team(emulator, session, result.refresh_token)
    client.team_get_info()
    with pytest.raises(AuthError) as err:
        client.team_log_get_events(limit=10)
    assert err.value.error.is_missing_scope()
    assert err.value.error.get_missing_scope().required_scope == "events.read"


def test_expired_access_tokens_are_refreshed_by_the_sdk(emulator, session, team_client):
    team_client.team_get_info()
    calls = emulator.stats()["calls"]["oauth2/token"]
    emulator.expire_access_tokens()  # server side: 401 expired_access_token
    team_client.team_get_info()
    emulator.advance(emulator.config.access_token_lifetime + 1)  # emulator time passes
    team_client.team_get_info()
    stats = emulator.stats()
    assert stats["calls"]["oauth2/token"] == calls + 2
    assert stats["responses"]["2/team/get_info 401"] == 2


def test_scripted_approve_and_raw_token_exchange(emulator):
    from dropbox_emulator import pkce_s256

    verifier = "v" * 50
    code = emulator.approve(scope="events.read", code_challenge=pkce_s256(verifier))
    s = requests.Session()
    s.trust_env = False
    resp = s.post(
        f"{emulator.base_url}/oauth2/token",
        timeout=10,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": emulator.config.app_key,
            "code_verifier": verifier,
        },
    )
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert body["token_type"] == "bearer" and body["scope"] == "events.read"
    assert body["expires_in"] == emulator.config.access_token_lifetime
    assert body["team_id"] == emulator.config.resolved_team_id and body["uid"]
    refreshed = s.post(
        f"{emulator.base_url}/oauth2/token",
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": emulator.config.app_key,
        },
    ).json()
    assert set(refreshed) == {"access_token", "token_type", "expires_in"}
    bad = s.post(
        f"{emulator.base_url}/oauth2/token",
        timeout=10,
        data={"grant_type": "password", "client_id": emulator.config.app_key},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "unsupported_grant_type"
