"""Driving an emulator from Python: control client, the "click Allow" helper, and
`running_emulator()` for tests. Stdlib HTTP (urllib), never through a proxy."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import urllib.error
import urllib.request
from collections.abc import Generator
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from .clock import floor_second, format_ts
from .config import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER, EmulatorConfig
from .server import EmulatorServer

# Hosts the SDK builds URLs for; approve() sends them to the emulator instead.
DROPBOX_HOSTS = ("www.dropbox.com", "api.dropboxapi.com", "api.dropbox.com")
#: A team of a multi-team emulator: its team id, or its index in the config's list.
TeamRef = str | int


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # surface the 302 (its Location holds the code)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def _http(
    method: str,
    url: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # ruff: ignore[suspicious-url-open-usage] - http(s) only
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


class _FormParser(HTMLParser):
    """Collects the authorize form's fields and the code on a "paste this code" page."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.action: str | None = None
        self.code: str | None = None
        self._in_code = False
        self._in_team = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "authorize-form":
            self.action = a.get("action")
        elif tag == "input" and a.get("type") == "hidden" and "name" in a:
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select" and a.get("name") == "team":
            self._in_team = True
        elif tag == "option" and self._in_team:
            if "selected" in a or "team" not in self.fields:
                self.fields["team"] = a.get("value", "")
        elif a.get("id") == "auth-code":
            self._in_code = True

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code = (self.code or "") + data

    def handle_endtag(self, tag: str) -> None:
        self._in_code = False
        if tag == "select":
            self._in_team = False


def _to_emulator(url: str, base_url: str | None) -> str:
    parts = urlsplit(url)
    if base_url and parts.hostname in DROPBOX_HOSTS:
        base = urlsplit(base_url)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
    return url


def approve(
    authorize_url: str,
    base_url: str | None = None,
    decision: str = "allow",
    *,
    team: TeamRef | None = None,
) -> str:
    """Do what the admin's browser does: open the authorize page, click Allow, return the code.

    `authorize_url` may be the SDK's `https://www.dropbox.com/oauth2/authorize?...`; with
    `base_url` it is sent to the emulator. With a redirect_uri the code is read from the 302
    Location (not followed); without, from the page that shows it. `team` (an id or an index)
    is the team chosen on the page of a multi-team emulator (default: the page's first team).
    """
    url = _to_emulator(authorize_url, base_url)
    if team is not None:  # the page then preselects (and checks) it
        url += ("&" if "?" in url else "?") + urlencode({"team": str(team)})
    status, _, page = _http("GET", url)
    if status != 200:
        raise RuntimeError(f"authorize page answered {status}: {page[:300]!r}")
    form = _FormParser()
    form.feed(page.decode())
    if form.action is None:
        raise RuntimeError("no authorize form on the page")
    parts = urlsplit(url)
    post_url = urlunsplit((parts.scheme, parts.netloc, form.action, "", ""))
    data = urlencode({**form.fields, "decision": decision}).encode()
    status, headers, page = _http("POST", post_url, data, "application/x-www-form-urlencoded")
    if status == 302:
        query = parse_qs(urlsplit(headers["Location"]).query)
        if "code" not in query:
            raise RuntimeError(f"authorization refused: {headers['Location']}")
        return query["code"][0]
    result = _FormParser()
    result.feed(page.decode())
    if status != 200 or not result.code:
        raise RuntimeError(f"no code after approving ({status}): {page[:300]!r}")
    return result.code.strip()


def _message(data: bytes) -> str:
    """The `error` of a control API answer, or its first bytes."""
    try:
        return str(json.loads(data)["error"])
    except (ValueError, KeyError, TypeError):
        return repr(data[:300])


def _iso(value: datetime | str | int) -> str:
    """Control-API time: aware/naive-UTC datetime, epoch seconds, or an ISO string as is."""
    if isinstance(value, datetime):
        return format_ts(int(floor_second(value).timestamp()))
    if isinstance(value, int):
        return format_ts(value)
    return value


class ControlRefusedError(RuntimeError):
    """The emulator answered 403: no or a wrong control token, or a browser-style request."""


