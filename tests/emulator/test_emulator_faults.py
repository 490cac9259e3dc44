"""Every fault kind observably happens, deterministically, where and when it was asked for."""

from __future__ import annotations

import time
from datetime import datetime

import orjson
import pytest
import requests
from dropbox.exceptions import ApiError, AuthError, InternalServerError, RateLimitError
from dropbox.team_common import TimeRange

GET = "2/team_log/get_events"
CONTINUE = "2/team_log/get_events/continue"
SPAN = TimeRange(datetime(2026, 2, 1), datetime(2026, 2, 20))


@pytest.fixture
def raw(emulator, team_client):
    """POST a JSON body to an API route with a valid bearer token, no SDK in between."""
    team_client.check_and_refresh_access_token()
    s = requests.Session()
    s.trust_env = False

    def post(route: str, body: bytes = b"{}") -> requests.Response:
        return s.post(
            f"{emulator.base_url}/{route}",
            data=body,
            timeout=10,
            headers={
                "Authorization": f"Bearer {team_client._oauth2_access_token}",
                "Content-Type": "application/json",
            },
        )

    yield post
    s.close()


def test_rate_limit(emulator, team_client, raw):
    emulator.set_faults([{"kind": "rate_limit", "route": GET, "retry_after": 7, "count": 2}])
    with pytest.raises(RateLimitError) as err:
        team_client.team_log_get_events(limit=5)
    assert err.value.backoff == 7
    assert err.value.error.reason.is_too_many_requests()
    resp = raw(GET)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    assert resp.json() == {
        "error_summary": "too_many_requests/..",
        "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 7},
    }
    assert raw(GET).status_code == 200  # count exhausted
    assert emulator.stats()["faults_injected"] == {"rate_limit": 2}


@pytest.mark.parametrize("status", [500, 503])
def test_server_error(emulator, team_client, status):
    emulator.set_faults([{"kind": "server_error", "route": "2/team/*", "status": status}])
    with pytest.raises(InternalServerError) as err:
        team_client.team_get_info()
    assert err.value.status_code == status
    team_client.team_get_info()


def test_drop_connection(emulator, raw):
    emulator.set_faults([{"kind": "drop_connection", "route": GET}])
    with pytest.raises(requests.ConnectionError):
        raw(GET)
    assert raw(GET).status_code == 200
    assert emulator.stats()["responses"][f"{GET} dropped"] == 1


def test_drop_mid_body(emulator, raw):
    emulator.set_faults([{"kind": "drop_mid_body", "route": GET, "fraction": 0.3}])
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        raw(GET, b'{"limit": 100}')
    assert raw(GET).status_code == 200


def test_truncated_body(emulator, raw):
    emulator.set_faults([{"kind": "truncated_body", "route": GET}])
    resp = raw(GET, b'{"limit": 100}')
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        resp.json()
    assert resp.text.startswith('{"events":[')


def test_non_json(emulator, team_client, raw):
    emulator.set_faults([{"kind": "non_json", "route": "*", "count": 2}])
    resp = raw(GET)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.text.startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):  # what the SDK does with it: json decoding fails
        team_client.team_get_info()


def test_slow(emulator, raw):
    emulator.set_faults(
        [{"kind": "slow", "route": GET, "seconds": 0.4}, {"kind": "server_error", "route": GET}]
    )
    t0 = time.monotonic()
    resp = raw(GET)
    assert time.monotonic() - t0 >= 0.4
    assert resp.status_code == 500  # slow stacks with another fault


def test_latency_is_a_response_time_not_a_delay_on_top(emulator, raw):
    """`latency` answers `seconds` after arrival: the time to build the page is inside it, so
    a call takes about the latency (a `slow` fault adds its sleep to the build time)."""
    body = b'{"limit": 1000, "time": {"start_time": "2026-02-01T00:00:00Z"}}'
    emulator.set_faults([{"kind": "latency", "route": GET, "seconds": 0.4, "every": 1}])
    t0 = time.monotonic()
    resp = raw(GET, body)
    elapsed = time.monotonic() - t0
    assert resp.status_code == 200
    assert resp.json()["events"]
    assert elapsed >= 0.4
    emulator.set_faults(
        [{"kind": "latency", "route": GET, "seconds": 0.3}, {"kind": "server_error", "route": GET}]
    )
    t0 = time.monotonic()
    resp = raw(GET)
    assert time.monotonic() - t0 >= 0.3  # a faulted answer keeps the response time too
    assert resp.status_code == 500
    assert emulator.faults()["injected"]["latency"] == 2


def test_expire_access_token_makes_the_sdk_refresh(emulator, team_client):
    team_client.team_get_info()
    before = emulator.stats()["calls"]["oauth2/token"]
    emulator.set_faults([{"kind": "expire_access_token", "route": "2/*"}])
    team_client.team_get_info()  # 401 expired -> refresh -> retry
    stats = emulator.stats()
    assert stats["calls"]["oauth2/token"] == before + 1
    assert stats["faults_injected"] == {"expire_access_token": 1}


