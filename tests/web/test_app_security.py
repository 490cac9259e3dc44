"""The teams page's refusals, over real HTTP against a real api-server and the emulator: who may
use it, CSRF on every POST, and a callback that is not this browser's flow, a replayed one (to
the same api-server or to another one of the deployment) or one with another app's code saves
nothing."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from dropbox_team_log.settings import TEAMS_VARIABLE
from tests.helpers.connecting import db_row, delete_row
from tests.web.conftest import PageClient

pytestmark = pytest.mark.timeout(300)


def start_flow(client: PageClient, emu, conn_id: str = "acme_team") -> str:
    """Press "Create the authorization link"; the link shown."""
    resp = client.post(
        "/connect",
        {
            "csrf": client.csrf(),
            "conn_id": conn_id,
            "app_key": emu.config.app_key,
            "app_secret": emu.config.app_secret,
            "api_base_url": emu.base_url,
            "mode": "redirect",
        },
    )
    assert resp.status_code == 200, resp.text
    return (
        re.search(r'id="authorize-link" href="([^"]+)"', resp.text).group(1).replace("&amp;", "&")
    )


def callback(client: PageClient, state: str, code: str):
    return client.get("/oauth/callback", params={"state": state, "code": code})


def test_the_page_refuses_users_who_may_not_edit_connections(api_server, clean):
    viewer = PageClient(api_server, "viewer")
    assert viewer.get("/").status_code == 403
    assert "not allowed" in viewer.get("/").text
    for path in ("/connect", "/teams/acme_team/remove", "/oauth/code"):
        assert viewer.post(path, {"csrf": "x"}).status_code == 403
    assert viewer.get("/oauth/callback", params={"state": "s", "code": "c"}).status_code == 403
    anonymous = PageClient(api_server, None)
    assert anonymous.get("/").status_code == 401
    assert anonymous.post("/connect", {}).status_code == 401
    admin = PageClient(api_server, "admin")
    page = admin.get("/")
    assert page.status_code == 200
    for resp in (page, viewer.get("/"), anonymous.get("/")):
        policy = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'self'" in policy
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"


def test_every_post_needs_this_sessions_csrf_token(api_server, emu, clean):
    admin = PageClient(api_server, "admin")
    token = admin.csrf()
    assert admin.post("/teams/dropbox_team_default/test", {}).status_code == 403
    assert admin.post("/teams/dropbox_team_default/test", {"csrf": "0" * 64}).status_code == 403
    # Another browser of the same user: its own browser cookie, so the token is not valid there.
    other = PageClient(api_server, "admin")
    other.csrf()
    assert other.post("/teams/dropbox_team_default/test", {"csrf": token}).status_code == 403
    assert admin.post("/teams/dropbox_team_default/test", {"csrf": token}).status_code == 303


def test_a_forged_callback_is_refused_and_saves_nothing(api_server, emu, clean):
    attacker = PageClient(api_server, "admin")
    link = start_flow(attacker, emu)
    state = parse_qs(urlsplit(link).query)["state"][0]
    code = emu.approve(link)
    victim = PageClient(api_server, "admin")
    victim.csrf()  # a browser of the page, with no flow of its own
    resp = callback(victim, state, code)
    assert resp.status_code == 400
    assert "no connect flow was started in this browser" in resp.text
    start_flow(victim, emu)  # a flow of its own: the attacker's state is not its state
    resp = callback(victim, state, code)
    assert resp.status_code == 400 and "state does not match" in resp.text
    assert callback(victim, "", code).status_code == 400
    assert db_row("acme_team") is None


def test_a_callback_is_accepted_once(api_server, emu, clean):
    admin = PageClient(api_server, "admin")
    link = start_flow(admin, emu)
    state = parse_qs(urlsplit(link).query)["state"][0]
    sealed = admin.session.cookies.get("dtl_teams_flow")
    first = callback(admin, state, emu.approve(link))
    assert first.status_code == 303 and db_row("acme_team") is not None
    assert admin.session.cookies.get("dtl_teams_flow") is None  # cleared by the callback
    admin.session.cookies.set("dtl_teams_flow", sealed, domain="127.0.0.1", path="/dropbox-teams")
    replay = callback(admin, state, emu.approve(link))
    assert replay.status_code == 400 and "used already" in replay.text


def test_a_callback_replayed_to_another_api_server_is_refused(api_server, emu, clean):
    """Two api-server processes of one deployment (same DB and keys, as `--workers 2` or two
    hosts): the state used on one is refused by the other, with a fresh, valid code."""
    other_server = api_server.sibling().start()
    try:
        admin = PageClient(api_server, "admin")
        link = start_flow(admin, emu)
        state = parse_qs(urlsplit(link).query)["state"][0]
        sealed = admin.session.cookies.get("dtl_teams_flow")
        browser = admin.session.cookies.get("dtl_teams_browser")
        assert callback(admin, state, emu.approve(link)).status_code == 303
        assert db_row("acme_team") is not None
        delete_row("acme_team")
        # The same browser (its cookies, the flow's sealed cookie put back) at the other server.
        replayer = PageClient(other_server, "admin")
        for name, value in (("dtl_teams_flow", sealed), ("dtl_teams_browser", browser)):
            replayer.session.cookies.set(name, value, domain="127.0.0.1", path="/dropbox-teams")
        replay = callback(replayer, state, emu.approve(link))
        assert replay.status_code == 400 and "used already" in replay.text
        assert db_row("acme_team") is None
    finally:
        other_server.close()


def test_the_callback_refuses_a_code_issued_for_another_app(api_server, emu, clean):
    from dropbox_emulator import running_emulator

    admin = PageClient(api_server, "admin")
    link = start_flow(admin, emu)
    state = parse_qs(urlsplit(link).query)["state"][0]
    with running_emulator(app_key="another-app", app_secret="another-secret-0123") as other:
        foreign = other.approve(
            client_id="another-app", redirect_uri=parse_qs(urlsplit(link).query)["redirect_uri"][0]
        )
    resp = callback(admin, state, foreign)
    assert resp.status_code == 303
    page = admin.session.get(admin.base + "/", timeout=60)
    assert "Connecting &#x27;acme_team&#x27; failed" in page.text
    assert "Dropbox rejected the authorization code (invalid_grant" in page.text
    assert db_row("acme_team") is None
    from tests.helpers.connecting import connection_store

    assert connection_store.load_variable(TEAMS_VARIABLE)[1] is None
