"""The failure alert of both DAGs: a task that fails for good says so, with the reason.

Always an ERROR log line (any log shipping can alert on it); and, when the Airflow connection
`dropbox_team_log_alerts` exists, a JSON POST to the URL in its `host` (a Slack incoming webhook,
Teams, PagerDuty Events, any HTTP endpoint: the body has a Slack-style `text` plus fields).
Callbacks run after the task has failed: the alert never raises, a broken webhook only logs.
Only the stdlib and `settings` at module level: DAG files import this at parse time.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from dropbox_team_log.settings import ALERT_CONN_ID

log = logging.getLogger(__name__)

#: The reason is the exception text; keep a chat message readable.
MAX_REASON = 1000


def alert_message(context: dict[str, Any]) -> dict[str, Any]:
    """What the alert says: DAG, task (and mapped day), run, try, and the reason."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    run_id = context.get("run_id") or getattr(ti, "run_id", "?")
    exc = context.get("exception")
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception recorded"
    reason = reason[:MAX_REASON]
    task = task_id if map_index in (None, -1) else f"{task_id}[{map_index}]"
    text = f"Dropbox team log: {dag_id}.{task} failed in run {run_id}: {reason}"
    return {
        "text": text,
        "dag_id": dag_id,
        "task_id": task_id,
        "map_index": map_index,
        "run_id": run_id,
        "try_number": getattr(ti, "try_number", None),
        "reason": reason,
    }


def webhook_url(conn_id: str = ALERT_CONN_ID) -> str | None:
    """The alert URL from the connection, or None when no such connection is configured."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    host = (conn.host or "").strip()
    if not host:
        return None
    if "://" in host:
        return host
    scheme = conn.schema or "https"
    port = f":{conn.port}" if conn.port else ""
    endpoint = str(conn.extra_dejson.get("endpoint", "")).lstrip("/")
    return f"{scheme}://{host}{port}/{endpoint}"


def post(url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
    import requests

    resp = requests.post(
        url,
        data=json.dumps(payload),
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )
    resp.raise_for_status()


def on_failure(context: dict[str, Any]) -> None:
    """`on_failure_callback` of every task: log line always, webhook when configured."""
    message = alert_message(context)
    log.error("ALERT %s", message["text"])
    try:
        url = webhook_url()
        if url:
            post(url, message)
            log.info("alert sent through connection '%s'", ALERT_CONN_ID)
    except Exception as exc:  # the task already failed; a broken alert target must not hide it
        # The URL may embed a token (Slack): name the connection, never the URL.
        log.warning("alert through connection '%s' failed: %s", ALERT_CONN_ID, type(exc).__name__)
