"""The failure alert of both DAGs: a task that fails for good says so, with the reason.

Always an ERROR log line (any log shipping can alert on it); and, when the Airflow connection
`dropbox_team_log_alerts` exists, a JSON POST to the URL in its `host` (a Slack incoming webhook,
Teams, PagerDuty Events, any HTTP endpoint: the body has a Slack-style `text` plus fields).
Callbacks run after the task has failed: the alert never raises, a broken webhook only logs.
Only the stdlib, `settings`, `errors` and `display` at module level: DAG files import this at
parse time.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dropbox_team_log.display import escape_markup, visible
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.settings import (
    ALERT_CONN_ID,
    ALERT_FINDINGS_LISTED,
    ALERT_STATE_VARIABLE,
)

log = logging.getLogger(__name__)

#: The reason is the exception text; keep a chat message readable.
MAX_REASON = 1000


def alert_message(context: dict[str, Any]) -> dict[str, Any]:
    """What the alert says: DAG, task (and its mapped team and day), run, try, and the reason."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    run_id = context.get("run_id") or getattr(ti, "run_id", "?")
    exc = context.get("exception")
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception recorded"
    from dropbox_team_log.client.redaction import scrub  # a server's echo of a secret stays out

    reason = scrub(reason)[:MAX_REASON]
    label = getattr(ti, "rendered_map_index", None)  # "<conn_id> <day>": names the team
    if map_index in (None, -1):
        task = task_id
    else:
        task = f"{task_id}[{visible(label) if label else map_index}]"
    text = f"Dropbox team log: {dag_id}.{task} failed in run {run_id}: {reason}"
    return {
        "text": text,
        "dag_id": dag_id,
        "task_id": task_id,
        "map_index": map_index,
        "label": label,
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


def team_of(context: dict[str, Any]) -> str | None:
    """The connection id of the team a task works for: the one its failure names, else the
    first word of a mapped task's label ("<conn_id> <day>", "<conn_id>"); None: no team."""
    conn_id = getattr(context.get("exception"), "conn_id", None)
    if conn_id:
        return str(conn_id)
    ti = context.get("ti") or context.get("task_instance")
    label = getattr(ti, "rendered_map_index", None)
    if getattr(ti, "map_index", -1) in (None, -1) or not label:
        return None
    return str(label).split(" ")[0] or None


def failure_kind(context: dict[str, Any]) -> str | None:
    """What kind of failure: the error class the task's failure carries (`kind`), else the
    class of the exception; None when none was recorded."""
    exc = context.get("exception")
    if exc is None:
        return None
    return str(getattr(exc, "kind", None) or type(exc).__name__)


def _token(context: dict[str, Any]) -> str:
    """This task try, as the claim token of the alert state."""
    ti = context.get("ti") or context.get("task_instance")
    parts = ("dag_id", "run_id", "task_id", "map_index", "try_number")
    return "/".join(str(getattr(ti, p, "?")) for p in parts)


def on_failure(context: dict[str, Any]) -> None:
    """`on_failure_callback` of every task: log line always, webhook when configured.

    A team's failure alerts once per kind of error (alert_state.py): its later failures of
    that kind log a REPEAT warning and send nothing until the team succeeds again."""
    message = alert_message(context)
    conn_id, kind = team_of(context), failure_kind(context)
    if conn_id and kind:
        message.update(team=conn_id, kind=kind, status="failing")
        if not _first_failure(context, conn_id, kind, message):
            log.warning(
                "REPEAT (team '%s' already alerted for %s; quiet until it succeeds) %s",
                visible(conn_id),
                kind,
                visible(message["text"]),
            )
            return
        message["text"] += (
            f" (alerted once: no more alerts about {kind} for team '{visible(conn_id)}' until "
            "it succeeds again)"
        )
    log.error("ALERT %s", visible(message["text"]))  # the reason may quote an event string
    send(message)


def _first_failure(context: dict[str, Any], conn_id: str, kind: str, message: dict) -> bool:
    """Whether this failure is the one to alert (state unreadable: alert, to be safe)."""
    from dropbox_team_log.notifications.alert_state import AlertState

    details = {k: message[k] for k in ("dag_id", "task_id", "label", "run_id")}
    try:
        return AlertState().failed(conn_id, kind, _token(context), details)
    except Exception as exc:
        log.warning(
            "alert state %s unusable (%s): alerting", ALERT_STATE_VARIABLE, type(exc).__name__
        )
        return True


def on_success(context: dict[str, Any]) -> None:
    """`on_success_callback` of the team tasks: a team that was alerted as failing gets one
    "recovered" message (log line, webhook) and its alert state is cleared."""
    conn_id = team_of(context)
    if not conn_id:
        return
    from dropbox_team_log.notifications.alert_state import AlertState

    try:
        recovered = AlertState().succeeded(conn_id, _token(context))
    except Exception as exc:
        log.warning("alert state %s unusable (%s)", ALERT_STATE_VARIABLE, type(exc).__name__)
        return
    if not recovered:
        return
    done = alert_message(context)
    kinds = sorted(recovered)
    since = min(str(e.get("since", "?")) for e in recovered.values())
    task = done["text"].split(" failed in run ")[0].removeprefix("Dropbox team log: ")
    text = (
        f"Dropbox team log: team '{visible(conn_id)}' recovered: {task} succeeded in run "
        f"{done['run_id']} (failing since {since}: {', '.join(kinds)})"
    )
    log.warning("RECOVERED %s", visible(text))
    send(
        {
            **{k: done[k] for k in ("dag_id", "task_id", "label", "run_id")},
            "text": text,
            "team": conn_id,
            "kinds": kinds,
            "since": since,
            "status": "recovered",
        }
    )


def send(message: dict[str, Any]) -> None:
    """POST `message` to the alert connection when there is one; never raises."""
    try:
        url = webhook_url()
        if url:
            post(url, message)
            log.info("alert sent through connection '%s'", ALERT_CONN_ID)
    except Exception as exc:  # the task already failed; a broken alert target must not hide it
        # The URL may embed a token (Slack): name the connection, never the URL.
        log.warning("alert through connection '%s' failed: %s", ALERT_CONN_ID, type(exc).__name__)


# --- findings of the detections DAG ------------------------------------------------------------


class AlertDeliveryError(DropboxTeamLogError):
    """The alert connection's endpoint did not take the findings (they stay pending)."""


def _plain(value: Any) -> str:
    """An event string as a chat line shows it: literally, one line, no chat markup."""
    return escape_markup(visible(value))  # Slack's markup (`<!channel>`), escaped as it asks


def finding_line(finding: dict[str, Any]) -> str:
    """One finding in one line: severity, detection, who, what, how many, when."""
    return (
        f"[{_plain(finding['severity'])}] {_plain(finding['detection'])}: "
        f"{_plain(finding.get('actor') or '-')} -> {_plain(finding.get('asset') or '-')} "
        f"({finding.get('events')} events, {_plain(finding.get('first_seen'))} .. "
        f"{_plain(finding.get('last_seen'))}, id {_plain(finding['finding_id'])})"
    )


def findings_message(findings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The alert for new findings: a Slack-style `text` listing the first ones, and every
    finding (evidence included) under `findings`."""
    severities = Counter(str(f["severity"]) for f in findings)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(severities.items()))
    lines = [f"Dropbox team log: {len(findings)} new finding(s) ({counts})"]
    lines += [finding_line(f) for f in findings[:ALERT_FINDINGS_LISTED]]
    if len(findings) > ALERT_FINDINGS_LISTED:
        lines.append(f"... and {len(findings) - ALERT_FINDINGS_LISTED} more (in `findings`)")
    return {
        "text": "\n".join(lines),
        "count": len(findings),
        "findings": [{key: _field(key, value) for key, value in f.items()} for f in findings],
    }


def _field(key: str, value: Any) -> Any:
    """A finding's field as JSON: times in ISO 8601, the evidence as the object it is."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if key == "evidence" and isinstance(value, str):
        return json.loads(value)
    return value


def send_findings(findings: Sequence[dict[str, Any]], conn_id: str = ALERT_CONN_ID) -> bool:
    """A WARNING log line per finding always; one POST when the alert connection exists.

    Returns whether a POST was sent. A POST that fails raises AlertDeliveryError naming the
    connection (never its URL, which may hold a token), so the task fails and retries them.
    """
    for finding in findings:
        log.warning("FINDING %s", finding_line(finding))
    url = webhook_url(conn_id)
    if not url or not findings:
        return False
    try:
        post(url, findings_message(findings))
    except Exception as exc:
        raise AlertDeliveryError(
            f"sending {len(findings)} finding(s) through connection '{conn_id}' failed "
            f"({type(exc).__name__}): check the endpoint; they are sent again on the next run"
        ) from None
    log.info("%d finding(s) sent through connection '%s'", len(findings), conn_id)
    return True
