"""The failure alert: a log line always, a webhook POST when the alert connection exists.

The webhook is a real HTTP endpoint on loopback; the connection is read through Airflow
(AIRFLOW_CONN_* env), as the task runner does. The scheduler-run path (a revoked token failing a
mapped day, alert received) is covered end to end in tests/e2e.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from dropbox_team_log.errors import RefreshTokenRevokedError
from dropbox_team_log.notifications import alerts
from tests.e2e.webhook import WebhookReceiver

ENV = "AIRFLOW_CONN_DROPBOX_TEAM_LOG_ALERTS"


def failure_context(exc: BaseException, map_index: int = 3) -> dict:
    """What Airflow hands an on_failure_callback, reduced to the fields the alert reads."""
    ti = SimpleNamespace(
        dag_id="dropbox_team_log_backfill",
        task_id="sync_day",
        map_index=map_index,
        run_id="manual__2026-11-28T03:00:00+00:00",
        try_number=1,
    )
    return {"ti": ti, "run_id": ti.run_id, "exception": exc}


def revoked() -> RefreshTokenRevokedError:
    return RefreshTokenRevokedError("dropbox_team_default")


def test_message_names_dag_task_day_and_reason():
    message = alerts.alert_message(failure_context(revoked()))
    assert message["dag_id"] == "dropbox_team_log_backfill"
    assert message["task_id"] == "sync_day" and message["map_index"] == 3
    assert "refresh token revoked" in message["reason"]
    assert "dropbox-team-log connect --conn-id dropbox_team_default" in message["reason"]
    assert message["text"].startswith("Dropbox team log: dropbox_team_log_backfill.sync_day[3]")
    assert alerts.alert_message(failure_context(revoked(), map_index=-1))["text"].startswith(
        "Dropbox team log: dropbox_team_log_backfill.sync_day failed"
    )


def test_a_mapped_task_is_named_by_its_team_and_day():
    context = failure_context(RefreshTokenRevokedError("team_c"))
    context["ti"].rendered_map_index = "team_c 2026-11-27"
    message = alerts.alert_message(context)
    assert message["text"].startswith(
        "Dropbox team log: dropbox_team_log_backfill.sync_day[team_c 2026-11-27] failed"
    )
    assert message["label"] == "team_c 2026-11-27" and message["map_index"] == 3


def test_reason_is_bounded():
    message = alerts.alert_message(failure_context(RuntimeError("x" * 50_000)))
    assert len(message["reason"]) == alerts.MAX_REASON


def test_without_alert_connection_only_the_log_line(monkeypatch, caplog):
    monkeypatch.delenv(ENV, raising=False)
    with WebhookReceiver() as receiver, caplog.at_level(logging.INFO, logger=alerts.__name__):
        alerts.on_failure(failure_context(revoked()))
    assert receiver.received == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "ALERT Dropbox team log" in errors[0].getMessage()
    assert "refresh token revoked" in errors[0].getMessage()


def test_alert_connection_posts_the_alert(monkeypatch, caplog):
    with WebhookReceiver() as receiver, caplog.at_level(logging.INFO, logger=alerts.__name__):
        monkeypatch.setenv(ENV, json.dumps({"conn_type": "http", "host": receiver.url}))
        alerts.on_failure(failure_context(revoked()))
    (body,) = receiver.received
    assert body["dag_id"] == "dropbox_team_log_backfill" and body["task_id"] == "sync_day"
    assert "refresh token revoked" in body["text"]  # Slack incoming webhooks show `text`
    assert any("ALERT" in r.getMessage() for r in caplog.records)


def test_url_from_host_port_and_endpoint(monkeypatch):
    with WebhookReceiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        conn = {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": int(port),
            "schema": "http",
            "extra": {"endpoint": "/alerts"},
        }
        monkeypatch.setenv(ENV, json.dumps(conn))
        assert alerts.webhook_url() == receiver.url
        alerts.on_failure(failure_context(revoked()))
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [500, 404])
def test_broken_target_never_raises_and_never_logs_the_url(monkeypatch, caplog, status):
    with WebhookReceiver(status=status) as receiver, caplog.at_level(logging.INFO):
        url = receiver.url + "?token=hook-secret-123"  # Slack-style URLs carry a secret
        monkeypatch.setenv(ENV, json.dumps({"conn_type": "http", "host": url}))
        alerts.on_failure(failure_context(revoked()))  # must not raise
    assert len(receiver.received) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "alert through connection 'dropbox_team_log_alerts' failed" in logged
    assert "hook-secret-123" not in logged


def test_unreachable_target_never_raises(monkeypatch, caplog):
    from tests.e2e.stack import free_port  # a port nobody listens on

    monkeypatch.setenv(
        ENV, json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{free_port()}/"})
    )
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        alerts.on_failure(failure_context(revoked()))
    assert "failed" in caplog.text


def test_every_task_of_both_dags_alerts_on_failure(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from tests.helpers.pipeline import DAGS_FOLDER

    bag = DagBag(dag_folder=DAGS_FOLDER)
    for dag_id in ("dropbox_team_log_backfill", "dropbox_team_log_incremental"):
        dag = bag.dags[dag_id]
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert alerts.on_failure in callbacks, (dag_id, task.task_id)
            assert task.retries >= 1 and task.retry_exponential_backoff, (dag_id, task.task_id)


def test_alert_log_line_shows_control_characters_as_escapes(monkeypatch, caplog):
    """A failure's reason may quote an event string: the ERROR line must not steer a terminal."""
    monkeypatch.delenv(ENV, raising=False)
    with caplog.at_level(logging.ERROR, logger=alerts.__name__):
        alerts.on_failure(failure_context(RuntimeError("bad name '\x1b]0;pwned\x07\r\nforged'")))
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "\\u001b]0;pwned\\u0007\\u000d\\u000aforged" in line
    assert not [c for c in "\x1b\x07\r\n" if c in line]
