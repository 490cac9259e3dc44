"""The control API under `/__emulator/`: clock, ground truth, faults, custom events, tokens,
stats. Used by tests, the demo and the benchmark; never counted as API calls or faulted.

It can inject events, revoke tokens and set faults, so it answers only its own clients: every
call must carry the emulator's per-run token (`CONTROL_TOKEN_HEADER`; printed at start-up, or
set with `--control-token` / `CONTROL_TOKEN_ENV`), and what a browser sends on behalf of another
web page is refused before the token is even looked at: an `Origin` other than the emulator's
own, `Sec-Fetch-Site: cross-site` or `same-site`, or a body of a type an HTML form can send
without a CORS preflight (form-urlencoded, multipart, text/plain). The answer is 403 with what
to do. (A custom header such as the token's is itself something a cross-origin page cannot
send without a preflight, which this server never grants.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from .clock import format_ts, parse_iso, parse_wire_ts
from .config import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER
from .faults import KINDS
from .responses import NDJSON, Response, json_response
from .state import EmulatorState
from .store import CustomEvent
from .web import approve_scripted

PREFIX = "/__emulator/"


class ControlError(Exception):
    """Bad control request -> 400 JSON {"error": ...}."""


def _error(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)


#: Body types a cross-origin HTML form (or a "simple" fetch) sends without a CORS preflight.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
#: `Sec-Fetch-Site` values of requests a page of this origin, or no page at all, made.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def new_control_token() -> str:
    """A random per-run control token."""
    return secrets.token_urlsafe(24)


def own_origins(port: int) -> frozenset[str]:
    """The origins of this emulator's own pages: its loopback names on its port."""
    return frozenset(f"http://{host}:{port}" for host in ("127.0.0.1", "localhost", "[::1]"))


