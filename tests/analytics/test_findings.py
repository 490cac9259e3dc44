"""Findings are raised once: when the pattern is complete, never again for the same evidence.

Days are synced for real from the emulator (tests/helpers/detection_data.py) at successive
times, the way the incremental DAG re-reads them; `run_detections` is what the detections DAG
runs; alerts go to a real HTTP endpoint on loopback. The last test runs both DAGs in Airflow.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from dropbox_team_log.analytics.detections import DetectionConfig
from dropbox_team_log.analytics.findings import FindingsStore, findings_table, run_detections
from dropbox_team_log.analytics.period import Period
from dropbox_team_log.dataset.versions import day_file_versions
from dropbox_team_log.notifications import alerts
from dropbox_team_log.settings import ALERT_STATE_VARIABLE, TEAMS_VARIABLE
from tests.e2e.webhook import WebhookReceiver
from tests.helpers.connecting import delete_variable
from tests.helpers.detection_data import T0, epoch, sync, team_emulator
from tests.helpers.pipeline import run_dag

BURST_AT = T0.replace(hour=15, minute=0, second=0) - timedelta(days=1)
ALERTS_ENV = "AIRFLOW_CONN_DROPBOX_TEAM_LOG_ALERTS"
BACKGROUND_DAYS = 3  # of background activity before T0, synced with the burst's day


def mine(result, actor_email: str) -> list[dict]:
    return [f for f in result.new if f["actor"] == actor_email]


def test_late_event_raises_the_burst_on_arrival_and_a_reread_raises_nothing(tmp_path):
    from dropbox_emulator.scenarios import Scenarios

    root = str(tmp_path / "dataset")
    cfg = DetectionConfig()
    # no activity after T0 but the late event
    with team_emulator(BACKGROUND_DAYS, timeline_end=T0) as emu:
        s = Scenarios(emu.config)
        lou = s.member("Lou Late")
        burst = s.file_burst(epoch(BURST_AT), lou, "file_delete", cfg.mass_delete_files)
        emu.add_events(burst[:-1])  # visible now: one short of the threshold
        emu.add_events([burst[-1]], visible_at=T0 + timedelta(hours=2))  # two hours late

        sync(emu, root, T0 - timedelta(days=BACKGROUND_DAYS), T0)
        first = run_detections(root, cfg, now=T0)
        assert first.changed_days and not mine(first, lou.email)

        later = T0 + timedelta(hours=3)
        assert BURST_AT.date() in sync(emu, root, T0 - timedelta(days=BACKGROUND_DAYS), later)
        arrived = run_detections(root, cfg, now=later)
        assert BURST_AT.date().isoformat() in arrived.changed_days
        (raised,) = mine(arrived, lou.email)
        assert raised["detection"] == "detect_mass_delete" and raised["events"] == 50

        # The day is re-read once settled: its file is rewritten, the finding stays raised once.
        store = FindingsStore(root)
        files, ids = store.files(), sorted(store.ids())
        settled = T0 + timedelta(hours=30)
        before = day_file_versions(root)
        assert BURST_AT.date() in sync(emu, root, T0 - timedelta(days=BACKGROUND_DAYS), settled)
        assert (
            day_file_versions(root)[BURST_AT.date().isoformat()]
            != before[BURST_AT.date().isoformat()]
        )
        reread = run_detections(root, cfg, now=settled)
        assert BURST_AT.date().isoformat() in reread.changed_days
        assert reread.new == [] and reread.findings >= 1
        assert store.files() == files and sorted(store.ids()) == ids

        # Even with the evaluation state lost, every day evaluated again raises nothing twice.
        store.save_state({"day_files": {}, "notified": []})
        again = run_detections(root, cfg, now=settled)
        assert len(again.changed_days) == len(day_file_versions(root)) and again.new == []

        # Nothing written since: nothing evaluated.
        assert run_detections(root, cfg, now=settled).changed_days == []
    (stored,) = [r for r in store.read().to_pylist() if r["actor"] == lou.email]
    assert stored["finding_id"] == raised["finding_id"] and stored["raised_at"] == later
    assert pq.read_table(store.files()[0]).schema.field("evidence").type == "string"


def test_findings_reach_the_alert_connection_once(tmp_path, monkeypatch):
    root = str(tmp_path / "dataset")
    store = FindingsStore(root)
    finding = {
        "finding_id": "f" * 32,
        "detection": "detect_mass_delete",
        "severity": "high",
        "technique": "T1485",
        "team_id": "dbtid:test",
        "first_seen": T0,
        "last_seen": T0,
        "actor": "eve@example.com <!channel>\x1b[31m",
        "asset": "50 files",
        "events": 50,
        "evidence": json.dumps({"files": 50}),
    }
    assert len(store.add([finding], raised_at=T0)) == 1
    assert store.add([finding], raised_at=T0 + timedelta(hours=1)) == []  # same id: not again
    with WebhookReceiver(status=500) as down:
        monkeypatch.setenv(ALERTS_ENV, json.dumps({"conn_type": "http", "host": down.url}))
        ((name, pending),) = store.pending()
        with pytest.raises(alerts.AlertDeliveryError) as failed:
            alerts.send_findings(pending)
        assert "dropbox_team_log_alerts" in str(failed.value) and down.url not in str(failed.value)
    assert [n for n, _ in store.pending()] == [name], "an unsent finding stays pending"
    with WebhookReceiver() as receiver:
        monkeypatch.setenv(ALERTS_ENV, json.dumps({"conn_type": "http", "host": receiver.url}))
        for name, pending in store.pending():
            assert alerts.send_findings(pending)
            store.mark_notified(name)
        assert store.pending() == []
    (body,) = receiver.received
    assert body["count"] == 1 and body["findings"][0]["evidence"] == {"files": 50}
    assert "[high] detect_mass_delete" in body["text"]
    assert "<!channel>" not in body["text"] and "\x1b" not in body["text"]
    assert "&lt;!channel&gt;\\u001b[31m" in body["text"]


def test_report_table_lists_raised_findings(tmp_path):
    root = str(tmp_path / "dataset")
    store = FindingsStore(root)
    rows = [
        {
            "finding_id": f"{i:032x}",
            "detection": "detect_tfa_disabled",
            "severity": severity,
            "first_seen": T0 - timedelta(days=i),
            "last_seen": T0 - timedelta(days=i),
            "actor": f"user{i}@example.com",
            "asset": f"user{i}@example.com",
            "events": 1,
        }
        for i, severity in enumerate(["medium", "high", "medium"])
    ]
    store.add(rows, raised_at=T0)
    table = findings_table(root, Period(T0.date() - timedelta(days=1), T0.date()))
    assert table.name == "findings"
    assert [(r[0], r[4]) for r in table.rows] == [
        ("high", "user1@example.com"),
        ("medium", "user0@example.com"),
    ]


@pytest.fixture
def airflow_output(tmp_path, monkeypatch, airflow_db):
    root = tmp_path / "dataset"
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_DETECTIONS", '{"mass_delete_files": 20}')
    # No team alerted by an earlier test on this DB (a revoked run leaves the team "failing",
    # and this test's backfill would then send a recovery to the receiver it counts).
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):
        delete_variable(key)
    yield root
    for key in (TEAMS_VARIABLE, ALERT_STATE_VARIABLE):
        delete_variable(key)


def test_detections_dag_raises_writes_and_alerts_once(airflow_output, monkeypatch):
    from dropbox_emulator.scenarios import Scenarios

    with team_emulator(days=4) as emu, WebhookReceiver() as receiver:
        monkeypatch.setenv(ALERTS_ENV, json.dumps({"conn_type": "http", "host": receiver.url}))
        s = Scenarios(emu.config)
        rae = s.member("Rae Remover")
        emu.add_events(s.file_burst(epoch(BURST_AT), rae, "file_delete", 20))
        run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 1})  # the burst's day and today
        run_dag(emu, "dropbox_team_log_detections", T0 + timedelta(minutes=1))
        store = FindingsStore(str(airflow_output))
        (raised,) = [r for r in store.read().to_pylist() if r["actor"] == rae.email]
        assert raised["detection"] == "detect_mass_delete" and raised["events"] == 20
        assert len(receiver.received) == 1
        sent = receiver.received[0]["findings"]
        assert raised["finding_id"] in {f["finding_id"] for f in sent}
        assert store.pending() == []

        # The next run (nothing new written) raises nothing and sends nothing.
        run_dag(emu, "dropbox_team_log_detections", T0 + timedelta(minutes=2))
        assert len(receiver.received) == 1 and len(store.files()) == 1
