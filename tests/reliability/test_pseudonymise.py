"""Opt-in pseudonymisation: no email or IP address survives in any column, tokens are stable
across runs and key sources (joins keep working), the dataset is still exact (against the
emulator's truth pseudonymised with the same key), and a bad key fails before any API call."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow.dataset as ds
import pytest

from dropbox_team_log.transform.events import events_to_batch
from dropbox_team_log.transform.pseudonymise import (
    TOKEN_PREFIX,
    PseudonymiseKeyError,
    Pseudonymiser,
)
from tests.helpers.paths import SPEC_EVENTS
from tests.helpers.pipeline import dataset_raws, event_calls, multiset, run_dag
from tests.reliability.matrix import T0

KEY = "k3y-for-pseudonyms-7c1d0e9f2a"
SPEC = SPEC_EVENTS
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
KEY_VAR = "AIRFLOW_VAR_DROPBOX_TEAM_LOG_PSEUDONYMISE_KEY"
DAYS = 1  # the backfill: yesterday and today, two day tasks per run


def _identifiers(events: list[dict]) -> set[str]:
    """Every email and IP address string value in the events (what must disappear)."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, str):
            if EMAIL_RE.fullmatch(node):
                found.add(node)
            else:
                try:
                    ipaddress.ip_address(node)
                except ValueError:
                    return
                found.add(node)

    walk(events)
    return found


def _all_text(table) -> str:
    return "\n".join(
        str(v) for column in table.columns for v in column.to_pylist() if v is not None
    )


def test_every_email_and_ip_is_replaced_in_every_column_and_nothing_else_changes():
    events = [orjson.loads(line) for line in SPEC.read_bytes().splitlines()]
    events[0]["origin"] = {"geo_location": {"ip_address": "2001:DB8::1"}}
    secrets_ = _identifiers(events)
    assert len(secrets_) >= 5, "the fixture should hold emails and IPs"
    batch = events_to_batch(events, team_id="dbtid:x", ingested_at=datetime.now(UTC))
    out = Pseudonymiser(KEY)(batch)
    assert out.schema == batch.schema and out.num_rows == batch.num_rows
    text = _all_text(out)
    leaked = sorted(s for s in secrets_ if s in text)
    assert leaked == [], f"left in clear: {leaked[:5]}"
    emails = [v for v in out.column("actor_email").to_pylist() if v]
    assert emails and all(v.startswith(TOKEN_PREFIX) for v in emails)
    # Everything that is not an email or IP is untouched.
    for name in ("timestamp", "event_type", "actor_display_name", "country", "team_id"):
        assert out.column(name) == batch.column(name), name
    # raw_event holds the same event with only those values replaced.
    p = Pseudonymiser(KEY)
    for before, after in zip(
        batch.column("raw_event").to_pylist(), out.column("raw_event").to_pylist(), strict=True
    ):
        assert json.loads(p.json_text(before)) == json.loads(after)
    # Stable and idempotent; another key gives other tokens; case and IPv6 spelling normalised.
    assert Pseudonymiser(KEY)(batch).column("raw_event") == out.column("raw_event")
    assert p(out).column("raw_event") == out.column("raw_event")
    assert Pseudonymiser(KEY + "x")(batch).column("actor_email") != out.column("actor_email")
    assert p.value("A.B@Example.COM") == p.value("a.b@example.com")
    assert p.value("2001:0db8:0000::0001") == p.value("2001:db8::1")
    assert p.value("not an address") is None and p.value("1.5") is None
    assert KEY not in repr(p)


@pytest.mark.parametrize("key", ["", "short", " " * 40])
def test_short_keys_are_refused(key):
    with pytest.raises(PseudonymiseKeyError, match="at least 16 characters"):
        Pseudonymiser(key)


def _expected(emu, p: Pseudonymiser, lo, hi):
    return multiset(p.json_text(raw.decode()) for raw in emu.truth(lo, hi, as_of=T0))


def test_pseudonymised_backfill_is_exact_and_stable_across_runs_and_key_sources(
    emu, connected, tmp_path, monkeypatch
):
    lo = T0 - timedelta(days=DAYS)
    p = Pseudonymiser(KEY)
    first, second = tmp_path / "by_variable", tmp_path / "by_connection"
    monkeypatch.setenv(KEY_VAR, KEY)
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(first))
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": DAYS})
    # The key kept in a connection's password, the Variable pointing at it.
    monkeypatch.setenv(
        "AIRFLOW_CONN_PSEUDO_KEY", json.dumps({"conn_type": "generic", "password": KEY})
    )
    monkeypatch.setenv(KEY_VAR, "conn:pseudo_key")
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(second))
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": DAYS})
    want = _expected(emu, p, lo, T0)
    for root in (first, second):
        assert multiset(dataset_raws(str(root), lo, T0)) == want
    tables = [
        ds.dataset(str(r), format="parquet", partitioning="hive").to_table()
        for r in (first, second)
    ]
    assert (
        tables[0].column("actor_email").to_pylist() == tables[1].column("actor_email").to_pylist()
    )
    clear = _identifiers([json.loads(raw) for raw in emu.truth(lo, T0, as_of=T0)])
    text = _all_text(tables[0])
    assert clear and not [s for s in clear if s in text]


def test_bad_key_fails_the_run_before_any_api_call(emu, connected, output, monkeypatch, capfd):
    monkeypatch.setenv(KEY_VAR, "too-short")
    calls = event_calls(emu)
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 1}, expect="failed")
    seen = capfd.readouterr()
    assert "dropbox_team_log_pseudonymise_key" in seen.out + seen.err
    assert "at least 16 characters" in seen.out + seen.err
    assert event_calls(emu) == calls and not output.exists()
    monkeypatch.setenv(KEY_VAR, "conn:no_such_key_connection")
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 1}, expect="failed")
    assert event_calls(emu) == calls and not output.exists()
