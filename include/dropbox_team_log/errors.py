"""Errors every layer raises.

Each message says what to do next, and none carries a secret: the texts end up in task logs,
alerts and `airflow connections test` output.
"""

from __future__ import annotations


class DropboxTeamLogError(Exception):
    """Base class: anything this package raises on purpose."""


class PermanentError(DropboxTeamLogError):
    """Retrying cannot help; a person has to act (reconnect, fix a setting)."""


class ConnectionConfigError(PermanentError):
    """The Airflow connection is missing, half-filled or malformed."""


class RefreshTokenRevokedError(PermanentError):
    """Dropbox refused the saved refresh token (revoked, expired or never valid)."""

    def __init__(self, conn_id: str) -> None:
        super().__init__(
            f"Dropbox refresh token revoked or invalid for connection '{conn_id}': "
            f"an admin must reconnect the team with `dropbox-team-log connect --conn-id {conn_id}`"
        )


class AppCredentialsError(PermanentError):
    """Dropbox does not recognise the app key / app secret pair."""

    def __init__(self, conn_id: str) -> None:
        super().__init__(
            f"Dropbox rejected the app key/secret of connection '{conn_id}' (invalid_client): "
            "check the connection's login (app key) and password (app secret) against the "
            "App Console"
        )


class MissingScopeError(PermanentError):
    """The token lacks a scope the job needs."""

    def __init__(self, conn_id: str, scope: str) -> None:
        self.scope = scope
        super().__init__(
            f"The Dropbox token of connection '{conn_id}' lacks the scope '{scope}': enable it "
            "on the app's Permissions tab, then reconnect with "
            f"`dropbox-team-log connect --conn-id {conn_id}` (scopes apply to new tokens only)"
        )


class AccessDeniedError(PermanentError):
    """Dropbox answered 401 for another reason than an expired token or a missing scope."""


class DropboxUnreachableError(DropboxTeamLogError):
    """No HTTP answer from the API host after bounded retries."""


class TransientApiError(DropboxTeamLogError):
    """5xx, 429, dropped connections or malformed bodies outlasted the retry budget."""


class RouteError(DropboxTeamLogError):
    """Dropbox answered 409 with a route error we cannot recover from."""

    def __init__(self, route: str, tag: str, summary: str) -> None:
        self.route = route
        self.tag = tag
        super().__init__(f"Dropbox {route} failed: {tag} ({summary})")


class CursorRestartLimitError(DropboxTeamLogError):
    """The cursor kept resetting; the range was not read (nothing partial is returned)."""


class DamagedDayFileError(PermanentError):
    """A day file cannot be read back whole (truncated, footer broken, a page checksum wrong)
    and could not be moved aside: reading it again cannot help."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"day file {path} is damaged ({reason}): move it aside with "
            "`dropbox-team-log verify --quarantine` (it needs write access to the dataset); "
            "the next sync whose window covers that day fetches the day again"
        )


class CursorLostError(DropboxTeamLogError):
    """A polled cursor chain (the tail) ended: Dropbox answered `reset` or `bad_cursor`.

    Nothing of the interrupted poll is kept; the caller starts a new chain. `reset_at` is the
    restart timestamp a `reset` carries (epoch seconds), None for `bad_cursor` or an unreadable
    one.
    """

    def __init__(self, tag: str, reset_at: int | None) -> None:
        self.tag = tag
        self.reset_at = reset_at
        at = f" (restart point {reset_at})" if reset_at is not None else ""
        super().__init__(
            f"Dropbox ended the tail's cursor chain: {tag}{at}; nothing of this poll was kept: "
            "a new chain starts from the last hour the old one covered"
        )
