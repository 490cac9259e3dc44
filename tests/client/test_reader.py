"""The hook reads a 60-day range exactly, whatever the API throws at it.

Real HTTP against the emulator, the real SDK underneath; the result is compared with the
emulator's ground truth as a multiset (byte-identical duplicates are separate entries). A small
scripted HTTP server stands in for bodies the emulator never sends (a valid page of the wrong
shape).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dropbox.team_log
import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dropbox_team_log.client.api import RetryPolicy
from dropbox_team_log.client.reader import EventReader
from dropbox_team_log.errors import RefreshTokenRevokedError, RouteError, TransientApiError
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from dropbox_team_log.schema import TIMESTAMP_TYPE
from dropbox_team_log.transform.events import events_to_batch
from tests.helpers.pipeline import connection_json, multiset, read_events, reader_at, utc

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
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=5,
        clock=T,
        events_per_day=30,
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
    events = read_events(
        hook.event_reader(page_limit=1000), int(START.timestamp()), int(END.timestamp())
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
    events = read_events(hook.event_reader(), int(START.timestamp()), int(END.timestamp()))
    known = set(dropbox.team_log.EventType._tagmap)
    unknown = {e["event_type"][".tag"] for e in events} - known
    assert unknown, "the emulator served no event type unknown to the SDK"
    assert "other" not in unknown


def test_revoked_refresh_token_fails_fast_without_retries(emu, hook):
    emu.revoke_refresh_tokens()
    started = time.monotonic()
    with pytest.raises(RefreshTokenRevokedError, match="reconnect the team") as caught:
        read_events(hook.event_reader(), int(START.timestamp()), int(END.timestamp()))
    assert time.monotonic() - started < 5
    assert emu.stats()["calls"].get("oauth2/token", 0) == 1
    assert "refresh_token" not in str(caught.value).replace("refresh token", "")


def test_a_rate_limit_holds_back_every_thread_of_the_sync(emu, hook):
    """The threads of a day's sync share one gate: after a 429, the others wait out its
    Retry-After instead of spending calls of their own against the team's limit. (Copies of the
    client here, so that each records its own sleeps; a copy shares the gate.)"""
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


def test_threads_of_one_sync_refresh_the_access_token_once(emu, hook):
    """A day's slice threads start together on a client with no access token yet: one of them
    refreshes it, the others wait for it and use it (not one refresh per thread)."""
    import copy

    emu.set_faults([{"kind": "latency", "route": "oauth2/token", "seconds": 0.2}])
    copies = [copy.copy(hook.api) for _ in range(4)]
    start = threading.Barrier(len(copies))

    def call(api) -> dict:
        start.wait()
        return api.call("team/get_info", None)

    with ThreadPoolExecutor(len(copies)) as pool:
        infos = list(pool.map(call, copies))
    assert {info["team_id"] for info in infos} == {infos[0]["team_id"]}
    assert emu.stats()["calls"]["oauth2/token"] == 1
    assert emu.stats()["calls"]["2/team/get_info"] == 4


# --- the events are the API's bytes ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "cursor_reset", "bad_cursor", "truncated_body"])
def test_raw_event_is_exactly_the_bytes_the_emulator_served(kind, emu, hook):
    """Page items are the served bytes; so is raw_event, duplicates and restarts included."""
    emu.set_faults(FAULTS[kind])
    batches: list[pa.RecordBatch] = []
    for page in hook.event_reader().iter_pages(int(START.timestamp()), int(END.timestamp())):
        if page.discard_from is not None:
            cut = pa.scalar(page.discard_from, TIMESTAMP_TYPE)
            batches = [b.filter(pc.less(b.column("timestamp"), cut)) for b in batches]
        if not page.events:
            continue
        assert all(isinstance(event, msgspec.Raw) for event in page.events)
        batch = events_to_batch(page.events, team_id="dbtid:x", ingested_at=T)
        served = [bytes(event) for event in page.events]
        assert [r.encode() for r in batch.column("raw_event").to_pylist()] == served
        batches.append(batch)
    got = Counter(r.encode() for b in batches for r in b.column("raw_event").to_pylist())
    want = Counter(emu.truth(START, END, as_of=T))
    assert max(want.values()) > 1, "the emulator served no byte-identical duplicates"
    assert got == want
    if kind != "none":
        assert emu.stats()["faults_injected"].get(kind, 0) > 0, f"{kind} never fired"


# --- bodies the emulator never sends: transient vs permanent --------------------------------

PAGE = (
    b'{"events":[{"timestamp":"2026-01-01T00:00:00Z","event_type":{".tag":"x"}}],"has_more":false}'
)


class _ScriptedApi(ThreadingHTTPServer):
    """Answers each POST with the next scripted 200 body (application/json, as Dropbox does)."""

    def __init__(self, bodies: list[bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.bodies = list(bodies)
        self.calls = 0


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: _ScriptedApi

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls += 1
        body = self.server.bodies.pop(0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Dropbox-Request-Id", f"req-{self.server.calls}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted():
    """`serve(*bodies)` -> (EventReader on a server answering with those bodies, the server)."""
    servers: list[_ScriptedApi] = []

    def serve(*bodies: bytes) -> tuple[EventReader, _ScriptedApi]:
        server = _ScriptedApi(list(bodies))
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        reader = reader_at(
            f"http://127.0.0.1:{server.server_address[1]}",
            policy=RetryPolicy(max_attempts=3),
            timeout=5,
            oauth2_access_token="test-access-token",
        )
        return reader, server

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _read(reader: EventReader) -> list[dict]:
    return read_events(reader, 1767225600, 1767229200)


@pytest.mark.parametrize(
    "bad",
    [
        PAGE[:40],  # truncated
        b"<html><body>502 Bad Gateway</body></html>",
        b"",
        b"[1, 2]",  # JSON, but not an object
        PAGE + b"garbage",
    ],
)
def test_a_body_that_is_not_json_is_retried_then_read(scripted, bad):
    reader, server = scripted(bad, PAGE)
    events = _read(reader)
    assert [e["event_type"][".tag"] for e in events] == ["x"]
    assert server.calls == 2
    assert reader.api.stats.retries["malformed_response"] == 1


def test_bad_bodies_without_end_exhaust_the_retry_budget(scripted):
    reader, server = scripted(*[PAGE[:40]] * 3)
    with pytest.raises(TransientApiError, match="malformed_response"):
        _read(reader)
    assert server.calls == 3


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"cursor":"c","has_more":false}', "missing required field `events`"),
        (b'{"events":null}', "events"),
        (b'{"events":{"a":1}}', "events"),
        (b'{"events":[],"has_more":"yes"}', "has_more"),
    ],
)
def test_a_valid_json_page_of_the_wrong_shape_is_a_permanent_error(scripted, body, needle):
    reader, server = scripted(body, PAGE)
    with pytest.raises(RouteError, match="malformed_page") as err:
        _read(reader)
    assert needle in str(err.value)
    assert server.calls == 1, "a wrong envelope must not be asked for again"
    assert reader.api.stats.retries == Counter()


def test_has_more_without_a_cursor_is_a_permanent_error_after_the_page(scripted):
    body = PAGE.replace(b'"has_more":false', b'"has_more":true')
    reader, server = scripted(body, PAGE)
    pages = reader.iter_pages(1767225600, 1767229200)
    assert len(next(pages).events) == 1
    with pytest.raises(RouteError, match="has_more without a cursor"):
        next(pages)
    assert server.calls == 1
