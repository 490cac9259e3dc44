"""Fixtures for the emulator tests: a running emulator (real HTTP on loopback), an SDK session
pointed at it, and a linked team client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import dropbox
import pytest
import requests
from requests.adapters import HTTPAdapter

from dropbox_emulator import EmulatorConfig, EmulatorHandle, running_emulator

#: The emulator's frozen "now" in these tests (deterministic bytes, cursors, visibility).
CLOCK = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SCOPES = ["events.read", "team_info.read"]
_HOSTS = (
    "https://api.dropboxapi.com",
    "https://api.dropbox.com",
    "https://content.dropboxapi.com",
    "https://notify.dropboxapi.com",
)


class _Rewrite(HTTPAdapter):
    """Fallback for transport.build_session: send the SDK's Dropbox URLs to the emulator."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        for host in _HOSTS:
            if request.url and request.url.startswith(host + "/"):
                request.url = self.base_url + request.url[len(host) :]
        return super().send(request, **kwargs)


def make_session(base_url: str) -> requests.Session:
    """The project's session (transport.build_session), or an equivalent if it is missing."""
    try:
        from dropbox_team_log.client.transport import build_session
    except ImportError:
        session = requests.Session()
        session.trust_env = False
        adapter = _Rewrite(base_url)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session
    return build_session(base_url)


def _config(**overrides: Any) -> EmulatorConfig:
    """Small, fast, deterministic defaults for tests."""
    values: dict[str, Any] = {"seed": 7, "clock": CLOCK, "events_per_day": 120.0}
    values.update(overrides)
    return EmulatorConfig(**values)


@pytest.fixture
def make_config() -> Callable[..., EmulatorConfig]:
    """Test defaults (seed 7, frozen CLOCK, 120 events/day) plus overrides."""
    return _config


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a module (using `make_config`) to change what `emulator` serves."""
    return _config()


@pytest.fixture
def emulator(emulator_config: EmulatorConfig) -> Iterator[EmulatorHandle]:
    """A running emulator on a free loopback port."""
    with running_emulator(emulator_config) as emu:
        yield emu


@pytest.fixture
def session(emulator: EmulatorHandle) -> Iterator[requests.Session]:
    s = make_session(emulator.base_url)
    yield s
    s.close()


@pytest.fixture
def link(emulator: EmulatorHandle, session: requests.Session) -> Callable[..., Any]:
    """Run the SDK's no-redirect code flow against the emulator (browser = `approve`)."""

    def _link(scope: list[str] | None = None, use_pkce: bool = False) -> Any:
        cfg = emulator.config
        flow = dropbox.DropboxOAuth2FlowNoRedirect(
            cfg.app_key,
            None if use_pkce else cfg.app_secret,
            token_access_type="offline",
            scope=scope or SCOPES,
            use_pkce=use_pkce,
        )
        flow.requests_session = session
        code = emulator.approve(flow.start())
        return flow.finish(code)

    return _link


@pytest.fixture
def team_client(
    emulator: EmulatorHandle, session: requests.Session, link: Callable[..., Any]
) -> dropbox.DropboxTeam:
    """A DropboxTeam client on a fresh refresh token (no retries on 429/5xx: tests see them)."""
    result = link()
    return dropbox.DropboxTeam(
        oauth2_refresh_token=result.refresh_token,
        app_key=emulator.config.app_key,
        app_secret=emulator.config.app_secret,
        session=session,
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
    )
