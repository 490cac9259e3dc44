"""The HTTP server: stdlib ThreadingHTTPServer, loopback only, keep-alive, faults applied here.

Every response carries `X-Dropbox-Request-Id`. Control routes (`/__emulator/...`) are neither
counted nor faulted, and answer only a caller with the per-run token (control.py); every other
call is counted per route (and per team) and may be faulted. A call's team is that of its
access token, refresh token or code, or the team chosen on the consent page: faults naming a
team hit only its calls.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from .api import DropboxApi
from .config import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER, EmulatorConfig
from .control import PREFIX, Control, ControlGuard, new_control_token, own_origins
from .faults import POST_KINDS, PRE_KINDS, CallInfo, Fault, corrupt_page
from .oauth import ApiAuthError
from .responses import (
    HTML,
    JSON,
    Response,
    html_response,
    json_response,
    route_error,
    text_response,
)
from .state import EmulatorState
from .web import authorize_get, authorize_post, error_page, parse_form, token

log = logging.getLogger("dropbox_emulator")

NON_JSON_BODY = (
    b"<!DOCTYPE html><html><head><title>Dropbox - 502</title></head><body>"
    b"<h1>Error (502)</h1><p>Something went wrong. Don't worry, your files are "
    b"still safe and the Dropboxers have been notified.</p></body></html>"
)


def check_loopback(host: str) -> str:
    """The address to bind: loopback only; anything else is refused with a clear error."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise ValueError(
            f"refusing to bind {host!r}: the Dropbox emulator only listens on a loopback "
            "address (127.0.0.1, ::1 or localhost), never on a network interface"
        )
    return str(ip)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: EmulatorState
    api: DropboxApi
    control: Control


