"""The control API under `/__emulator/`: clock, ground truth, faults, custom events, tokens,
stats. Used by tests, the demo and the benchmark; never counted as API calls or faulted.

With several teams, `team` (a team id or an index in the config's list; query parameter or
JSON field) aims a call at one team: truth, events, faults, revoke, expire_tokens, approve.
Without it: truth, faults, revoke and expire_tokens cover every team, approve takes the first
team (as the consent page does), and events must name a team. The clock is shared.

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

import itertools
import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from .clock import format_ts, parse_iso, parse_wire_ts
from .config import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER
from .faults import KINDS
from .responses import NDJSON, Response, json_response
from .state import EmulatorState, TeamState
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

    def _team(self, params: dict, arg: Any = None) -> TeamState | None:
        """The team a call names (query `team` or JSON field `team`), None if it names none."""
        selector = params.get("team")
        if selector is None and isinstance(arg, dict):
            selector = arg.get("team")
        if selector is None or selector == "":
            return None
        team = self.s.find_team(str(selector))
        if team is None:
            raise ControlError(f"no team {selector!r}: the teams are {list(self.s.teams)}")
        return team

    def _teams(self, params: dict, arg: Any = None) -> list[TeamState]:
        """The team a call names, or every team."""
        team = self._team(params, arg)
        return [team] if team is not None else list(self.s.teams.values())

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
                "teams": [{"team_id": tid, "name": t.team.name} for tid, t in self.s.teams.items()],
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
        """The served bytes of one team's visible events, or of every team's, team by team."""
        lo, hi = self.s.config.timeline
        start = parse_iso(params["start"]) if params.get("start") else lo
        end = parse_iso(params["end"]) if params.get("end") else hi
        as_of = parse_iso(params["as_of"]) if params.get("as_of") else self.s.clock.now()
        plans = []
        for t in self._teams(params):
            q, w = t.store.truth_window(start, end, as_of)
            plans.append((t, q, w, t.store.truth_plan(q, w)))
        count = sum(n for *_, plan in plans for _, n, _ in plan)
        if params.get("format") == "count":
            return json_response({"count": count, "as_of": format_ts(as_of)})
        length = sum(size for *_, plan in plans for _, _, size in plan)
        chunks = itertools.chain.from_iterable(
            t.store.truth_chunks(q, w, [d for d, n, _ in plan if n]) for t, q, w, plan in plans
        )
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

    def post_faults(self, params: dict, body: bytes) -> Response:
        """Replace every fault, or (`team`) that team's faults, each then naming the team."""
        arg = self._json(body, [])
        specs = arg.get("faults", []) if isinstance(arg, dict) else arg
        if not isinstance(specs, list):
            raise ControlError('send a list of faults or {"faults": [...]}')
        team = self._team(params, arg)
        specs = [self._fault_team(spec) for spec in specs]
        if team is not None:
            specs = [self._aimed(spec, team.team_id) for spec in specs]
        self.s.faults.replace(specs, None if team is None else team.team_id)
        return self.get_faults({}, b"")

    def _fault_team(self, spec: Any) -> Any:
        """A fault spec with its `team` (an id or an index) as a team id."""
        if not isinstance(spec, dict) or spec.get("team") is None:
            return spec
        team = self._team({"team": str(spec["team"])})
        assert team is not None
        return {**spec, "team": team.team_id}

    @staticmethod
    def _aimed(spec: Any, team_id: str) -> Any:
        if not isinstance(spec, dict):
            return spec
        if spec.get("team") not in (None, team_id):
            raise ControlError(f"a fault for team {spec['team']!r} among faults for {team_id!r}")
        return {**spec, "team": team_id}

    def delete_faults(self, params: dict, _b: bytes) -> Response:
        team = self._team(params)
        self.s.faults.clear(None if team is None else team.team_id)
        return self.get_faults({}, b"")

    def post_events(self, params: dict, body: bytes) -> Response:
        arg = self._json(body)
        team = self._team(params, arg)
        if team is None:
            if len(self.s.teams) > 1:
                raise ControlError(
                    f"name the team the events belong to: one of {list(self.s.teams)}"
                )
            team = self.s.default
        default_vis = None
        items = arg
        if isinstance(arg, dict):
            items = arg.get("events")
            if arg.get("visible_at"):
                default_vis = parse_iso(str(arg["visible_at"]))
        if not isinstance(items, list):
            raise ControlError('send {"events": [...], "visible_at"?: iso} or a list of events')
        events = [self._custom_event(item, default_vis) for item in items]
        version = team.store.add_events(events)
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

    def post_revoke(self, params: dict, body: bytes) -> Response:
        """`{}`: every refresh token; `{"team": t}`: that team's; `{"refresh_token": r}`: one."""
        arg = self._json(body, {}) or {}
        token = arg.get("refresh_token") if isinstance(arg, dict) else None
        team = self._team(params, arg)
        return json_response(
            {"revoked": self.s.oauth.revoke(token, None if team is None else team.team_id)}
        )

    def post_expire_tokens(self, params: dict, body: bytes) -> Response:
        team = self._team(params, self._json(body, {}))
        self.s.oauth.expire_access_tokens(None if team is None else team.team_id)
        return json_response({"expired": True, **self._now()})

    def get_stats(self, _p: dict, _b: bytes) -> Response:
        return json_response(
            {**self.s.stats.snapshot(), "faults_injected": dict(self.s.faults.injected_by_kind)}
        )

    def delete_stats(self, _p: dict, _b: bytes) -> Response:
        self.s.stats.reset()
        self.s.faults.injected_by_kind.clear()
        return self.get_stats({}, b"")

    def post_approve(self, params: dict, body: bytes) -> Response:
        arg = self._json(body, {})
        if not isinstance(arg, dict):
            raise ControlError("send a JSON object")
        team = self._team(params, arg)
        if team is not None:
            arg["team"] = team.team_id
        arg.setdefault("client_id", self.s.config.app_key)
        return approve_scripted(self.s, arg)
