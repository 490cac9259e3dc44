"""`DropboxTeamHook`: an Airflow connection of type `dropbox_team` -> the Dropbox team log.

Modelled on the providers' hooks (HttpHook, SlackHook): class attributes name the connection
type, the SDK client is built once and cached, and `test_connection()` answers `(ok, message)` for
the UI's Test button and `airflow connections test`.

Connection contract (docs and the connect command rely on it exactly):
    login = app key, password = app secret (empty for PKCE apps),
    extra.refresh_token, extra.connected_at (ISO-8601 UTC), extra.team_id, extra.team_name,
    host = optional API base URL override (http:// only on loopback), with schema and port
    when the host is bare (`127.0.0.1`, `::1`).

No secret leaves with a message: the connection's secrets are registered with Airflow's masker
and with `client.redaction` (which also knows their encoded forms), and the test's answer is
scrubbed whatever went wrong.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import dropbox
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from dropbox_team_log.client import redaction
from dropbox_team_log.client.api import DropboxTeamClient, RetryPolicy, TeamApiClient
from dropbox_team_log.client.reader import GET_EVENTS, EventReader
from dropbox_team_log.client.transport import TokenWatch, base_url_of_connection, build_session
from dropbox_team_log.errors import ConnectionConfigError, DropboxTeamLogError
from dropbox_team_log.settings import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    DEFAULT_TIMEOUT_SECONDS,
    PAGE_LIMIT,
    REQUIRED_SCOPES,
)
from dropbox_team_log.timeutil import DAY, to_wire


@dataclass(frozen=True)
class DropboxTeamConnection:
    """The validated fields of a `dropbox_team` connection."""

    conn_id: str
    app_key: str
    app_secret: str | None
    refresh_token: str
    base_url: str | None
    connected_at: datetime | None
    team_id: str | None
    team_name: str | None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    backoff_base: float | None = None  # seconds; tune the retry backoff (tests, strict limits)

    def __repr__(self) -> str:  # never show the secrets, even in a debugger or a traceback
        return (
            f"DropboxTeamConnection(conn_id={self.conn_id!r}, app_key={self.app_key!r}, "
            f"base_url={self.base_url!r}, team_id={self.team_id!r})"
        )

    @classmethod
    def from_airflow(cls, conn: Any) -> DropboxTeamConnection:
        conn_id = conn.conn_id
        extra = conn.extra_dejson or {}
        fix = f"run `dropbox-team-log connect --conn-id {conn_id}` or edit the connection"
        if not conn.login:
            raise ConnectionConfigError(
                f"Connection '{conn_id}' has no login (the Dropbox app key): {fix}"
            )
        refresh_token = extra.get("refresh_token")
        if not refresh_token or not isinstance(refresh_token, str):
            raise ConnectionConfigError(
                f"Connection '{conn_id}' has no extra.refresh_token "
                f"(the team admin's OAuth grant): {fix}"
            )
        base_url = None
        if conn.host:
            try:
                base_url = base_url_of_connection(conn.host, scheme=conn.schema, port=conn.port)
            except ValueError as exc:
                raise ConnectionConfigError(f"Connection '{conn_id}' host: {exc}") from None
        timeout = _number(extra, "timeout", DEFAULT_TIMEOUT_SECONDS, conn_id, positive=True)
        backoff_base = _number(extra, "backoff_base", None, conn_id)
        return cls(
            conn_id=conn_id,
            app_key=conn.login,
            app_secret=conn.password or None,
            refresh_token=refresh_token,
            base_url=base_url,
            connected_at=parse_connected_at(extra.get("connected_at"), conn_id),
            team_id=extra.get("team_id"),
            team_name=extra.get("team_name"),
            timeout=timeout,
            backoff_base=backoff_base,
        )


def _number(
    extra: dict, key: str, default: float | None, conn_id: str, *, positive: bool = False
) -> float | None:
    value = extra.get(key, default)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not (number > 0 if positive else number >= 0):  # NaN too
        raise ConnectionConfigError(
            f"Connection '{conn_id}' extra.{key}={value!r} must be a "
            f"{'positive' if positive else 'non-negative'} number of seconds"
        )
    return number


def parse_connected_at(value: Any, conn_id: str) -> datetime | None:
    """ISO-8601 -> aware UTC datetime, second granularity; None when absent."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ConnectionConfigError(
            f"Connection '{conn_id}' extra.connected_at={value!r} is not an ISO-8601 time "
            "(e.g. 2026-11-28T09:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