class EmulatorClient:
    """The control API over HTTP, for an emulator in this process or another one.

    `token` is the emulator's per-run control token (printed when it starts); without one,
    the `CONTROL_TOKEN_ENV` environment variable's.
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or os.environ.get(CONTROL_TOKEN_ENV) or ""
        self.timeout = timeout  # seconds per control call: a first look at a huge day is slow

    def _request(self, method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
        """One control call with the token; (status, body)."""
        headers = {CONTROL_TOKEN_HEADER: self.token} if self.token else {}
        status, _, data = _http(method, url, body, timeout=self.timeout, headers=headers)
        if status == 403:
            raise ControlRefusedError(f"emulator refused {method} {url}: {_message(data)}")
        return status, data

    def _call(self, method: str, name: str, payload: Any = None, query: str = "") -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        url = f"{self.base_url}/__emulator/{name}" + (f"?{query}" if query else "")
        status, data = self._request(method, url, body)
        if status != 200:
            raise RuntimeError(f"emulator {method} {name} -> {status}: {data[:500]!r}")
        return json.loads(data) if data else None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def now(self) -> str:
        return self._call("GET", "clock")["now"]

    def set_clock(self, now: datetime | str | int) -> str:
        return self._call("POST", "clock", {"now": _iso(now)})["now"]

    def advance(self, seconds: float) -> str:
        return self._call("POST", "clock", {"advance_seconds": int(seconds)})["now"]

    def teams(self) -> list[dict[str, str]]:
        """The teams served, `[{team_id, name}]`; the first is the default team."""
        return self.health()["teams"]

    def truth(
        self,
        start: datetime | str | int | None = None,
        end: datetime | str | int | None = None,
        as_of: datetime | str | int | None = None,
        *,
        team: TeamRef | None = None,
    ) -> list[bytes]:
        """The exact served bytes of every event visible at as_of (default: now) with
        timestamp in [start, end), duplicates as separate items, in (timestamp, order):
        of `team` (an id or an index), or of every team, team after team."""
        url = f"{self.base_url}/__emulator/truth?{_truth_query(start, end, as_of, team)}"
        status, data = self._request("GET", url)
        if status != 200:
            raise RuntimeError(f"truth -> {status}: {data[:300]!r}")
        return data.splitlines()

    def truth_count(
        self,
        start: datetime | str | int | None = None,
        end: datetime | str | int | None = None,
        as_of: datetime | str | int | None = None,
        *,
        team: TeamRef | None = None,
    ) -> int:
        """How many events `truth()` would return (cheap: no bodies are sent)."""
        query = _truth_query(start, end, as_of, team) + "&format=count"
        return self._call("GET", "truth", query=query.lstrip("&"))["count"]

    def set_faults(
        self, faults: list[dict[str, Any]], *, team: TeamRef | None = None
    ) -> list[dict[str, Any]]:
        """Replace every fault; with `team`, only that team's faults (each then names it)."""
        return self._call("POST", "faults", {"faults": faults}, query=_team_query(team))["faults"]

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "faults")

    def clear_faults(self, *, team: TeamRef | None = None) -> None:
        """Clear every fault, or (`team`) that team's."""
        self._call("DELETE", "faults", query=_team_query(team))

    def stats(self) -> dict[str, Any]:
        """Calls per route, responses per route and status, calls per team and route."""
        return self._call("GET", "stats")

    def reset_stats(self) -> dict[str, Any]:
        return self._call("DELETE", "stats")

    def revoke_refresh_tokens(
        self, refresh_token: str | None = None, *, team: TeamRef | None = None
    ) -> str:
        """Revoke one refresh token, every one of `team`, or (neither) every one."""
        payload: dict[str, Any] = {} if refresh_token is None else {"refresh_token": refresh_token}
        return self._call("POST", "revoke", payload, query=_team_query(team))["revoked"]

    def expire_access_tokens(self, *, team: TeamRef | None = None) -> None:
        """Every access token issued so far (to `team`, or to every team) expires."""
        self._call("POST", "expire_tokens", {}, query=_team_query(team))

    def add_events(
        self,
        events: list[dict[str, Any]],
        visible_at: datetime | str | int | None = None,
        *,
        team: TeamRef | None = None,
    ) -> int:
        """Add events (raw TeamEvent dicts, or {"event"|"raw": ..., "visible_at": ...}) to
        `team` (required when the emulator serves several)."""
        payload: dict[str, Any] = {"events": events}
        if visible_at is not None:
            payload["visible_at"] = _iso(visible_at)
        return self._call("POST", "events", payload, query=_team_query(team))["custom_version"]

    def approve(
        self, authorize_url: str | None = None, *, team: TeamRef | None = None, **params: Any
    ) -> str:
        """Approve like a browser (given the SDK's authorize URL) or via the scripted
        endpoint (given client_id/scope/code_challenge/redirect_uri/state keywords), as the
        admin of `team` (an id or an index; default: the first team)."""
        if authorize_url is not None:
            return approve(authorize_url, self.base_url, team=team)
        return self._call("POST", "approve", params, query=_team_query(team))["code"]


def _team_query(team: TeamRef | None) -> str:
    return "" if team is None else urlencode({"team": str(team)})


def _truth_query(
    start: datetime | str | int | None,
    end: datetime | str | int | None,
    as_of: datetime | str | int | None,
    team: TeamRef | None,
) -> str:
    params = {
        k: _iso(v) for k, v in (("start", start), ("end", end), ("as_of", as_of)) if v is not None
    }
    if team is not None:
        params["team"] = str(team)
    return urlencode(params)


class EmulatorHandle(EmulatorClient):
    """What `running_emulator()` yields: the control client plus the in-process server."""

    def __init__(self, server: EmulatorServer) -> None:
        super().__init__(server.base_url, token=server.control_token)
        self.server = server
        self.config = server.config
        self.state = server.state


@contextlib.contextmanager
def running_emulator(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    control_token: str | None = None,
    **overrides: Any,
) -> Generator[EmulatorHandle, None, None]:
    """Serve an emulator on a free loopback port in a background thread, for a `with` block.

    `overrides` are EmulatorConfig fields (applied on top of `config`). The handle knows the
    control token (`control_token`, else the environment's or a random one).
    """
    if config is None:
        config = EmulatorConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    server = EmulatorServer(config, host=host, port=port, control_token=control_token).start()
    try:
        yield EmulatorHandle(server)
    finally:
        server.stop()
