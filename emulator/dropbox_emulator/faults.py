"""Deterministic fault injection: which call gets which failure.

A fault is `{kind, route, team, after, count, every, ...}`. Each fault counts the calls it
matches (route pattern, team if it names one, and a call the kind can apply to); it skips the
first `after`, then injects on every matching call (or every `every`-th one) until it has
injected `count` times. A fault naming a team matches only calls of that team (its tokens,
codes or consent page). Dropbox rate-limits per team, so when several teams are served a fault
naming none counts each team's calls on their own (`after`, `count`, `every` per team): one
team's calls never use up another's. `matched` and `injected` are then totals, `by_team` the
counts per team.
Everything is counter-based, so a given sequence of calls always fails the same way.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

CONTINUE_ROUTE = "2/team_log/get_events/continue"

DEEP_NESTING = 100_000  # far past any JSON decoder's recursion limit
# How `corrupt_event` damages the first event of a page (what Dropbox should never send).
CORRUPTIONS: dict[str, str] = {
    "invalid_utf8": "a string holding the byte 0xff",
    "lone_surrogate": 'a string holding the escape "\\ud800" (half a UTF-16 pair)',
    "deep_nesting": f"a value nested {DEEP_NESTING} arrays deep",
    "not_an_object": "the number 42 before the first event",
    "timestamp": "its timestamp replaced by `timestamp`",
    "duplicate_timestamp": "a second `timestamp` key, the one given, right after its own",
}
DEFAULT_CORRUPT_TIMESTAMP = "1970-01-01T00:00:00Z"

# kind -> short description (also the list of valid kinds)
KINDS: dict[str, str] = {
    "rate_limit": "429 with Retry-After and Dropbox's too_many_requests JSON body",
    "server_error": "500 (or `status`: 502/503/504) with a text body",
    "drop_connection": "close the socket without any response",
    "drop_mid_body": "send status, headers and part of the body, then close",
    "truncated_body": "200 whose JSON body is cut short (Content-Length matches the cut)",
    "non_json": "200 application/json whose body is an HTML page",
    "slow": "sleep `seconds` before answering normally (stacks with other faults)",
    "latency": "answer `seconds` after the request arrived, however long the answer took to "
    "build (a `slow` sleep included): a fixed response time, as a remote API has (stacks "
    "with other faults)",
    "expire_access_token": "401 expired_access_token (API routes)",
    "cursor_reset": "409 reset with the cursor's latest timestamp (get_events/continue)",
    "bad_cursor": "409 bad_cursor (get_events/continue)",
    "revoke_refresh_token": "revoke the refresh token behind this call, then answer normally "
    "(API routes -> 401 invalid_access_token, refresh -> invalid_grant)",
    "corrupt_event": "a team_log page whose first event is damaged as `corruption` says "
    f"({', '.join(sorted(CORRUPTIONS))}); `timestamp` for the timestamp kinds",
}
# Kinds that replace the response before the route runs / that mangle the real response.
PRE_KINDS = frozenset(
    {
        "rate_limit",
        "server_error",
        "drop_connection",
        "non_json",
        "expire_access_token",
        "cursor_reset",
        "bad_cursor",
    }
)
POST_KINDS = frozenset({"truncated_body", "drop_mid_body", "corrupt_event"})


@dataclass
class CallInfo:
    """What fault matching needs to know about a call."""

    route: str  # e.g. "2/team_log/get_events", "oauth2/token"
    is_refresh: bool = False  # oauth2/token with grant_type=refresh_token
    team: str | None = None  # the team id of the call's token or code, if it has one


@dataclass
class Fault:
    kind: str
    route: str = "*"
    team: str | None = None  # None: calls of any team
    after: int = 0
    count: int | None = 1  # None: unlimited
    every: int | None = None
    status: int | None = None  # server_error
    retry_after: int = 1  # rate_limit (seconds)
    seconds: float = 1.0  # slow, latency
    fraction: float = 0.5  # truncated_body / drop_mid_body: share of the body sent
    corruption: str = "invalid_utf8"  # corrupt_event: one of CORRUPTIONS
    timestamp: str = DEFAULT_CORRUPT_TIMESTAMP  # corrupt_event: timestamp, duplicate_timestamp
    matched: int = 0
    injected: int = 0
    # Per-team counters ([matched, injected]) when the book counts teams apart.
    by_team: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Validate one fault spec (raises ValueError with a readable message)."""
        if not isinstance(data, dict):
            raise ValueError("a fault must be a JSON object")
        known = {
            "kind",
            "route",
            "team",
            "after",
            "count",
            "every",
            "status",
            "retry_after",
            "seconds",
            "fraction",
            "corruption",
            "timestamp",
        }
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown fault field(s): {sorted(extra)}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; valid: {sorted(KINDS)}")
        route = str(data.get("route", "*")).lstrip("/") or "*"
        every = data.get("every")
        # With `every` and no explicit count, inject on every k-th call indefinitely.
        count = data.get("count", None if every is not None else 1)
        team = data.get("team")
        if team is not None and (not isinstance(team, str) or not team):
            raise ValueError("a fault's team must be a team id (or absent: every team)")
        fault = cls(
            kind=kind,
            route=route,
            team=team,
            after=int(data.get("after", 0)),
            count=None if count is None else int(count),
            every=None if every is None else int(every),
        )
        if fault.after < 0 or (fault.count is not None and fault.count < 0):
            raise ValueError("after and count must be >= 0")
        if fault.every is not None and fault.every < 1:
            raise ValueError("every must be >= 1")
        if "status" in data:
            fault.status = int(data["status"])
            if not 500 <= fault.status <= 599:
                raise ValueError("server_error status must be 5xx")
        if "retry_after" in data:
            fault.retry_after = max(0, int(data["retry_after"]))
        if "seconds" in data:
            fault.seconds = max(0.0, float(data["seconds"]))
        if "fraction" in data:
            fault.fraction = min(max(float(data["fraction"]), 0.0), 0.99)
        if "corruption" in data:
            fault.corruption = str(data["corruption"])
            if fault.corruption not in CORRUPTIONS:
                raise ValueError(
                    f"unknown corruption {fault.corruption!r}; valid: {sorted(CORRUPTIONS)}"
                )
        if "timestamp" in data:
            fault.timestamp = str(data["timestamp"])
            if not _WIRE_TIMESTAMP.fullmatch(fault.timestamp):
                raise ValueError("timestamp must look like 2026-01-01T00:00:00Z")
        return fault

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def applies_to(self, call: CallInfo) -> bool:
        if self.team is not None and call.team != self.team:
            return False
        if not fnmatch.fnmatchcase(call.route, self.route):
            return False
        if self.kind in ("cursor_reset", "bad_cursor"):
            return call.route == CONTINUE_ROUTE
        if self.kind == "expire_access_token":
            return call.route.startswith("2/")
        if self.kind == "revoke_refresh_token":
            return call.route.startswith("2/") or call.is_refresh
        if self.kind == "corrupt_event":
            return call.route.startswith("2/team_log/get_events")
        return True

    def fires(self, team: str | None = None) -> bool:
        """Count one matching call (of `team`, when teams count apart); True if this one gets
        the fault, which the caller then counts with `inject`."""
        self.matched += 1
        if team is None:
            matched, injected = self.matched, self.injected
        else:
            counts = self.by_team.setdefault(team, [0, 0])
            counts[0] += 1
            matched, injected = counts
        m = matched - self.after
        if m <= 0 or (self.count is not None and injected >= self.count):
            return False
        return not (self.every is not None and m % self.every != 0)

    def inject(self, team: str | None = None) -> None:
        self.injected += 1
        if team is not None:
            self.by_team[team][1] += 1

    def skip(self, team: str | None = None) -> None:
        """Count a matching call another fault took: it still counts for this one."""
        self.matched += 1
        if team is not None:
            self.by_team.setdefault(team, [0, 0])[0] += 1