def test_cursor_reset_and_bad_cursor(emulator, team_client):
    emulator.set_faults(
        [
            {"kind": "cursor_reset", "route": "*", "after": 1},
            {"kind": "bad_cursor", "route": CONTINUE, "after": 3},
        ]
    )
    res = team_client.team_log_get_events(limit=40, time=SPAN)  # not a continue: no fault
    seen = list(res.events)
    res = team_client.team_log_get_events_continue(res.cursor)  # 1st continue: skipped
    seen.extend(res.events)
    with pytest.raises(ApiError) as err:  # 2nd continue: reset
        team_client.team_log_get_events_continue(res.cursor)
    assert err.value.error.is_reset()
    assert err.value.error.get_reset() == max(e.timestamp for e in seen)
    team_client.team_log_get_events_continue(res.cursor)  # 3rd: fine, cursor still valid
    with pytest.raises(ApiError) as err:  # 4th continue: bad_cursor
        team_client.team_log_get_events_continue(res.cursor)
    assert err.value.error.is_bad_cursor()


def test_revoke_refresh_token_on_refresh_and_on_api_call(emulator, session, link, team_client):
    import dropbox

    emulator.set_faults([{"kind": "revoke_refresh_token", "route": "oauth2/token"}])
    with pytest.raises(AuthError) as err:  # the refresh itself answers invalid_grant
        team_client.team_get_info()
    assert err.value.error.is_invalid_access_token()
    result = link()
    client = dropbox.DropboxTeam(
        oauth2_refresh_token=result.refresh_token,
        app_key=emulator.config.app_key,
        app_secret=emulator.config.app_secret,
        session=session,
        max_retries_on_error=0,
    )
    client.team_get_info()
    emulator.set_faults([{"kind": "revoke_refresh_token", "route": "2/team/get_info"}])
    with pytest.raises(AuthError) as err:  # unlinked mid-flight: access token dies too
        client.team_get_info()
    assert err.value.error.is_invalid_access_token()


def test_after_count_every_are_deterministic(emulator, raw):
    emulator.set_faults([{"kind": "server_error", "route": GET, "after": 2, "every": 3}])
    statuses = [raw(GET).status_code for _ in range(12)]
    # calls 1-2 skipped; then every 3rd matching call: 5, 8, 11
    assert [i + 1 for i, s in enumerate(statuses) if s == 500] == [5, 8, 11]
    (fault,) = emulator.faults()["faults"]
    assert fault["matched"] == 12 and fault["injected"] == 3
    emulator.set_faults([{"kind": "server_error", "route": GET, "count": 2, "after": 1}])
    assert [raw(GET).status_code for _ in range(5)] == [200, 500, 500, 200, 200]
    emulator.clear_faults()
    assert emulator.faults()["faults"] == []


def test_invalid_fault_specs_are_refused(emulator):
    for spec in (
        {"kind": "meteor"},
        {"kind": "slow", "bogus": 1},
        {"kind": "server_error", "status": 404},
        {"kind": "rate_limit", "every": 0},
        {"kind": "corrupt_event", "corruption": "melted"},
        {"kind": "corrupt_event", "corruption": "timestamp", "timestamp": "yesterday"},
    ):
        with pytest.raises(RuntimeError, match="400"):
            emulator.set_faults([spec])


SPAN_BODY = orjson.dumps(
    {"limit": 5, "time": {"start_time": "2026-02-01T00:00:00Z", "end_time": "2026-02-20T00:00:00Z"}}
)


@pytest.mark.parametrize(
    ("corruption", "fields", "damaged"),
    [
        ("invalid_utf8", {}, b'[{"corrupt":"\xff",'),
        ("lone_surrogate", {}, b'[{"corrupt":"\\ud800",'),
        ("deep_nesting", {}, b'[{"corrupt":' + b"[" * 100_000 + b"]" * 100_000 + b","),
        ("not_an_object", {}, b"[42,{"),
        (
            "timestamp",
            {"timestamp": "2001-02-03T04:05:06Z"},
            b'[{"timestamp":"2001-02-03T04:05:06Z",',
        ),
    ],
)
def test_corrupt_event_damages_the_first_event_of_a_page(
    emulator, raw, corruption, fields, damaged
):
    clean = raw(GET, SPAN_BODY).content
    emulator.set_faults(
        [{"kind": "corrupt_event", "route": GET, "corruption": corruption, **fields}]
    )
    body = raw(GET, SPAN_BODY).content
    assert damaged in body and damaged not in clean
    assert body.endswith(clean[clean.index(b"},{") :]), "the other events are untouched"
    assert raw(GET, SPAN_BODY).content == clean  # count exhausted
    assert emulator.stats()["faults_injected"] == {"corrupt_event": 1}


def test_corrupt_event_duplicate_timestamp_follows_the_event_s_own(emulator, raw):
    clean = raw(GET, SPAN_BODY).content
    own = clean[clean.index(b'[{"timestamp":"') + 1 :][
        : len(b'{"timestamp":"2026-02-01T00:00:00Z"')
    ]
    emulator.set_faults(
        [{"kind": "corrupt_event", "route": GET, "corruption": "duplicate_timestamp"}]
    )
    body = raw(GET, SPAN_BODY).content
    assert own + b',"timestamp":"1970-01-01T00:00:00Z",' in body