class _IPv6HTTPServer(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's session reuses connections
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this
    server_version = "envoy"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    # Dispatch -----------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        arrived = time.monotonic()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        path, _, query = self.path.partition("?")
        try:
            if path.startswith(PREFIX):
                self._send(self.server.control.handle(method, path, query, body, self.headers))
                return
            self._api_call(method, path, query, body, arrived)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug in the emulator: answer 500 and keep serving
            log.exception("emulator error on %s %s", method, self.path)
            self._send(text_response("emulator internal error (see its log)", 500))

    def _api_call(self, method: str, path: str, query: str, body: bytes, arrived: float) -> None:
        state = self.server.state
        route = path.strip("/")
        form = parse_form(body) if route.startswith("oauth2/") and method == "POST" else {}
        team = self._call_team(route, query, form)
        state.stats.call(route, team)
        is_refresh = route == "oauth2/token" and form.get("grant_type") == "refresh_token"
        decision = state.faults.decide(CallInfo(route, is_refresh, team))
        if decision.slow_seconds:
            time.sleep(decision.slow_seconds)
        fault = decision.fault
        if fault is not None and fault.kind in PRE_KINDS:
            resp = self._fault_response(fault, team, body)
            if resp is None:
                _wait_until(arrived + decision.latency_seconds)
                state.stats.status(route, "dropped")
                self._drop()
                return
        else:
            if fault is not None and fault.kind == "revoke_refresh_token":
                self._revoke_behind(route, body)
            resp = self._route(method, route, query, body)
        _wait_until(arrived + decision.latency_seconds)
        state.stats.status(route, resp.status)
        if fault is not None and fault.kind in POST_KINDS:
            self._send_mangled(resp, fault)
        else:
            self._send(resp)

    def _call_team(self, route: str, query: str, form: dict[str, str]) -> str | None:
        """The team a call acts for, as far as its credentials or parameters tell."""
        oauth = self.server.state.oauth
        if route.startswith("2/"):
            auth = self.headers.get("Authorization") or ""
            return oauth.team_of(auth.partition(" ")[2].strip(), "a")
        if route == "oauth2/token":
            if form.get("grant_type") == "refresh_token":
                return oauth.team_of(form.get("refresh_token", ""), "r")
            return oauth.team_of_code(form.get("code", ""))
        if route == "oauth2/authorize":
            selector = form.get("team") if form else dict(parse_qsl(query)).get("team")
            return oauth.resolve_team(selector)
        return None

    def _route(self, method: str, route: str, query: str, body: bytes) -> Response:
        state = self.server.state
        if route == "oauth2/authorize":
            if method == "GET":
                return authorize_get(state, dict(parse_qsl(query, keep_blank_values=True)))
            if method == "POST":
                return authorize_post(state, parse_form(body))
        elif route == "oauth2/token":
            if method == "POST":
                return token(state, self.headers, body)
        elif route.startswith("2/"):
            if method == "POST":
                return self.server.api.handle(route, self.headers, body)
        elif route == "":
            return html_response(
                b"<!doctype html><title>Dropbox API emulator</title><h1>Dropbox API emulator"
                b"</h1><p>Control API: <code>/__emulator/health</code> and the rest, for "
                b"clients sending the <code>" + CONTROL_TOKEN_HEADER.encode() + b"</code> "
                b"header the emulator printed when it started (not for browsers).</p>"
            )
        else:
            return error_page(f"Not found: /{route}", 404)
        return text_response(f"Method {method} not allowed for /{route}", 405)

    # Faults -------------------------------------------------------------------------------

    def _fault_response(self, fault: Fault, team: str | None, body: bytes) -> Response | None:
        kind = fault.kind
        if kind == "drop_connection":
            return None
        if kind == "rate_limit":
            resp = json_response(
                {
                    "error_summary": "too_many_requests/..",
                    "error": {
                        "reason": {".tag": "too_many_requests"},
                        "retry_after": fault.retry_after,
                    },
                },
                429,
            )
            resp.headers.append(("Retry-After", str(fault.retry_after)))
            return resp
        if kind == "server_error":
            status = fault.status or 500
            resp = text_response(
                "Internal Server Error" if status == 500 else "Service Unavailable", status
            )
            if status == 503:
                resp.headers.append(("Retry-After", str(fault.retry_after)))
            return resp
        if kind == "non_json":
            return Response(200, NON_JSON_BODY, JSON)
        if kind == "expire_access_token":
            return Response(401, ApiAuthError("expired_access_token").body())
        if kind == "bad_cursor":
            return route_error("bad_cursor")
        if kind == "cursor_reset":
            t = self.server.state.teams.get(team or "")
            cursor = None if t is None else self.server.api.decode_cursor(t, body)
            if t is None or cursor is None:
                return route_error("bad_cursor")
            return self.server.api.reset_response(t, cursor)
        raise AssertionError(f"unhandled fault kind {kind}")

    def _revoke_behind(self, route: str, body: bytes) -> None:
        """Revoke the refresh token this call uses (directly or behind its access token)."""
        oauth = self.server.state.oauth
        if route == "oauth2/token":
            rid = oauth.refresh_id_of(parse_form(body).get("refresh_token", ""), "r")
        else:
            auth = self.headers.get("Authorization") or ""
            rid = oauth.refresh_id_of(auth.partition(" ")[2].strip(), "a")
        if rid:
            oauth.revoke_id(rid)

    def _send_mangled(self, resp: Response, fault: Fault) -> None:
        if fault.kind == "corrupt_event":
            if resp.status == 200:
                resp = Response(200, corrupt_page(resp.body, fault), JSON, resp.headers)
            self._send(resp)
            return
        cut = resp.body[: int(len(resp.body) * fault.fraction)]
        if fault.kind == "truncated_body":
            self._send(Response(200, cut, JSON, resp.headers))
            return
        # drop_mid_body: promise the whole body, send part of it, hang up.
        self._send_head(resp, len(resp.body))
        self.wfile.write(cut)
        self.wfile.flush()
        self._drop()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # Output -------------------------------------------------------------------------------

    def _send_head(self, resp: Response, length: int) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Dropbox-Request-Id", secrets.token_hex(16))
        if resp.content_type != HTML:
            self.send_header("Cache-Control", "no-cache")
        for name, value in resp.headers:
            self.send_header(name, value)
        self.end_headers()

    def _send(self, resp: Response) -> None:
        self._send_head(resp, resp.content_length())
        if resp.chunks is not None:
            for chunk in resp.chunks:
                self.wfile.write(chunk)
        elif resp.body:
            self.wfile.write(resp.body)


class EmulatorServer:
    """One emulator: state + HTTP server. `start()` serves from a daemon thread.

    `control_token` guards the control API (see control.py); without one, the
    `CONTROL_TOKEN_ENV` environment variable's, else a random one (`control_token` tells it).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        control_token: str | None = None,
    ) -> None:
        bind = check_loopback(host)
        self.config = config or EmulatorConfig()
        self.state = EmulatorState(self.config)
        self.control_token = (
            control_token or os.environ.get(CONTROL_TOKEN_ENV) or new_control_token()
        )
        cls = _IPv6HTTPServer if ":" in bind else _HTTPServer
        self.httpd = cls((bind, port), _Handler)
        self.httpd.state = self.state
        self.httpd.api = DropboxApi(self.state)
        guard = ControlGuard(self.control_token, own_origins(self.port))
        self.httpd.control = Control(self.state, guard)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.05)

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name="dropbox-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _wait_until(deadline: float) -> None:
    """Sleep until `deadline` (time.monotonic()); at once if it has passed."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
