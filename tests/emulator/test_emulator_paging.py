"""get_events / continue on the emulator through the SDK: paging matches the ground truth,
pages are unsorted, empty pages, snapshots, late events and polling, filters, route errors."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import dropbox
import orjson
import pytest
import requests
from dropbox import team_log
from dropbox.exceptions import ApiError, BadInputError
from dropbox.team_common import TimeRange

START = datetime(2026, 1, 1)  # naive UTC, as the SDK wants
END = datetime(2026, 3, 1)


def _naive(dt: datetime) -> datetime:
    return dt.replace(tzinfo=None)


def raw_pages(client: dropbox.DropboxTeam, arg: dict) -> list[str]:
    """Every page body of a query, as served (the SDK's auth, refresh, retries; no decoding)."""
    route, pages = "team_log/get_events", []
    while True:
        client.check_and_refresh_access_token()
        res = client.request_json_string_with_retry(
            "api", route, "rpc", json.dumps(arg), "team", None
        )
        pages.append(res.obj_result)
        page = orjson.loads(res.obj_result)
        if not page["has_more"]:
            return pages
        route, arg = "team_log/get_events/continue", {"cursor": page["cursor"]}


def all_events(client: dropbox.DropboxTeam, **kwargs) -> list:
    res = client.team_log_get_events(**kwargs)
    events = list(res.events)
    while res.has_more:
        res = client.team_log_get_events_continue(res.cursor)
        events.extend(res.events)
    return events


def raw_events(pages: list[str]) -> list[bytes]:
    return [orjson.dumps(e) for p in pages for e in orjson.loads(p)["events"]]


@pytest.fixture
def emulator_config(make_config):
    return make_config(duplicate_rate=0.01, empty_page_rate=0.1, page_size=200)


def test_sixty_days_typed_decoding_matches_truth(emulator, team_client):
    truth = emulator.truth(START, END)
    assert len(truth) > 5000
    assert len(truth) > len(set(truth)), "the config should produce genuine duplicates"
    res = team_client.team_log_get_events(time=TimeRange(start_time=START, end_time=END))
    events, pages, empty, cursors = list(res.events), 1, 0, {res.cursor}
    while res.has_more:
        res = team_client.team_log_get_events_continue(res.cursor)
        events.extend(res.events)
        pages += 1
        empty += not res.events
        cursors.add(res.cursor)
    assert len(events) == len(truth)  # duplicates counted, nothing lost, nothing extra
    assert all(START <= e.timestamp < END for e in events)
    assert empty > 0, "empty pages with has_more=true are part of the contract"
    assert len(cursors) == pages, "the cursor changes on every response"
    assert max(len(p) for p in [events]) and pages >= len(truth) // 200


def test_raw_pages_are_the_truth_bytes_and_unsorted(emulator, team_client):
    arg = {"time": {"start_time": "2026-02-01T00:00:00Z", "end_time": "2026-02-15T00:00:00Z"}}
    bodies = raw_pages(team_client, arg)
    pages = [orjson.loads(b) for b in bodies]
    truth = emulator.truth("2026-02-01T00:00:00Z", "2026-02-15T00:00:00Z")
    assert Counter(raw_events(bodies)) == Counter(truth)
    full = [p for p in pages if len(p["events"]) == 200]
    assert full and all(len(p["events"]) <= 200 for p in pages)
    unsorted = [
        p
        for p in full
        if [e["timestamp"] for e in p["events"]] != sorted(e["timestamp"] for e in p["events"])
    ]
    assert unsorted, "events within a page must not come sorted"
    # pages are consecutive chunks: each page's time span follows the previous one
    spans = [
        (min(e["timestamp"] for e in p["events"]), max(e["timestamp"] for e in p["events"]))
        for p in pages
        if p["events"]
    ]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_limit_caps_the_page(team_client):
    res = team_client.team_log_get_events(limit=37, time=TimeRange(START, END))
    sizes = {len(res.events)}
    for _ in range(5):
        res = team_client.team_log_get_events_continue(res.cursor)
        sizes.add(len(res.events))
    assert sizes <= {0, 37} and 37 in sizes


def test_snapshot_ignores_events_that_appear_while_paging(emulator, team_client):
    before = emulator.truth(START, END)
    res = team_client.team_log_get_events(limit=100, time=TimeRange(START, END))
    n = len(res.events)
    emulator.advance(86400)  # late events for the range become visible meanwhile
    assert len(emulator.truth(START, END)) > len(before)
    while res.has_more:
        res = team_client.team_log_get_events_continue(res.cursor)
        n += len(res.events)
    assert n == len(before)


def test_polling_without_end_time_returns_late_events(emulator, team_client):
    start = datetime(2026, 2, 20)
    res = team_client.team_log_get_events(time=TimeRange(start_time=start))
    first = list(res.events)
    while res.has_more:
        res = team_client.team_log_get_events_continue(res.cursor)
        first.extend(res.events)
    old = emulator.truth(start, "2026-04-01T00:00:00Z")
    assert len(first) == len(old)
    emulator.advance(6 * 3600)
    new = emulator.truth(start, "2026-04-01T00:00:00Z")
    assert len(new) > len(old)
    res = team_client.team_log_get_events_continue(res.cursor)
    polled = list(res.events)
    while res.has_more:
        res = team_client.team_log_get_events_continue(res.cursor)
        polled.extend(res.events)
    assert len(polled) == len(new) - len(old)
    # nothing new yet: an empty answer, and the cursor keeps working
    res = team_client.team_log_get_events_continue(res.cursor)
    assert not res.events and not res.has_more


def test_bounded_cursor_stays_exhausted(team_client):
    res = team_client.team_log_get_events(time=TimeRange(datetime(2026, 2, 27), END))
    while res.has_more:
        res = team_client.team_log_get_events_continue(res.cursor)
    again = team_client.team_log_get_events_continue(res.cursor)
    assert not again.events and not again.has_more


def test_category_event_type_and_account_filters(emulator, team_client):
    span = TimeRange(START, END)
    logins = all_events(team_client, category=team_log.EventCategory.logins, time=span)
    assert logins and all(e.event_category.is_logins() for e in logins)
    fails = all_events(team_client, event_type=team_log.EventTypeArg.login_fail, time=span)
    assert fails and all(e.event_type.is_login_fail() for e in fails)
    assert len(fails) < len(logins)
    member = emulator.state.team.members[5]
    mine = all_events(team_client, account_id=member.account_id, time=span)
    assert mine and all(member.account_id in repr(e) for e in mine)
    assert len(mine) == sum(member.account_id.encode() in b for b in emulator.truth(START, END))


@pytest.mark.parametrize(
    ("kwargs", "check"),
    [
        (
            {
                "category": team_log.EventCategory.logins,
                "event_type": team_log.EventTypeArg.login_fail,
            },
            "is_invalid_filters",
        ),
        ({"time": TimeRange(END, START)}, "is_invalid_time_range"),
        ({"account_id": "dbid:AA" + "x" * 33}, "is_account_id_not_found"),
    ],
)
def test_route_errors(team_client, kwargs, check):
    with pytest.raises(ApiError) as err:
        team_client.team_log_get_events(**kwargs)
    assert getattr(err.value.error, check)()


def test_bad_cursor(team_client):
    res = team_client.team_log_get_events(limit=10)
    with pytest.raises(ApiError) as err:
        team_client.team_log_get_events_continue(res.cursor[:-4] + "AAAA")
    assert err.value.error.is_bad_cursor()


def test_old_cursor_resets_to_latest_returned_timestamp(emulator, team_client):
    res = team_client.team_log_get_events(limit=50, time=TimeRange(START, END))
    seen = list(res.events)
    res = team_client.team_log_get_events_continue(res.cursor)
    seen.extend(res.events)
    emulator.advance(emulator.config.cursor_ttl + 1)
    with pytest.raises(ApiError) as err:
        team_client.team_log_get_events_continue(res.cursor)
    assert err.value.error.is_reset()
    assert err.value.error.get_reset() == max(e.timestamp for e in seen)


def test_bad_arguments_are_400_text(emulator, team_client):
    team_client.check_and_refresh_access_token()
    with pytest.raises(BadInputError) as err:  # the SDK would refuse limit=0 before sending
        team_client.request_json_string_with_retry(
            "api", "team_log/get_events", "rpc", '{"limit": 0}', "team", None
        )
    assert err.value.message.startswith('Error in call to API function "team_log/get_events"')
    url = f"{emulator.base_url}/2/team_log/get_events"
    s = requests.Session()
    s.trust_env = False
    auth = {"Authorization": f"Bearer {team_client._oauth2_access_token}"}
    for body, ctype in [
        (b"{not json", "application/json"),
        (b'{"limit": 5}', "text/plain"),
        (b'{"time": {"start_time": "2026-01-01"}}', "application/json"),
        (b'{"bogus": 1}', "application/json"),
    ]:
        resp = s.post(url, data=body, headers={**auth, "Content-Type": ctype}, timeout=10)
        assert resp.status_code == 400
        assert resp.text.startswith("Error in call to API function")
        assert resp.headers["X-Dropbox-Request-Id"]
    resp = s.post(url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400 and "Authorization" in resp.text
    resp = s.post(
        url,
        data=b"{}",
        timeout=10,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sl.bogus.token"},
    )
    assert resp.status_code == 401
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {
        "error_summary": "invalid_access_token/..",
        "error": {".tag": "invalid_access_token"},
    }


def test_custom_events_are_served_verbatim(emulator, team_client):
    odd = (
        '{"timestamp":"2026-02-10T10:00:00Z","event_category":{".tag":"sharing"},'
        '"event_type":{".tag":"brand_new_thing","description":"(sharing) New"},'
        '"details":{".tag":"brand_new_thing_details","n":12345678901234567890},'
        '"involve_non_team_member":false,"future_field":[1,{"a":null}]}'
    )
    day = ("2026-02-10T00:00:00Z", "2026-02-11T00:00:00Z")
    before = emulator.truth(*day)
    res = team_client.team_log_get_events(
        time=TimeRange(datetime(2026, 2, 10), datetime(2026, 2, 11)), limit=5
    )
    emulator.add_events([{"raw": odd}, {"raw": odd}])
    assert Counter(emulator.truth(*day)) == Counter([*before, odd.encode(), odd.encode()])
    n = len(res.events)  # a cursor opened before the add keeps its snapshot
    while res.has_more:
        res = team_client.team_log_get_events_continue(res.cursor)
        n += len(res.events)
    assert n == len(before)
    arg = {"time": {"start_time": day[0], "end_time": day[1]}}
    served = "".join(raw_pages(team_client, arg))
    assert served.count(odd) == 2  # byte for byte, big int and unknown fields included


def test_event_visible_later_than_its_timestamp(emulator, team_client, make_config):
    ts = _naive(datetime(2026, 2, 28, 23, 0, tzinfo=UTC))
    emulator.add_events(
        [
            {
                "event": {
                    "timestamp": "2026-02-28T23:00:00Z",
                    "event_category": {".tag": "logins"},
                    "event_type": {".tag": "login_success", "description": "(logins) Signed in"},
                    "details": {
                        ".tag": "login_success_details",
                        "login_method": {".tag": "password"},
                    },
                }
            }
        ],
        visible_at=datetime(2026, 3, 1, 18, 0, tzinfo=UTC),
    )
    rng = (ts, ts + timedelta(seconds=1))
    assert team_client.team_log_get_events(time=TimeRange(*rng)).events == []
    emulator.set_clock(datetime(2026, 3, 1, 18, 0, tzinfo=UTC))
    assert len(team_client.team_log_get_events(time=TimeRange(*rng)).events) == 1
