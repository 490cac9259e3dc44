"""A task failure that names its team and its kind of error, for the alert state.

`AirflowFailException` (no retry) carrying the connection id and the error class the task hit
(`RefreshTokenRevokedError`, `ConnectionMissing`, ...): the failure callback alerts once per
team and kind (notifications/alert_state.py), and the task log keeps the same message.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

#: The kind of a failure whose connection does not exist (no exception class of ours).
CONNECTION_MISSING = "ConnectionMissing"


class TeamFailure(AirflowFailException):
    """Team `conn_id` cannot be synced until someone acts; `kind` is why."""

    def __init__(self, message: str, *, conn_id: str, kind: str) -> None:
        super().__init__(message)
        self.conn_id = conn_id
        self.kind = kind

    @classmethod
    def of(cls, exc: BaseException, conn_id: str) -> TeamFailure:
        """`exc` as team `conn_id`'s failure: its message, its kind (kept if it has one)."""
        if isinstance(exc, TeamFailure):
            return exc
        return cls(str(exc), conn_id=conn_id, kind=getattr(exc, "kind", None) or type(exc).__name__)