_WIRE_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_FIRST_EVENT = re.compile(rb'"events"\s*:\s*\[\s*')
_TIMESTAMP_VALUE = re.compile(rb'"timestamp"\s*:\s*"[^"]*"')


def corrupt_page(body: bytes, fault: Fault) -> bytes:
    """A page body with its first event damaged as `fault.corruption` says.

    A page without events is sent as it is, except for `not_an_object`, which adds one.
    """
    start = _FIRST_EVENT.search(body)
    if start is None:
        return body
    at = start.end()
    if fault.corruption == "not_an_object":
        return body[:at] + (b"42," if body[at : at + 1] == b"{" else b"42") + body[at:]
    if body[at : at + 1] != b"{":
        return body
    head, event = body[:at], body[at:]
    given = b'"timestamp":"' + fault.timestamp.encode() + b'"'
    if fault.corruption == "timestamp":
        return head + _TIMESTAMP_VALUE.sub(given, event, count=1)
    if fault.corruption == "duplicate_timestamp":
        return head + _TIMESTAMP_VALUE.sub(lambda own: own.group() + b"," + given, event, count=1)
    inserted = {
        "invalid_utf8": b'"corrupt":"\xff",',
        "lone_surrogate": b'"corrupt":"\\ud800",',
        "deep_nesting": b'"corrupt":' + b"[" * DEEP_NESTING + b"]" * DEEP_NESTING + b",",
    }[fault.corruption]
    return head + b"{" + inserted + event[1:]


@dataclass
class Decision:
    slow_seconds: float = 0.0
    latency_seconds: float = 0.0  # the earliest the answer may leave, from the request's arrival
    fault: Fault | None = None


class FaultBook:
    """The active faults and how often each kind was injected.

    `per_team`: count each team's calls apart (several teams are served).
    """

    def __init__(self, per_team: bool = False) -> None:
        self.per_team = per_team
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.injected_by_kind: Counter[str] = Counter()

    def replace(self, specs: list[Any], team: str | None = None) -> list[Fault]:
        """Replace every fault, or (`team`) only the faults naming that team."""
        faults = [Fault.from_json(s) for s in specs]
        with self._lock:
            if team is None:
                self._faults = faults
            else:
                kept = [f for f in self._faults if f.team != team]
                self._faults = kept + faults
        return faults

    def add(self, specs: list[Any]) -> list[Fault]:
        faults = [Fault.from_json(s) for s in specs]
        with self._lock:
            self._faults.extend(faults)
        return faults

    def clear(self, team: str | None = None) -> None:
        """Clear every fault, or (`team`) only the faults naming that team."""
        with self._lock:
            self._faults = [] if team is None else [f for f in self._faults if f.team != team]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def decide(self, call: CallInfo) -> Decision:
        """Slow and latency faults stack; of the others, the first that fires wins."""
        out = Decision()
        key = (call.team or "") if self.per_team else None
        with self._lock:
            for fault in self._faults:
                if not fault.applies_to(call):
                    continue
                if fault.kind in ("slow", "latency"):
                    if fault.fires(key):
                        fault.inject(key)
                        if fault.kind == "slow":
                            out.slow_seconds += fault.seconds
                        else:
                            out.latency_seconds += fault.seconds
                        self.injected_by_kind[fault.kind] += 1
                    continue
                if out.fault is None and fault.fires(key):
                    fault.inject(key)
                    out.fault = fault
                    self.injected_by_kind[fault.kind] += 1
                elif out.fault is not None:
                    fault.skip(key)  # the call still counts for later faults
        return out
