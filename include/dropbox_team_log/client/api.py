"""One JSON call to the Dropbox team API, with the retry policy the job needs.

The SDK retries 5xx with its own unbounded-ish backoff, retries 429 forever by default, and does
not retry dropped connections or timeouts at all. We switch its retries off and keep one bounded
policy here (honouring Retry-After in any form, bounded), while the SDK still does auth, token
refresh and the wire format. Every failure leaves as one of `errors.py`'s exceptions, with no
secret in its text: whatever a server answered is scrubbed (`redaction`) before it is quoted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import dropbox
import orjson
import requests
from dropbox.dropbox_client import RouteErrorResult
from dropbox.exceptions import (
    AuthError,
    BadInputError,
    HttpError,
    InternalServerError,
    RateLimitError,
)

from dropbox_team_log import settings
from dropbox_team_log.client.redaction import scrub
from dropbox_team_log.client.retry_after import rate_limit_error, wait_seconds
from dropbox_team_log.client.transport import TokenWatch
from dropbox_team_log.errors import (
    AccessDeniedError,
    AppCredentialsError,
    DropboxUnreachableError,
    MissingScopeError,
    PermanentError,
    RefreshTokenRevokedError,
    RouteError,
    TransientApiError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one call: no retry storm, whatever the server does."""

    max_attempts: int = 6  # transient faults (5xx, dropped connection, timeout, bad body)
    max_rate_limited: int = 10  # 429 answers honoured per call
    backoff_base: float = 1.0  # seconds; doubles per attempt, full jitter
    backoff_cap: float = 60.0
    max_retry_after: float = settings.RETRY_AFTER_MAX_SECONDS  # a larger one is clipped
    default_retry_after: float = settings.RETRY_AFTER_DEFAULT_SECONDS  # none, or nonsense

    def rate_limit_wait(self, retry_after: object) -> float:
        """The wait a 429 asks for (seconds, a decimal or an HTTP-date), bounded."""
        return wait_seconds(retry_after, default=self.default_retry_after, cap=self.max_retry_after)

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


@dataclass
class CallStats:
    """What the calls cost: for the task log and for tests that bound API usage.

    One client serves a day's slice threads, so counting takes a lock."""

    calls: int = 0
    retries: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_call(self) -> None:
        with self._lock:
            self.calls += 1

    def count_retry(self, kind: str) -> None:
        with self._lock:
            self.retries[kind] += 1


class DropboxTeamClient(dropbox.DropboxTeam):
    """The SDK's team client, except that a 429 never crashes on its Retry-After.

    The SDK parses the header with `int()` and the body's `retry_after` strictly, so a decimal,
    an HTTP-date or a negative value raised instead of waiting; `retry_after.rate_limit_error`
    reads every form (its token refresh goes through here too).
    """

    def raise_dropbox_error_for_resp(self, res: requests.Response) -> None:
        if res.status_code == 429:
            raise rate_limit_error(res)
        super().raise_dropbox_error_for_resp(res)


class TokenRefreshError(PermanentError):
    """The token endpoint refused a refresh for another reason than the grant or the app."""


class RouteResponseError(Exception):
    """A 409 route error, decoded; callers that can recover (reset, bad_cursor) catch it."""

    def __init__(self, route: str, error: dict, summary: str) -> None:
        self.route = route
        self.error = error
        self.tag = scrub(error.get(".tag", "unknown") if isinstance(error, dict) else error)
        self.summary = scrub(summary)
        super().__init__(f"{route}: {self.tag}")

    def as_route_error(self) -> RouteError:
        return RouteError(self.route, self.tag, self.summary)


