"""The teams page in a real browser (Playwright on Debian's Chromium) inside the Airflow UI of a
real api-server, connecting to the emulator: the admin's whole path, as the seed describes it.

Connect a team (link, the emulator's consent page, Allow, back through the callback), see it
tested, registered and its backfill started; press Test and see the team's name; revoke the
grant and see the error with the fix; pause and remove it; the code-paste flow. No token may
reach the browser: every response it received is scanned. Screenshots go to
build/screenshots/teams_page/ (docs/connect.md shows some of them).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dropbox_team_log import team_registry
from dropbox_team_log.cli.connection_store import load_variable
from dropbox_team_log.settings import BACKFILL_DAG_ID, TEAMS_VARIABLE
from tests.helpers.api_server import ApiServer
from tests.helpers.connecting import db_row
from tests.web.conftest import HOSTILE_TEAM_NAME, shot

pytestmark = pytest.mark.timeout(300)


def open_page(page: Any, api_server: ApiServer) -> Any:
    page.goto(f"{api_server.url}/dropbox-teams/")
    page.locator("h1", has_text="Dropbox teams").wait_for()
    return page


def fill_connect(page: Any, emu: Any, conn_id: str, mode: str) -> None:
    page.locator("input[name=conn_id]").fill(conn_id)
    page.locator("input[name=app_key]").fill(emu.config.app_key)
    page.locator("input[name=app_secret]").fill(emu.config.app_secret)
    page.locator("input[name=api_base_url]").fill(emu.base_url)
    page.locator(f"input[name=mode][value={mode}]").check()


def registry() -> list[team_registry.Team]:
    return team_registry.parse(load_variable(TEAMS_VARIABLE)[1], "dropbox_team_default")


def backfill_run(conn_id: str) -> Any:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    from dropbox_team_log.cli.connection_store import db_session

    team = team_registry.find(registry(), conn_id)
    with db_session() as session:
        run = session.scalar(
            select(DagRun).where(
                DagRun.dag_id == BACKFILL_DAG_ID,
                DagRun.run_id == team_registry.backfill_run_id(team),
            )
        )
        return None if run is None else (run.run_id, run.conf, str(run.triggered_by))


def row(page: Any, conn_id: str) -> Any:
    return page.locator(f'tr[data-conn-id="{conn_id}"]')


def open_in_ui(page: Any, api_server: ApiServer) -> Any:
    """The Airflow UI, then its navigation entry: the teams page in the UI's frame."""
    page.goto(f"{api_server.url}/")
    page.get_by_role("link", name="Dropbox teams").click()
    # The UI opens /plugin/dropbox-teams, then, once the frame has loaded, mirrors the frame's
    # path in its own URL (Airflow 3.3's deep links): /plugin/dropbox-teams/dropbox-teams/. On a
    # busy machine the first URL is gone before it is looked for, so either one is the page.
    page.wait_for_url(
        re.compile(rf"{re.escape(api_server.url)}/plugin/dropbox-teams(/dropbox-teams/)?$")
    )
    frame = page.frame_locator("iframe")
    frame.locator("h1", has_text="Dropbox teams").wait_for()
    return frame


