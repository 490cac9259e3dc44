"""The tail reader on the emulator (real HTTP, the real SDK): a chain start and its polls
deliver each newly visible event once under transient faults, and a broken chain (`reset`,
`bad_cursor`, an expired cursor) is one typed error carrying the restart timestamp.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import orjson
import pytest

from dropbox_team_log.client.reader import EventPage
from dropbox_team_log.client.tail import TailReader
from dropbox_team_log.errors import CursorLostError
from dropbox_team_log.timeutil import from_wire
from tests.helpers.pipeline import grant_app, multiset, reader_at, utc

T = utc(2026, 11, 20, 12, 0, 0)
S = int((T - timedelta(hours=30)).timestamp())
UNTIL = int((T + timedelta(days=30)).timestamp())
FAR = T + timedelta(days=60)

TRANSIENT = [
    {"kind": "rate_limit", "route": "2/team_log/*", "every": 5, "count": 2, "retry_after": 0},
    {"kind": "server_error", "status": 503, "every": 4, "count": 3},
    {"kind": "drop_connection", "route": "2/team_log/*", "every": 6, "count": 2},
    {"kind": "truncated_body", "route": "2/team_log/*", "every": 7, "count": 2},
]


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=9,
        clock=T,
        events_per_day=400,
        page_size=30,
        empty_page_rate=0.15,
        duplicate_rate=0.03,
        late_rate=0.3,
        cursor_ttl=2 * 86_400,
    ) as emu:
        yield emu


@pytest.fixture
def tail(emu) -> TailReader:
    emu.set_clock(T)
    emu.clear_faults()
    grant = grant_app(emu)
    reader = reader_at(
        emu.base_url,
        page_limit=30,
        oauth2_refresh_token=grant.refresh_token,
        app_key=emu.config.app_key,
        app_secret=emu.config.app_secret,
    )
    return TailReader(reader)


def drain(pages) -> tuple[list[bytes], str, list[EventPage]]:
    got: list[EventPage] = list(pages)
    assert got and not got[-1].has_more and all(p.has_more for p in got[:-1])
    assert got[-1].cursor, "the last page carries the cursor to poll next"
    return [bytes(e) for p in got for e in p.events], got[-1].cursor, got


def test_start_then_polls_deliver_each_newly_visible_event_once(emu, tail):
    emu.set_faults(TRANSIENT)
    events, cursor, pages = drain(tail.start(S, until=UNTIL))
    assert multiset(events) == multiset(emu.truth(S, FAR))
    assert all(p.position.start == S and p.position.end == UNTIL for p in pages)
    assert [p.position.page for p in pages] == list(range(1, len(pages) + 1))
    assert any(not p.events for p in pages[:-1]), "empty pages with has_more were followed"
    delivered = multiset(events)
    before = emu.truth(S, FAR)
    for step in (0, 300, 3 * 3600, 20 * 3600):
        emu.advance(step)
        polled, cursor, _ = drain(tail.poll(cursor, start=S, until=UNTIL))
        now = emu.truth(S, FAR)
        assert multiset(polled) == multiset(now) - multiset(before)
        delivered += multiset(polled)
        before = now
    assert delivered == multiset(emu.truth(S, FAR))
    assert sum(delivered.values()) == len(emu.truth(S, FAR))  # duplicates counted, none extra
    assert sum(emu.stats()["faults_injected"].values()) > 0
    assert tail.reader.api.stats.retries, "the transient faults were retried"


def test_reset_is_a_typed_error_with_the_restart_timestamp(emu, tail):
    events, cursor, _ = drain(tail.start(S, until=UNTIL))
    newest = max(from_wire(orjson.loads(e)["timestamp"]) for e in events)
    emu.set_faults([{"kind": "cursor_reset", "count": 1}])
    with pytest.raises(CursorLostError) as lost:
        list(tail.poll(cursor, start=S, until=UNTIL))
    assert lost.value.tag == "reset" and lost.value.reset_at == newest
    assert cursor not in str(lost.value)


def test_a_reset_in_the_middle_of_a_poll_is_the_same_error(emu, tail):
    _, cursor, _ = drain(tail.start(S, until=UNTIL))
    emu.advance(6 * 3600)  # enough new events for several pages
    emu.set_faults([{"kind": "cursor_reset", "after": 2, "count": 1}])
    pages = tail.poll(cursor, start=S, until=UNTIL)
    got = []
    with pytest.raises(CursorLostError):
        for page in pages:
            got.append(page)
    assert got, "the reset came after some pages: the consumer must drop them"


def test_bad_and_expired_cursors_end_the_chain(emu, tail):
    _, cursor, _ = drain(tail.start(S, until=UNTIL))
    with pytest.raises(CursorLostError) as bad:
        list(tail.poll(cursor[:-4] + "AAAA", start=S, until=UNTIL))
    assert bad.value.tag == "bad_cursor" and bad.value.reset_at is None
    emu.advance(3 * 86_400)  # beyond the emulator's cursor_ttl
    with pytest.raises(CursorLostError) as expired:
        list(tail.poll(cursor, start=S, until=UNTIL))
    assert expired.value.tag == "reset" and expired.value.reset_at is not None


def test_a_chain_started_at_now_is_empty_then_polls_what_arrives(emu, tail):
    now = int(T.timestamp())
    events, cursor, _ = drain(tail.start(now, until=UNTIL))
    assert events == [] and emu.truth(now, FAR) == []
    emu.advance(2 * 3600)
    polled, _, _ = drain(tail.poll(cursor, start=now, until=UNTIL))
    assert polled and multiset(polled) == multiset(emu.truth(now, FAR))


def test_stats_count_the_tail_pages(emu, tail):
    before = tail.reader.stats.events
    events, _, pages = drain(tail.start(S, until=UNTIL))
    assert tail.reader.stats.events - before == len(events)
    assert Counter(len(p.events) == 0 for p in pages)[False] > 0