class RateLimitGate:
    """A 429 pauses every thread that shares the gate until its Retry-After has passed.

    Rate-limited calls count against the team's limit, so the other threads of a day's sync must
    back off too instead of each discovering the limit with a call of its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0  # time.monotonic() value

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def wait(self, sleep: Callable[[float], None]) -> float:
        """Sleep until the gate opens; return how long that was."""
        with self._lock:
            delay = self._not_before - time.monotonic()
        if delay > 0:
            sleep(delay)
            return delay
        return 0.0


class TeamApiClient:
    """Calls RPC routes of one team, raw JSON in and out; safe to share between threads.

    `client` is the SDK client, built on a session that `tokens` watches (see
    `transport.TokenWatch`): how many access tokens were issued tells a thread whose token was
    refused whether another thread has refreshed it meanwhile.
    """

    def __init__(
        self,
        client: dropbox.DropboxTeam,
        *,
        conn_id: str,
        tokens: TokenWatch,
        scopes: Sequence[str] = settings.REQUIRED_SCOPES,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.conn_id = conn_id
        self.scopes = tuple(scopes)
        self.policy = policy or RetryPolicy()
        self.stats = CallStats()
        self._tokens = tokens
        self._sleep = sleep
        #: A 429 pauses every thread that calls through this client.
        self.rate_gate = RateLimitGate()
        #: One refresh at a time: the threads share the SDK client and its token, so one thread
        #: refreshes and the others find the new token (rather than each refreshing its own).
        self._refresh_lock = threading.Lock()

    def call(
        self, route: str, arg: dict | None, *, decode: Callable[[str], T] | None = None
    ) -> T | dict:
        """POST one route; return the decoded result or raise a classified error.

        `decode` turns the 200 body (the SDK hands it over as a str) into the result; by
        default a JSON object becomes a dict. When it raises ValueError (orjson's and msgspec's
        decode errors are ValueErrors), the body is not the JSON promised (truncated, HTML, ...):
        that is retried like a dropped connection. Any other exception it raises leaves as is
        (a valid page of the wrong shape is a permanent error, not a reason to ask again).
        """
        body = "null" if arg is None else orjson.dumps(arg).decode()
        attempt = 0
        rate_limited = 0
        while True:
            self.rate_gate.wait(self._sleep)
            self.stats.count_call()
            try:
                generation = self._refresh_if_needed()
                result = self.client.request_json_string_with_retry(
                    "api", route, "rpc", body, "team", None
                )
                if isinstance(result, RouteErrorResult):
                    raise _decode_route_error(route, result.obj_result)
                return _decode_body(route, result.obj_result, decode)
            except RateLimitError as exc:
                rate_limited += 1
                self.stats.count_retry("rate_limit")
                if rate_limited > self.policy.max_rate_limited:
                    raise TransientApiError(
                        f"Dropbox kept rate-limiting {route} ({rate_limited} times in a row); "
                        "the run stops rather than hammer the team's limit: retry later or lower "
                        "the dropbox_api pool's slots"
                    ) from None
                wait = self.policy.rate_limit_wait(exc.backoff)
                log.warning("Dropbox rate limit on %s: waiting %.1f s (Retry-After)", route, wait)
                self.rate_gate.hold(wait)  # every thread of this sync waits, not just this one
                self._sleep(wait)  # this one the full Retry-After
            except (
                InternalServerError,
                _BadBody,
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
                AssertionError,
            ) as exc:
                attempt += 1
                kind = _transient_kind(exc)
                self.stats.count_retry(kind)
                if attempt >= self.policy.max_attempts:
                    raise _exhausted(route, kind, attempt, exc) from None
                wait = self.policy.backoff(attempt)
                log.warning(
                    "Dropbox %s on %s (attempt %d/%d): retrying in %.1f s",
                    kind,
                    route,
                    attempt,
                    self.policy.max_attempts,
                    wait,
                )
                self._sleep(wait)
            except AuthError as exc:
                error = exc.error
                if error is None or not error.is_expired_access_token():
                    raise self._auth_error(exc) from None
                # The SDK refreshed once and the new token was refused as expired too (a clock
                # skew, or another thread's refresh racing this call): refresh again, bounded.
                attempt += 1
                self.stats.count_retry("expired_access_token")
                if attempt >= self.policy.max_attempts:
                    raise self._auth_error(exc) from None
                log.warning("Dropbox access token expired on %s: refreshing again", route)
                self._refresh_refused(generation)
            except BadInputError as exc:
                if "invalid_client" in (exc.message or ""):
                    raise AppCredentialsError(self.conn_id) from None
                raise RouteError(route, "bad_input", _first_line(exc.message)) from None
            except HttpError as exc:
                raise RouteError(route, f"http_{exc.status_code}", _first_line(exc.body)) from None

    def _refresh_if_needed(self) -> int:
        """Refresh a missing or expiring access token; returns the token generation the call
        will send (the number of access tokens issued so far)."""
        with self._refresh_lock:
            self._refresh(force=False)
            return self._tokens.issued

    def _refresh_refused(self, generation: int) -> None:
        """Refresh after the token of `generation` was refused as expired, unless another
        thread already has (a newer token was issued since)."""
        with self._refresh_lock:
            if self._tokens.issued == generation:
                self._refresh(force=True)

    def _refresh(self, *, force: bool) -> None:
        try:
            if force:
                self.client.refresh_access_token(scope=list(self.scopes))
            else:
                self.client.check_and_refresh_access_token()
        except AuthError:
            # The SDK turns the token endpoint's `invalid_grant` into AuthError.
            raise RefreshTokenRevokedError(self.conn_id) from None
        except BadInputError as exc:
            if "invalid_client" in (exc.message or "") or "unauthorized_client" in (
                exc.message or ""
            ):
                raise AppCredentialsError(self.conn_id) from None
            if "invalid_scope" in (exc.message or ""):
                # The refresh asks for the job's scopes; the grant lacks one of them.
                raise MissingScopeError(self.conn_id, self._ungranted_scope()) from None
            raise TokenRefreshError(
                f"Dropbox's token endpoint refused to refresh the access token of connection "
                f"'{self.conn_id}' (HTTP 400: {_first_line(exc.message) or 'no reason given'}): "
                "check the connection's login (app key), password (app secret) and host; if it "
                f"persists, reconnect with `dropbox-team-log connect --conn-id {self.conn_id}`"
            ) from None

    def _ungranted_scope(self) -> str:
        """Which requested scope the grant lacks: refresh with each alone (failure path only)."""
        for scope in self.scopes:
            try:
                self.client.refresh_access_token(scope=[scope])
            except BadInputError:
                return scope
            except Exception:  # unreachable or else: name them all rather than guess
                break
        return " ".join(self.scopes) or "unknown"

    def _auth_error(self, exc: AuthError) -> Exception:
        error = exc.error
        if error is not None and error.is_missing_scope():
            return MissingScopeError(self.conn_id, error.get_missing_scope().required_scope)
        if error is not None and error.is_invalid_access_token():
            # After a successful refresh, a rejected token means the grant itself is gone.
            return RefreshTokenRevokedError(self.conn_id)
        tag = getattr(error, "_tag", "unknown")
        return AccessDeniedError(
            f"Dropbox denied access for connection '{self.conn_id}' ({tag}): check that the app "
            "is team-scoped and the connecting admin is a team admin, then reconnect"
        )


class _BadBody(Exception):
    """A 200 whose body is not the JSON object promised (truncated, HTML, ...)."""


def _decode_body(route: str, text: str, decode: Callable[[str], T] | None) -> T | dict:
    if decode is not None:
        try:
            return decode(text)
        except ValueError as exc:
            raise _BadBody(
                f"{route}: body is not the JSON promised ({len(text)} chars, {type(exc).__name__})"
            ) from None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _BadBody(f"{route}: body is not JSON ({len(text)} chars)") from None
    if not isinstance(value, dict):
        raise _BadBody(f"{route}: body is JSON but not an object")
    return value


def _decode_route_error(route: str, text: str) -> Exception:
    try:
        value = orjson.loads(text)
        return RouteResponseError(route, value["error"], str(value.get("error_summary", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _BadBody(f"{route}: 409 body is not a Dropbox route error")


def _transient_kind(exc: BaseException) -> str:
    if isinstance(exc, InternalServerError):
        return f"http_{exc.status_code}"
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection_error"
    return "malformed_response"


def _exhausted(route: str, kind: str, attempts: int, exc: BaseException) -> Exception:
    if kind in ("connection_error", "timeout"):
        return DropboxUnreachableError(
            f"Dropbox API unreachable for {route} after {attempts} attempts ({kind}: "
            f"{type(exc).__name__}): check the network path to the API host and the "
            "connection's host field"
        )
    return TransientApiError(
        f"Dropbox {route} failed {attempts} times in a row ({kind}); nothing was written for this "
        "range: the task retries later"
    )


def _first_line(text: str | None) -> str:
    """The first line of a server's text, secrets scrubbed (before it is cut: no half secret)."""
    text = scrub(text or "").strip()
    return text.splitlines()[0][:300] if text else ""