def test_connect_test_revoke_pause_remove_from_the_airflow_ui(admin, api_server, emu, clean):
    page, seen = admin
    frame = open_in_ui(page, api_server)
    shot(page, "01-teams-page-in-airflow")

    fill_connect(frame, emu, "acme_team", "redirect")
    frame.get_by_role("button", name="Create the authorization link").click()
    link = frame.locator("#authorize-url").input_value()
    assert "code_challenge=" in link and "state=" in link
    assert "%2Fdropbox-teams%2Foauth%2Fcallback" in link  # Dropbox sends the admin back here
    shot(page, "02-authorization-link")

    tab = page.context.new_page()  # the admin pastes the link into a new tab
    tab.on("response", seen.record)
    tab.goto(link)
    allow = tab.get_by_role("button", name="Allow")
    allow.wait_for()
    shot(tab, "03-consent-page")
    allow.click()

    tab.wait_for_url(f"{api_server.url}/dropbox-teams/")
    flash = tab.locator("#flash")
    text = flash.inner_text()
    assert f"Connected Dropbox team '{HOSTILE_TEAM_NAME[:14]}" in text
    assert "team_info.read and events.read work" in text  # the hook's test passed
    assert "Registered in the teams registry." in text
    assert "Started its backfill" in text
    shot(tab, "04-connected")

    saved = db_row("acme_team")
    assert saved is not None and saved.port == 0
    refresh_token = json.loads(saved.extra)["refresh_token"]
    team = team_registry.find(registry(), "acme_team")
    assert team is not None and not team.paused and team.backfill_triggered_at
    run_id, conf, triggered_by = backfill_run("acme_team")
    assert conf == {"conn_id": "acme_team"} and "UI" in triggered_by
    cells = row(tab, "acme_team")
    assert run_id in cells.locator(".backfill").inner_text()
    assert cells.locator("td").nth(4).inner_text() == "never"  # no sync task ran yet
    # The team's name is shown as text: its markup is not markup, its control character escaped.
    name_cell = cells.locator(".team-name")
    assert name_cell.inner_text() == 'Acme <b id="injected">Ops</b> & "Co" &amp;\\u001b[31m'
    assert tab.locator("#injected").count() == 0

    cells.get_by_role("button", name="Test").click()
    flash = tab.locator("#flash")
    assert "Test of 'acme_team': OK: Connected to Dropbox team 'Acme <b" in flash.inner_text()
    shot(tab, "05-test-ok")

    emu.revoke_refresh_tokens(team=0)
    row(tab, "acme_team").get_by_role("button", name="Test").click()
    failed = tab.locator("#flash").inner_text()
    assert "Test of 'acme_team': FAILED" in failed
    assert "dropbox-team-log connect --conn-id acme_team" in failed  # the real connection
    last_error = row(tab, "acme_team").locator(".last-error").inner_text()
    assert "refresh token revoked or invalid for connection 'acme_team'" in last_error
    assert "Connect a team below with connection id acme_team" in last_error
    shot(tab, "06-revoked")

    row(tab, "acme_team").get_by_role("button", name="Pause").click()
    assert "Paused team 'acme_team'" in tab.locator("#flash").inner_text()
    assert team_registry.find(registry(), "acme_team").paused
    frame = open_in_ui(page, api_server)  # the UI's view shows the same
    assert "(paused)" in row(frame, "acme_team").inner_text()
    row(frame, "acme_team").get_by_role("button", name="Remove").click()
    assert "Removed team 'acme_team'" in frame.locator("#flash").inner_text()
    assert row(frame, "acme_team").count() == 0
    assert team_registry.find(registry(), "acme_team") is None
    assert db_row("acme_team") is not None  # the connection stays
    seen.assert_no_token(refresh_token)


def test_connect_by_pasting_the_code_when_no_redirect_uri_is_registered(
    admin, api_server, emu, clean
):
    page, seen = admin
    open_page(page, api_server)
    fill_connect(page, emu, "paste_team", "paste")
    page.get_by_role("button", name="Create the authorization link").click()
    link = page.locator("#authorize-link")
    assert "redirect_uri" not in link.get_attribute("href")
    with page.context.expect_page() as opened:
        link.click()  # a new tab: this one keeps the form for the code
    consent = opened.value
    consent.on("response", seen.record)
    consent.get_by_role("button", name="Allow").click()
    code = consent.locator("#auth-code").inner_text().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", code)
    shot(consent, "07-code-to-paste")
    page.locator("#code-form input[name=code]").fill(code)
    page.get_by_role("button", name="Connect").click()
    flash = page.locator("#flash")
    assert "as connection 'paste_team'" in flash.inner_text()
    saved = db_row("paste_team")
    assert saved is not None
    assert team_registry.find(registry(), "paste_team") is not None
    assert backfill_run("paste_team") is not None
    seen.assert_no_token(json.loads(saved.extra)["refresh_token"])
