"""A polled cursor chain on the emulator (raw HTTP through the SDK): the chain start serves
every event with timestamp >= start visible now, and each poll exactly what became visible
since the previous answer, whatever its timestamp, across days, beyond max_delay, with custom
events visible in the future or added to old days, compared with the ground truth as multisets.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import dropbox
import orjson
import pytest

from tests.emulator.conftest import CLOCK

FAR = "2027-01-01T00:00:00Z"
START = CLOCK - timedelta(days=3)


@pytest.fixture
def emulator_config(make_config):
    return make_config(
        events_per_day=300.0,
        late_rate=0.3,
        duplicate_rate=0.03,
        empty_page_rate=0.1,
        page_size=40,
        max_delay=30 * 3600,
    )


def drain(client: dropbox.DropboxTeam, route: str, arg: dict) -> tuple[list[bytes], str]:
    """Every event of one answer chain, up to has_more=false, and the last cursor."""
    events: list[bytes] = []
    while True:
        client.check_and_refresh_access_token()
        res = client.request_json_string_with_retry(
            "api", route, "rpc", json.dumps(arg), "team", None
        )
        page = orjson.loads(res.obj_result)
        events.extend(orjson.dumps(e) for e in page["events"])
        if not page["has_more"]:
            return events, page["cursor"]
        route, arg = "team_log/get_events/continue", {"cursor": page["cursor"]}


def custom(ts: str) -> dict:
    return {
        "timestamp": ts,
        "event_category": {".tag": "logins"},
        "event_type": {".tag": "login_success", "description": "(logins) Signed in"},
        "details": {".tag": "login_success_details", "login_method": {".tag": "password"}},
    }


def test_each_poll_serves_exactly_what_became_visible_since_the_last(emulator, team_client):
    start = START.strftime("%Y-%m-%dT%H:%M:%SZ")
    first, cursor = drain(team_client, "team_log/get_events", {"time": {"start_time": start}})
    assert first and Counter(first) == Counter(emulator.truth(start, FAR))
    delivered = Counter(first)
    # a custom event in an old day (long settled by max_delay), visible only 2 days from now,
    # and one before the chain's start (never the chain's)
    emulator.add_events(
        [
            {"event": custom("2026-02-26T13:00:00Z"), "visible_at": "2026-03-03T12:00:00Z"},
            {"event": custom("2026-02-25T00:00:00Z")},
        ]
    )
    before = emulator.truth(start, FAR)
    late = 0
    for step in (0, 240, 3600, 5 * 3600, 26 * 3600, 86_400, 4 * 86_400):
        emulator.advance(step)
        polled, cursor = drain(team_client, "team_log/get_events/continue", {"cursor": cursor})
        now = emulator.truth(start, FAR)
        assert Counter(polled) == Counter(now) - Counter(before)  # duplicates counted
        late += sum(1 for e in polled if orjson.loads(e)["timestamp"] < emulator.now()[:11])
        delivered.update(polled)
        before = now
    assert delivered == Counter(emulator.truth(start, FAR))
    assert sum(delivered.values()) == len(before)  # each once
    assert late  # events of earlier days arrived through polls, not only the newest
    assert custom_seen(delivered, "2026-02-26T13:00:00Z") == 1
    assert custom_seen(delivered, "2026-02-25T00:00:00Z") == 0


def custom_seen(events: Counter, ts: str) -> int:
    return sum(
        n
        for e, n in events.items()
        if orjson.loads(e)["timestamp"] == ts and b"login_success" in e and b'"password"' in e
    )


def test_an_idle_poll_is_empty_and_the_chain_lives_on(emulator, team_client):
    start = START.strftime("%Y-%m-%dT%H:%M:%SZ")
    _, cursor = drain(team_client, "team_log/get_events", {"time": {"start_time": start}})
    polled, cursor = drain(team_client, "team_log/get_events/continue", {"cursor": cursor})
    assert polled == []
    emulator.advance(3600)
    polled, _ = drain(team_client, "team_log/get_events/continue", {"cursor": cursor})
    assert polled and Counter(polled) == Counter(emulator.truth(start, FAR)) - Counter(
        emulator.truth(start, FAR, as_of=CLOCK)
    )