class DropboxTeamHook(BaseHook):
    """Reads a Dropbox team's activity log with the saved refresh token."""

    conn_name_attr = "dropbox_team_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Dropbox Team"

    def __init__(
        self,
        *,
        dropbox_team_conn_id: str = default_conn_name,
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dropbox_team_conn_id = dropbox_team_conn_id
        self._retry_policy = retry_policy
        self._sleep = sleep

    @cached_property
    def settings(self) -> DropboxTeamConnection:
        settings = DropboxTeamConnection.from_airflow(
            self.get_connection(self.dropbox_team_conn_id)
        )
        for secret in (settings.app_secret, settings.refresh_token):
            if secret:
                mask_secret(secret)
        redaction.register(settings.app_secret, settings.refresh_token)
        redaction.register_basic(settings.app_key, settings.app_secret)
        return settings

    def get_conn(self) -> dropbox.DropboxTeam:
        return self._client

    @cached_property
    def _client(self) -> dropbox.DropboxTeam:
        s = self.settings
        return DropboxTeamClient(
            oauth2_refresh_token=s.refresh_token,
            app_key=s.app_key,
            app_secret=s.app_secret,
            scope=list(REQUIRED_SCOPES),
            session=build_session(s.base_url, token_watch=self._tokens),
            timeout=s.timeout,
            # Retries are ours (client.api.RetryPolicy): bounded, Retry-After honoured.
            max_retries_on_error=0,
            max_retries_on_rate_limit=0,
            user_agent="dropbox-team-log",
        )

    @cached_property
    def _tokens(self) -> TokenWatch:
        """Every token the client's session receives is masked in logs from that moment on."""
        return TokenWatch(on_token=_mask_once())

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        if self._retry_policy is not None:
            return self._retry_policy
        if self.settings.backoff_base is not None:
            return RetryPolicy(backoff_base=self.settings.backoff_base)
        return RetryPolicy()

    @cached_property
    def api(self) -> TeamApiClient:
        return TeamApiClient(
            self._client,
            conn_id=self.dropbox_team_conn_id,
            tokens=self._tokens,
            policy=self.retry_policy,
            sleep=self._sleep,
        )

    def get_team_info(self) -> dict:
        """`/2/team/get_info` as raw JSON (name, team_id, licensed users, ...)."""
        return self.api.call("team/get_info", None)

    def event_reader(self, *, page_limit: int = PAGE_LIMIT) -> EventReader:
        return EventReader(self.api, page_limit=page_limit)

    def test_connection(self) -> tuple[bool, str]:
        """Team info plus one events call: both scopes proven, or a precise reason.

        Never raises: the UI's Test button, `airflow connections test` and `connect` show the
        answer, so an unexpected error is an answer too, scrubbed of secrets like every other.
        """
        probe = DropboxTeamHook(
            dropbox_team_conn_id=self.dropbox_team_conn_id,
            retry_policy=RetryPolicy(max_attempts=2, max_rate_limited=1, backoff_base=0.5),
            sleep=self._sleep,
        )
        try:
            info = probe.get_team_info()
            now = int(time.time())
            probe.api.call(
                GET_EVENTS,
                {"limit": 1, "time": {"start_time": to_wire(now - DAY), "end_time": to_wire(now)}},
            )
        except DropboxTeamLogError as exc:
            return False, self._failure_text(exc)
        except Exception as exc:  # an answer for the Test button, never a traceback with a body
            return False, self._failure_text(
                f"Unexpected {type(exc).__name__} while testing connection "
                f"'{self.dropbox_team_conn_id}': {exc}"
            )
        licensed = info.get("num_licensed_users")
        return True, redaction.scrub(
            f"Connected to Dropbox team '{info.get('name')}' ({info.get('team_id')}): "
            f"{licensed} licensed users; team_info.read and events.read work"
        )

    def _failure_text(self, failure: object) -> str:
        """A failed test's message, scrubbed. Airflow's UI tests a connection under a random
        throwaway id (`get_random_string()`, set as an env connection for the test): a fix
        naming that id would be wrong, so the message names `<connection id>` instead."""
        text = redaction.scrub(failure)
        conn_id = self.dropbox_team_conn_id
        if _is_throwaway_test_id(conn_id):
            text = text.replace(conn_id, "<connection id>")
        return text


def _is_throwaway_test_id(conn_id: str) -> bool:
    """Whether `conn_id` looks like the id Airflow's test route makes up: eight letters and
    digits, mixed case, present only as an environment connection."""
    return (
        re.fullmatch(_THROWAWAY_ID, conn_id) is not None
        and conn_id != conn_id.lower()
        and f"AIRFLOW_CONN_{conn_id.upper()}" in os.environ
    )


_THROWAWAY_ID = r"[A-Za-z0-9]{8}"


def _mask_once() -> Callable[[str], None]:
    """Register each new access token with Airflow's secret masker, once."""
    seen: set[str] = set()

    def mask(token: str) -> None:
        if token not in seen:
            seen.add(token)
            mask_secret(token)

    return mask
