"""One real api-server (SQLite, the project's plugins), one emulator and one browser for every
teams-page test module; a clean registry and no Dropbox connection before each test.
Screenshots go to build/screenshots/teams_page/ (docs/connect.md shows some of them)."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dropbox_team_log.settings import TEAMS_VARIABLE
from tests.helpers.api_server import ApiServer
from tests.helpers.connecting import (
    ACCESS_TOKEN_RE,
    delete_row,
    delete_variable,
    emulator_config,
)
from tests.helpers.paths import REPO

#: A team name an attacker could choose: markup, quotes, an entity and a control character.
HOSTILE_TEAM_NAME = 'Acme <b id="injected">Ops</b> & "Co" &amp;\x1b[31m'
CONN_IDS = ("acme_team", "paste_team", "status_team", "dropbox_team_default")


@pytest.fixture(scope="package")
def emu() -> Iterator[Any]:
    from dropbox_emulator import running_emulator

    with running_emulator(emulator_config(team_name=HOSTILE_TEAM_NAME)) as handle:
        yield handle


@pytest.fixture(scope="package")
def api_server(airflow_db) -> Generator[ApiServer, None, None]:
    server = ApiServer(airflow_db)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def clean(airflow_db) -> Iterator[None]:
    """No registry and none of the tests' connections, before and after."""

    def wipe() -> None:
        delete_variable(TEAMS_VARIABLE)
        for conn_id in CONN_IDS:
            delete_row(conn_id)

    wipe()
    yield
    wipe()


class PageClient:
    """The page over plain HTTP, signed in as `user` (the UI's `_token` cookie)."""

    def __init__(self, server: ApiServer, user: str | None) -> None:
        self.base = f"{server.url}/dropbox-teams"
        self.session = requests.Session()
        self.session.trust_env = False
        if user is not None:
            self.session.cookies.set("_token", server.token(user), domain="127.0.0.1", path="/")

    def get(self, path: str = "/", **kw: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=60, allow_redirects=False, **kw)

    def post(self, path: str, data: dict[str, str], **kw: Any) -> requests.Response:
        return self.session.post(
            self.base + path, data=data, timeout=60, allow_redirects=False, **kw
        )

    def csrf(self) -> str:
        page = self.get("/")
        assert page.status_code == 200, page.text
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


# --- the browser (Playwright on Debian's Chromium) ---------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "build" / "screenshots" / "teams_page"
WAIT_MS = 120_000  # the longest any one browser step may take


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM))
        yield instance
        instance.close()


class Seen:
    """Every response body and URL the browser received, for the token checks."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def record(self, response: Any) -> None:
        self.texts.append(response.url)
        self.texts.extend(f"{k}: {v}" for k, v in response.headers.items())
        with contextlib.suppress(Exception):  # a redirect or a binary body: no text to keep
            self.texts.append(response.text())

    def assert_no_token(self, *secrets: str) -> None:
        text = "\n".join(self.texts)
        for secret in secrets:
            assert secret not in text, "a token reached the browser"
        assert not ACCESS_TOKEN_RE.search(text), "an access token reached the browser"


@pytest.fixture
def admin(browser, api_server: ApiServer) -> Iterator[tuple[Any, Seen]]:
    """A browser tab signed in to Airflow as the admin, at the teams page of the UI."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # Playwright's 30 s default is too short for the Airflow UI's first load (a React bundle)
    # on 2 cores shared with other work.
    context.set_default_timeout(WAIT_MS)
    context.add_cookies(
        [{"name": "_token", "value": api_server.token("admin"), "url": api_server.url}]
    )
    page = context.new_page()
    seen = Seen()
    page.on("response", seen.record)
    yield page, seen
    context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
