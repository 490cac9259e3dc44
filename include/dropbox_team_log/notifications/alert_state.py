"""Which teams are failing and already alerted: one alert per team and kind of error, not one
per failed task of every run; a "recovered" message when the team succeeds again.

Each team's state is its own JSON Variable `<ALERT_STATE_VARIABLE>.<conn_id>` (every worker
sees it): `{"<kind>": {"since": ..., "by": ..., "dag_id": ..., "task": ..., "reason": ...}}`.
A kind is the failure's error class (`RefreshTokenRevokedError`, `ConnectionMissing`, ...).
One Variable per team, because a Variable has no compare-and-swap: with every team in one
Variable, a team's write landing between another team's read and write was erased after it had
been checked, and its alert was lost (teams fail at the same moment when one app is revoked).
A state kept in the one Variable `ALERT_STATE_VARIABLE` by an earlier version is still read for
a team that has no Variable of its own yet.

Within a team, a first alert (and a recovery) is claimed: write a token, wait
`ALERT_CLAIM_SETTLE_SECONDS`, read again, and only the task whose token survived sends. The
last writer always reads its own token, so one task sends; two send only when one's read and
write are further apart than the settle time (a stalled metadata DB) while the other claims in
between: the worst case is one extra message, never a lost one.
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

#: One team's state: kind -> the alert's entry, and RECOVERY -> a recovery's claim token.
TeamState = dict[str, Any]


class VariableState:
    """One team's state in its Airflow Variable, read and written through the task SDK."""

    def __init__(self, conn_id: str, prefix: str = ALERT_STATE_VARIABLE) -> None:
        self.conn_id = conn_id
        self.shared_key = prefix
        self.key = f"{prefix}.{conn_id}"

    def read(self) -> TeamState:
        from airflow.sdk import Variable

        raw = Variable.get(self.key, default=None)
        if raw is None:  # never written: the team's part of the earlier, shared Variable
            team = _json_object(Variable.get(self.shared_key, default=None), self.shared_key)
            raw_team = team.get(self.conn_id)
            return raw_team if isinstance(raw_team, dict) else {}
        return _json_object(raw, self.key)

    def write(self, state: TeamState) -> None:
        from airflow.sdk import Variable

        Variable.set(
            self.key,
            json.dumps(state, sort_keys=True),
            description="Dropbox team log: the team's failures already alerted (alert_state.py)",
        )


class AlertState:
    """The once-per-team-and-kind logic over a state store per team (`store_of(conn_id)`, with
    `read()` and `write(state)`)."""

    def __init__(
        self,
        store_of: Callable[[str], Any] = VariableState,
        settle: float = ALERT_CLAIM_SETTLE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store_of = store_of
        self.settle = settle
        self.sleep = sleep

    def failed(self, conn_id: str, kind: str, token: str, details: dict[str, Any]) -> bool:
        """A task of team `conn_id` failed with `kind`: True when this task sends the alert
        (the first of this failure), False when the team is already alerted for it."""
        store = self.store_of(conn_id)
        if store.read().get(kind):
            return False
        entry = {"since": _now(), "by": token, **details}

        def claim(team: TeamState) -> bool:
            if team.get(kind):
                return False
            team[kind] = entry
            return True

        if not _update(store, claim, lambda team: bool(team.get(kind))):
            return False
        self.sleep(self.settle)
        return (store.read().get(kind) or {}).get("by") == token

    def succeeded(self, conn_id: str, token: str) -> dict[str, Any] | None:
        """A task of team `conn_id` succeeded: the failures it recovers from (kind -> entry)
        when this task sends the "recovered" message, else None (nothing was alerted, or
        another task of the team claimed the message)."""
        store = self.store_of(conn_id)
        if not _kinds(store.read()):
            return None

        def claim(team: TeamState) -> bool:
            if not _kinds(team) or team.get(RECOVERY):
                return False
            team[RECOVERY] = token
            return True

        if not _update(store, claim, lambda team: RECOVERY in team):
            return None
        self.sleep(self.settle)
        team = store.read()
        if team.get(RECOVERY) != token:
            return None
        recovered = _kinds(team)
        _update(store, _clear, lambda team: not team)
        return recovered


def _update(
    store: Any, change: Callable[[TeamState], bool], landed: Callable[[TeamState], bool]
) -> bool:
    """Apply `change` to a fresh read and write it; read back and redo it if another write
    replaced ours. False when `change` found nothing to do."""
    for _ in range(WRITE_ATTEMPTS):
        team = store.read()
        if not change(team):
            return False
        store.write(team)
        if landed(store.read()):
            return True
    log.warning("alert state: another writer kept replacing the team's Variable; gave up")
    return True


def _clear(team: TeamState) -> bool:
    """Empty the team's state (written as `{}`: the shared Variable is not read again)."""
    if not team:
        return False
    team.clear()
    return True


def _json_object(raw: str | None, key: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("Variable %s is not JSON: treated as empty", key)
        return {}
    return value if isinstance(value, dict) else {}


def _kinds(team: TeamState | None) -> dict[str, Any]:
    return {k: v for k, v in (team or {}).items() if k != RECOVERY}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