class ControlGuard:
    """Who may use the control API: the emulator's own clients, holding its per-run token."""

    def __init__(self, token: str, origins: Iterable[str]) -> None:
        if not token:
            raise ValueError("the control token must not be empty")
        self.token = token
        self.origins = frozenset(origins)

    def refusal(self, headers: Mapping[str, str]) -> str | None:
        """Why a control request is refused, or None to serve it."""
        origin = headers.get("Origin")
        if origin is not None and origin not in self.origins:
            return (
                f"cross-origin request refused: Origin {origin!r} is not this emulator; the "
                "control API only serves its own clients (EmulatorClient, the demo, the tests)"
            )
        site = (headers.get("Sec-Fetch-Site") or "none").strip().lower()
        if site not in _OWN_FETCH_SITES:
            return (
                f"cross-site request refused (Sec-Fetch-Site: {site}): a web page may not drive "
                "the emulator's control API"
            )
        media_type = (headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        if media_type in _FORM_TYPES:
            return (
                f"a {media_type} body is refused on the control API (what a web page's form "
                "sends): send JSON with Content-Type: application/json"
            )
        given = headers.get(CONTROL_TOKEN_HEADER) or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            state = "a wrong" if given else "no"
            return (
                f"{state} control token: send the emulator's per-run token in the "
                f"{CONTROL_TOKEN_HEADER} header (it is printed when the emulator starts; set "
                f"it with --control-token or {CONTROL_TOKEN_ENV}; EmulatorClient(base_url, "
                "token=...) sends it)"
            )
        return None


class Control:
    def __init__(self, state: EmulatorState, guard: ControlGuard) -> None:
        self.s = state
        self.guard = guard

    def handle(
        self, method: str, path: str, query: str, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        refusal = self.guard.refusal(headers)
        if refusal is not None:
            return _error(refusal, 403)
        name = path[len(PREFIX) :].strip("/")
        handler = getattr(self, f"{method.lower()}_{name}", None)
        if handler is None:
            if hasattr(self, f"get_{name}") or hasattr(self, f"post_{name}"):
                return _error(f"method {method} not allowed for {path}", 405)
            return _error(f"unknown control endpoint {path}", 404)
        try:
            params = dict(parse_qsl(query, keep_blank_values=True))
            return handler(params, body)
        except ControlError as exc:
            return _error(str(exc))
        except ValueError as exc:
            return _error(str(exc))

    @staticmethod
    def _json(body: bytes, default: Any = None) -> Any:
        if not body.strip():
            return default
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ControlError(f"body is not JSON: {exc}") from exc

    def _now(self) -> dict[str, Any]:
        now = self.s.clock.now()
        return {"now": format_ts(now), "epoch": now}

    # Endpoints ----------------------------------------------------------------------------

    def get_health(self, _p: dict, _b: bytes) -> Response:
        return json_response(
            {
                "status": "ok",
                **self._now(),
                "team_id": self.s.team.team_id,
                "app_key": self.s.config.app_key,
            }
        )

    def get_config(self, _p: dict, _b: bytes) -> Response:
        return json_response(self.s.config.public_dict())

    def get_clock(self, _p: dict, _b: bytes) -> Response:
        return json_response(self._now())

    def post_clock(self, _p: dict, body: bytes) -> Response:
        arg = self._json(body, {})
        if not isinstance(arg, dict) or ("now" in arg) == ("advance_seconds" in arg):
            raise ControlError('send {"now": "<iso>"} or {"advance_seconds": n}')
        if "now" in arg:
            self.s.clock.set(parse_iso(str(arg["now"])))
        else:
            self.s.clock.advance(int(arg["advance_seconds"]))
        return json_response(self._now())

    def get_truth(self, params: dict, _b: bytes) -> Response:
        lo, hi = self.s.config.timeline
        start = parse_iso(params["start"]) if params.get("start") else lo
        end = parse_iso(params["end"]) if params.get("end") else hi
        as_of = parse_iso(params["as_of"]) if params.get("as_of") else self.s.clock.now()
        q, w = self.s.store.truth_window(start, end, as_of)
        plan = self.s.store.truth_plan(q, w)
        count = sum(n for _, n, _ in plan)
        if params.get("format") == "count":
            return json_response({"count": count, "as_of": format_ts(as_of)})
        length = sum(size for _, _, size in plan)
        chunks = self.s.store.truth_chunks(q, w, [d for d, n, _ in plan if n])
        return Response(
            200,
            b"",
            NDJSON,
            [("X-Event-Count", str(count)), ("X-As-Of", format_ts(as_of))],
            chunks=chunks,
            length=length,
        )

    def get_faults(self, _p: dict, _b: bytes) -> Response:
        return json_response(
            {
                "faults": self.s.faults.snapshot(),
                "injected": dict(self.s.faults.injected_by_kind),
                "kinds": KINDS,
            }
        )

    def post_faults(self, _p: dict, body: bytes) -> Response:
        arg = self._json(body, [])
        specs = arg.get("faults", []) if isinstance(arg, dict) else arg
        if not isinstance(specs, list):
            raise ControlError('send a list of faults or {"faults": [...]}')
        self.s.faults.replace(specs)
        return self.get_faults({}, b"")

    def delete_faults(self, _p: dict, _b: bytes) -> Response:
        self.s.faults.clear()
        return self.get_faults({}, b"")

    def post_events(self, _p: dict, body: bytes) -> Response:
        arg = self._json(body)
        default_vis = None
        items = arg
        if isinstance(arg, dict):
            items = arg.get("events")
            if arg.get("visible_at"):
                default_vis = parse_iso(str(arg["visible_at"]))
        if not isinstance(items, list):
            raise ControlError('send {"events": [...], "visible_at"?: iso} or a list of events')
        events = [self._custom_event(item, default_vis) for item in items]
        version = self.s.store.add_events(events)
        return json_response({"added": len(events), "custom_version": version})

    def _custom_event(self, item: Any, default_vis: int | None) -> CustomEvent:
        if not isinstance(item, dict):
            raise ControlError("each event must be a JSON object")
        vis = default_vis
        if "raw" in item or "event" in item:
            if item.get("visible_at"):
                vis = parse_iso(str(item["visible_at"]))
            if "raw" in item:
                raw = str(item["raw"]).strip()
                if "\n" in raw or "\r" in raw:
                    raise ControlError("raw events must be one line of JSON")
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise ControlError(f"raw event is not JSON: {exc}") from exc
                body = raw.encode()
            else:
                obj = item["event"]
                body = orjson.dumps(obj)
        else:
            obj, body = item, orjson.dumps(item)
        if not isinstance(obj, dict) or not isinstance(obj.get("timestamp"), str):
            raise ControlError("an event needs a string timestamp")
        try:
            ts = parse_wire_ts(obj["timestamp"])
        except ValueError as exc:
            raise ControlError(f"bad event timestamp {obj['timestamp']!r}: {exc}") from exc
        if vis is None:
            vis = max(ts, self.s.clock.now())
        if vis < ts:
            raise ControlError("visible_at is before the event's timestamp")
        cat = obj.get("event_category")
        etype = obj.get("event_type")
        return CustomEvent(
            ts=ts,
            vis=vis,
            category=cat.get(".tag", "other") if isinstance(cat, dict) else "other",
            event_type=etype.get(".tag", "") if isinstance(etype, dict) else "",
            body=body,
        )

    def post_revoke(self, _p: dict, body: bytes) -> Response:
        arg = self._json(body, {}) or {}
        token = arg.get("refresh_token") if isinstance(arg, dict) else None
        return json_response({"revoked": self.s.oauth.revoke(token)})

    def post_expire_tokens(self, _p: dict, _b: bytes) -> Response:
        self.s.oauth.expire_access_tokens()
        return json_response({"expired": True, **self._now()})

    def get_stats(self, _p: dict, _b: bytes) -> Response:
        return json_response(
            {**self.s.stats.snapshot(), "faults_injected": dict(self.s.faults.injected_by_kind)}
        )

    def delete_stats(self, _p: dict, _b: bytes) -> Response:
        self.s.stats.reset()
        self.s.faults.injected_by_kind.clear()
        return self.get_stats({}, b"")

    def post_approve(self, _p: dict, body: bytes) -> Response:
        arg = self._json(body, {})
        if not isinstance(arg, dict):
            raise ControlError("send a JSON object")
        arg.setdefault("client_id", self.s.config.app_key)
        return approve_scripted(self.s, arg)
