"""One real api-server (SQLite, the project's plugins) and one emulator for every teams-page test
module; a clean registry and no Dropbox connection before each test."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import requests

from dropbox_team_log.settings import TEAMS_VARIABLE
from tests.helpers.api_server import ApiServer
from tests.helpers.connecting import delete_row, delete_variable, emulator_config

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
