"""Which teams are failing and already alerted: one alert per team and kind of error, not one
per failed task of every run; a "recovered" message when the team succeeds again.

The state is the JSON Variable `ALERT_STATE_VARIABLE` (every worker sees it):
`{"<conn_id>": {"<kind>": {"since": ..., "by": ..., "dag_id": ..., "task": ..., "reason": ...}}}`.
A kind is the failure's error class (`RefreshTokenRevokedError`, `ConnectionMissing`, ...).

Variables have no compare-and-swap, so a first alert (and a recovery) is claimed: write a token,
wait `ALERT_CLAIM_SETTLE_SECONDS`, read again, and only the task whose token survived sends.
Two tasks both send only when one's read and write are further apart than the settle time (a
stalled metadata DB) while the other claims in between: the worst case is one extra message.
Each write merges into a fresh read and checks it landed (rewriting it if another team's write
replaced it), so teams failing at the same moment do not erase each other's entries.
Only stdlib and `settings` at module level; Airflow's Variable is imported when first used.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dropbox_team_log.settings import ALERT_CLAIM_SETTLE_SECONDS, ALERT_STATE_VARIABLE

log = logging.getLogger(__name__)

#: The key of a team's recovery claim (kinds are class names: never this).
RECOVERY = "~recovered_by"
WRITE_ATTEMPTS = 3

State = dict[str, dict[str, Any]]


class VariableState:
    """The state in the Airflow Variable, read and written through the task SDK."""

    def __init__(self, key: str = ALERT_STATE_VARIABLE) -> None:
        self.key = key

    def read(self) -> State:
        from airflow.sdk import Variable

        raw = Variable.get(self.key, default=None)
        if not raw:
            return {}
        try:
            state = json.loads(raw)
        except ValueError:
            log.warning("Variable %s is not JSON: treated as empty", self.key)
            return {}
        return state if isinstance(state, dict) else {}

    def write(self, state: State) -> None:
        from airflow.sdk import Variable

        Variable.set(
            self.key,
            json.dumps(state, sort_keys=True),
            description="Dropbox team log: teams failing and already alerted (alert_state.py)",
        )


class AlertState:
    """The once-per-team-and-kind logic over a state store (`read()`, `write(state)`)."""

    def __init__(
        self,
        store: Any = None,
        settle: float = ALERT_CLAIM_SETTLE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store or VariableState()
        self.settle = settle
        self.sleep = sleep

    def failed(self, conn_id: str, kind: str, token: str, details: dict[str, Any]) -> bool:
        """A task of team `conn_id` failed with `kind`: True when this task sends the alert
        (the first of this failure), False when the team is already alerted for it."""
        if self.store.read().get(conn_id, {}).get(kind):
            return False
        entry = {"since": _now(), "by": token, **details}

        def claim(state: State) -> bool:
            team = state.setdefault(conn_id, {})
            if team.get(kind):
                return False
            team[kind] = entry
            return True

        if not self._update(claim, lambda s: _holds(s, conn_id, kind)):
            return False
        self.sleep(self.settle)
        return _holds(self.store.read(), conn_id, kind, token)

    def succeeded(self, conn_id: str, token: str) -> dict[str, Any] | None:
        """A task of team `conn_id` succeeded: the failures it recovers from (kind -> entry)
        when this task sends the "recovered" message, else None (nothing was alerted, or
        another task of the team claimed the message)."""
        kinds = _kinds(self.store.read().get(conn_id))
        if not kinds:
            return None

        def claim(state: State) -> bool:
            team = state.get(conn_id)
            if not _kinds(team) or team.get(RECOVERY):  # type: ignore[union-attr]
                return False
            team[RECOVERY] = token  # type: ignore[index]
            return True

        if not self._update(claim, lambda s: RECOVERY in s.get(conn_id, {})):
            return None
        self.sleep(self.settle)
        state = self.store.read()
        if state.get(conn_id, {}).get(RECOVERY) != token:
            return None
        recovered = _kinds(state.get(conn_id))
        self._update(lambda s: s.pop(conn_id, None) is not None, lambda s: conn_id not in s)
        return recovered

    def _update(self, change: Callable[[State], bool], landed: Callable[[State], bool]) -> bool:
        """Apply `change` to a fresh read and write it; read back and redo it if another
        write replaced ours. False when `change` found nothing to do."""
        for _ in range(WRITE_ATTEMPTS):
            state = self.store.read()
            if not change(state):
                return False
            self.store.write(state)
            if landed(self.store.read()):
                return True
        log.warning("alert state: another writer kept replacing the Variable; gave up")
        return True


def _kinds(team: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (team or {}).items() if k != RECOVERY}


def _holds(state: State, conn_id: str, kind: str, token: str | None = None) -> bool:
    entry = state.get(conn_id, {}).get(kind)
    return bool(entry) and (token is None or entry.get("by") == token)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
