"""The Dropbox API routes: argument checks, auth, get_info, get_events and continue.

Wire behaviour follows Dropbox: 400 plain text for bad input, 401 JSON for auth errors,
409 JSON route errors, `Content-Type: application/json` exactly on JSON answers. Every call
is served from the access token's team: its info, its events, its cursors (another team's
cursor is a `bad_cursor`).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import replace
from typing import Any

import orjson

from .clock import format_ts, parse_wire_ts
from .cursor import BadCursor, CursorState, Query, Window
from .oauth import ApiAuthError
from .responses import Response, bad_input, json_response, route_error
from .state import EmulatorState, TeamState

GET_EVENTS = "2/team_log/get_events"
CONTINUE = "2/team_log/get_events/continue"
GET_INFO = "2/team/get_info"
REVOKE_ROUTE = "2/auth/token/revoke"

EVENT_CATEGORIES = frozenset(
    {
        "admin_alerting",
        "apps",
        "comments",
        "dash",
        "data_governance",
        "devices",
        "domains",
        "encryption",
        "file_operations",
        "file_requests",
        "groups",
        "logins",
        "members",
        "paper",
        "passwords",
        "protect",
        "reports",
        "sharing",
        "showcase",
        "signatures",
        "sso",
        "team_folders",
        "team_policies",
        "team_profile",
        "tfa",
        "trusted_teams",
        "other",
    }
)
_TAG = re.compile(r"^[a-z0-9_]+$")
_JSON_TYPES = ("application/json", "text/plain; charset=dropbox-cors-hack")

TEAM_POLICIES = {
    "sharing": {
        "shared_folder_member_policy": {".tag": "team"},
        "shared_folder_join_policy": {".tag": "from_anyone"},
        "shared_link_create_policy": {".tag": "default_public"},
        "group_creation_policy": {".tag": "admins_only"},
        "shared_folder_link_restriction_policy": {".tag": "anyone"},
        "enforce_link_password_policy": {".tag": "optional"},
        "default_link_expiration_days_policy": {".tag": "none"},
        "shared_link_default_permissions_policy": {".tag": "default"},
    },
    "emm_state": {".tag": "disabled"},
    "office_addin": {".tag": "enabled"},
    "suggest_members_policy": {".tag": "enabled"},
    "top_level_content_policy": {".tag": "admin_only"},
}

ROUTE_SCOPES = {GET_INFO: "team_info.read", GET_EVENTS: "events.read", CONTINUE: "events.read"}


class _BadArg(Exception):
    """An argument problem -> 400 text."""


def _api_name(route: str) -> str:
    return route.removeprefix("2/")


class DropboxApi:
    """Serves the `/2/...` routes from an EmulatorState."""

    def __init__(self, state: EmulatorState) -> None:
        self.s = state
        self.routes = {
            GET_INFO: self.get_info,
            GET_EVENTS: self.get_events,
            CONTINUE: self.get_continue,
            REVOKE_ROUTE: self.token_revoke,
        }

    def handle(self, route: str, headers: Any, body: bytes) -> Response:
        handler = self.routes.get(route)
        name = _api_name(route)
        if handler is None:
            return Response(
                404, f'Unknown API function: "{name}"'.encode(), "text/plain; charset=utf-8"
            )
        auth = headers.get("Authorization")
        if not auth:
            return bad_input(
                name, 'Must provide HTTP header "Authorization" or URL parameter "authorization".'
            )
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return bad_input(
                name,
                'Invalid authorization value in HTTP header "Authorization": '
                f'"{auth[:40]}".  Expecting "Bearer <oauth2-access-token>".',
            )
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        full_ctype = (headers.get("Content-Type") or "").strip().lower()
        if ctype != "application/json" and full_ctype not in _JSON_TYPES:
            given = headers.get("Content-Type")
            return bad_input(
                name,
                f'Bad HTTP "Content-Type" header: "{given}"'
                '.  Expecting one of "application/json", "application/json; '
                'charset=utf-8", "text/plain; charset=dropbox-cors-hack".',
            )
        try:
            team_id = self.s.oauth.check_access(token.strip(), ROUTE_SCOPES.get(route, "")).team_id
        except ApiAuthError as exc:
            if exc.tag == "missing_scope" and route == REVOKE_ROUTE:
                team_id = self.s.oauth.team_of(token.strip(), "a") or self.s.default.team_id
            else:
                return Response(401, exc.body())
        try:
            return handler(self.s.teams[team_id], token.strip(), body)
        except _BadArg as exc:
            return bad_input(name, str(exc))

    # Routes -------------------------------------------------------------------------------

    def get_info(self, t: TeamState, _token: str, body: bytes) -> Response:
        if body.strip() not in (b"", b"null"):
            raise _BadArg("request body: expected null, got value")
        team, cfg = t.team, t.config
        provisioned = len(team.members)
        return json_response(
            {
                "name": team.name,
                "team_id": team.team_id,
                "num_licensed_users": cfg.num_licensed_users,
                "num_provisioned_users": provisioned,
                "num_used_licenses": max(0, provisioned - max(1, provisioned // 20)),
                "policies": TEAM_POLICIES,
            }
        )

    def token_revoke(self, _t: TeamState, token: str, body: bytes) -> Response:
        rid = self.s.oauth.refresh_id_of(token, "a")
        if rid:
            self.s.oauth.revoke_id(rid)
        return json_response(None)

    def get_events(self, t: TeamState, _token: str, body: bytes) -> Response:
        arg = self._json_object(body)
        q = self._query(arg)
        if q.category is not None and q.event_type is not None:
            return route_error("invalid_filters")
        if q.start is not None and q.end is not None and q.start > q.end:
            return route_error("invalid_time_range")
        if q.account_id is not None and q.account_id not in t.team.account_ids:
            return route_error("account_id_not_found")
        now = self.s.clock.now()
        window = Window(None, now, 0, t.store.custom_version)
        days = t.store.candidate_days(q.start, q.end)
        state = CursorState(q, window, days[0] if days else 0, 0, 0, None)
        return self._serve(t, state)

    def get_continue(self, t: TeamState, _token: str, body: bytes) -> Response:
        arg = self._json_object(body)
        extra = set(arg) - {"cursor"}
        if extra:
            raise _BadArg(f"request body: unknown field '{sorted(extra)[0]}'")
        if "cursor" not in arg:
            raise _BadArg("request body: missing required field 'cursor'")
        if not isinstance(arg["cursor"], str):
            raise _BadArg(
                f"request body: cursor: expected string, got {type(arg['cursor']).__name__}"
            )
        try:
            state = t.cursors.decode(arg["cursor"])
        except BadCursor:
            return route_error("bad_cursor")
        now = self.s.clock.now()
        ttl = t.config.cursor_ttl
        if ttl is not None and now - state.window.hi > ttl:
            return self.reset_response(t, state)
        if state.done:
            if state.query.end is not None:
                return self._page_response(t, replace(state, n=state.n + 1), [], False)
            # Poll: serve what became visible since the previous snapshot.
            w = state.window
            window = Window(w.hi, now, w.cv_hi, t.store.custom_version)
            days = t.store.candidate_days(state.query.start, None)
            state = replace(state, window=window, day=days[0] if days else 0, k=0, done=False)
        return self._serve(t, state)

    # Paging -------------------------------------------------------------------------------

    def _serve(self, t: TeamState, state: CursorState) -> Response:
        cfg = t.config
        q, w = state.query, state.window
        size = min(q.limit, cfg.page_size)
        page = t.store.page(q, w, state.day, state.k, size)
        if (
            page.bodies
            and cfg.empty_page_rate
            and self._roll(t, state, "empty") < cfg.empty_page_rate
        ):
            return self._page_response(t, replace(state, n=state.n + 1), [], True)
        bodies = page.bodies
        rng = random.Random(int(self._roll(t, state, "shuffle") * 2**53))
        rng.shuffle(bodies)  # pages are not sorted
        seen = page.ts if state.latest is None else [*page.ts, state.latest]
        latest = max(seen, default=None)
        nxt = CursorState(q, w, page.day, page.k, state.n + 1, latest, not page.has_more)
        return self._page_response(t, nxt, bodies, page.has_more)

    @staticmethod
    def _roll(t: TeamState, state: CursorState, what: str) -> float:
        """A deterministic number in [0, 1) for this point of this team's cursor chain."""
        q, w = state.query, state.window
        key = (
            f"{t.config.seed}|{what}|{q.start}|{q.end}|{q.category}|{q.event_type}|"
            f"{q.account_id}|{w.lo}|{w.hi}|{state.day}|{state.k}|{state.n}"
        )
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    @staticmethod
    def _page_response(
        t: TeamState, nxt: CursorState, bodies: list[bytes], has_more: bool
    ) -> Response:
        cursor = t.cursors.encode(nxt).encode()
        body = b"".join(
            (
                b'{"events":[',
                b",".join(bodies),
                b'],"cursor":"',
                cursor,
                b'","has_more":',
                b"true" if has_more else b"false",
                b"}",
            )
        )
        return json_response(body)

    @staticmethod
    def reset_response(t: TeamState, state: CursorState) -> Response:
        """409 reset carrying the latest timestamp this cursor returned (a restart point)."""
        at = state.latest
        if at is None:
            at = state.query.start if state.query.start is not None else t.config.timeline[0]
        return route_error("reset", reset=format_ts(at))

    @staticmethod
    def decode_cursor(t: TeamState, body: bytes) -> CursorState | None:
        """The team's cursor in a continue body, or None if absent or invalid (for faults)."""
        try:
            arg = orjson.loads(body)
            return t.cursors.decode(arg["cursor"])
        except (orjson.JSONDecodeError, BadCursor, KeyError, TypeError):
            return None

    # Arguments ----------------------------------------------------------------------------

    @staticmethod
    def _json_object(body: bytes) -> dict[str, Any]:
        try:
            arg = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _BadArg("request body: could not decode input as JSON") from exc
        if not isinstance(arg, dict):
            raise _BadArg(f"request body: expected object, got {type(arg).__name__}")
        return arg

    @staticmethod
    def _tag(value: Any, field: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, dict) and set(value) == {".tag"}:
            value = value[".tag"]
        if not isinstance(value, str) or not _TAG.match(value):
            raise _BadArg(f"request body: {field}: expected a union tag, got {value!r}")
        return value

    def _query(self, arg: dict[str, Any]) -> Query:
        known = {"limit", "account_id", "time", "category", "event_type"}
        extra = set(arg) - known
        if extra:
            raise _BadArg(f"request body: unknown field '{sorted(extra)[0]}'")
        limit = arg.get("limit", 1000)
        if limit is None:
            limit = 1000
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise _BadArg(f"request body: limit: expected integer, got {limit!r}")
        if not 1 <= limit <= 1000:
            raise _BadArg(f"request body: limit: {limit} is not within [1, 1000]")
        account_id = arg.get("account_id")
        if account_id is not None and (not isinstance(account_id, str) or len(account_id) != 40):
            raise _BadArg(f"request body: account_id: '{account_id}' must be 40 characters long")
        start = end = None
        time_arg = arg.get("time")
        if time_arg is not None:
            if not isinstance(time_arg, dict) or set(time_arg) - {"start_time", "end_time"}:
                raise _BadArg("request body: time: expected object with start_time, end_time")
            start = self._ts(time_arg.get("start_time"), "time.start_time")
            end = self._ts(time_arg.get("end_time"), "time.end_time")
        category = self._tag(arg.get("category"), "category")
        if category is not None and category not in EVENT_CATEGORIES:
            raise _BadArg(f"request body: category: unknown tag '{category}'")
        event_type = self._tag(arg.get("event_type"), "event_type")
        return Query(start, end, category, event_type, account_id, limit)

    @staticmethod
    def _ts(value: Any, field: str) -> int | None:
        if value is None:
            return None
        try:
            return parse_wire_ts(value)
        except ValueError as exc:
            raise _BadArg(
                f"request body: {field}: timestamp {value!r} does not match format "
                "'%Y-%m-%dT%H:%M:%SZ'"
            ) from exc
