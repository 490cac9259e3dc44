"""The hook reads a 60-day range exactly, whatever the API throws at it.

Real HTTP against the emulator, the real SDK underneath; the result is compared with the
emulator's ground truth as a multiset (byte-identical duplicates are separate entries).
"""

from __future__ import annotations

import time
from datetime import timedelta

import dropbox.team_log
import orjson
import pytest
from pipeline_helpers import connection_json, multiset, utc

from dropbox_team_log.errors import RefreshTokenRevokedError
from dropbox_team_log.hook import DropboxTeamHook

T = utc(2026, 11, 20, 12, 0, 0)
START, END = T - timedelta(days=60), T

FAULTS = {
    "none": [],
    "rate_limit": [
        {"kind": "rate_limit", "route": "2/team_log/*", "every": 4, "count": 3, "retry_after": 1}
    ],
    "server_error": [{"kind": "server_error", "status": 503, "every": 5, "count": 4}],
    "drop_connection": [
        {"kind": "drop_connection", "route": "2/team_log/*", "every": 6, "count": 3}
    ],
    "drop_mid_body": [{"kind": "drop_mid_body", "route": "2/team_log/*", "every": 6, "count": 3}],
    "truncated_body": [{"kind": "truncated_body", "route": "2/team_log/*", "every": 6, "count": 3}],
    "non_json": [{"kind": "non_json", "route": "2/team_log/*", "every": 6, "count": 3}],
    "slow": [{"kind": "slow", "route": "2/team_log/*", "seconds": 3, "after": 2, "count": 1}],
    "expire_access_token": [{"kind": "expire_access_token", "every": 7, "count": 3}],
    "cursor_reset": [{"kind": "cursor_reset", "every": 3, "count": 4}],
    "bad_cursor": [{"kind": "bad_cursor", "after": 5, "count": 2}],
}


@pytest.fixture(scope="module")
def emu():
    from dropbox_team_log.emulator import running_emulator

    with running_emulator(
        seed=5,
        clock=T,
        events_per_day=60,
        page_size=30,
        empty_page_rate=0.1,
        duplicate_rate=0.03,
        late_rate=0.2,
        unknown_type_rate=0.02,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def truth(emu):
    return multiset(emu.truth(START, END, as_of=T))


@pytest.fixture
def hook(emu, monkeypatch, airflow_db):
    conn = connection_json(emu, connected_at=T, backoff_base=0.05)
    conn = conn.replace('"backoff_base": 0.05', '"backoff_base": 0.05, "timeout": 1')
    monkeypatch.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", conn)
    emu.clear_faults()
    emu.reset_stats()
    return DropboxTeamHook()


def _calls(emu) -> int:
    return sum(v for k, v in emu.stats()["calls"].items() if "team_log" in k)


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_sixty_days_read_exactly_under_each_fault(kind, emu, hook, truth):
    baseline = sum(truth.values()) // 30 + 200  # pages, generously: empty pages, restarts
    emu.set_faults(FAULTS[kind])
    started = time.monotonic()
    events = hook.event_reader(page_limit=1000).read_all(
        int(START.timestamp()), int(END.timestamp())
    )
    took = time.monotonic() - started
    got = multiset(orjson.dumps(e) for e in events)
    assert sum(got.values()) == sum(truth.values())
    assert got == truth
    injected = emu.stats()["faults_injected"]
    if kind != "none":
        assert injected.get(kind, 0) > 0, f"{kind} never fired"
    assert _calls(emu) <= baseline, "retry storm"
    if kind == "rate_limit":
        assert hook.api.stats.retries["rate_limit"] == 3
        assert took >= 3.0, "Retry-After was not honoured"


def test_unknown_event_types_keep_their_name(emu, hook):
    events = hook.event_reader().read_all(int(START.timestamp()), int(END.timestamp()))
    known = set(dropbox.team_log.EventType._tagmap)
    unknown = {e["event_type"][".tag"] for e in events} - known
    assert unknown, "the emulator served no event type unknown to the SDK"
    assert "other" not in unknown


def test_revoked_refresh_token_fails_fast_without_retries(emu, hook):
    emu.revoke_refresh_tokens()
    started = time.monotonic()
    with pytest.raises(RefreshTokenRevokedError, match="reconnect the team") as caught:
        hook.event_reader().read_all(int(START.timestamp()), int(END.timestamp()))
    assert time.monotonic() - started < 5
    assert emu.stats()["calls"].get("oauth2/token", 0) == 1
    assert "refresh_token" not in str(caught.value).replace("refresh token", "")


def test_a_rate_limit_holds_back_every_thread_of_the_sync(emu, hook):
    """The copies a day's sync gives its threads share one gate: after a 429, the others wait
    out its Retry-After instead of spending calls of their own against the team's limit."""
    import copy

    emu.set_faults(
        [{"kind": "rate_limit", "route": "2/team/get_info", "count": 1, "retry_after": 30}]
    )
    first, second = copy.copy(hook.api), copy.copy(hook.api)
    asked: dict[str, list[float]] = {"first": [], "second": []}
    first._sleep, second._sleep = asked["first"].append, asked["second"].append
    first.call("team/get_info", None)  # 429, then retried at once (its sleep only records)
    second.call("team/get_info", None)  # the gate is still closed for about 30 s
    assert asked["first"] and asked["first"][0] > 25
    assert asked["second"] and asked["second"][0] > 25
    assert emu.stats()["faults_injected"] == {"rate_limit": 1}
