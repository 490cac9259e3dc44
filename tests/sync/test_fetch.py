"""fetch: an event the API should never send stops the day with a permanent error that names
it, and nothing of the fetch is written.

Over real HTTP: the emulator damages the first event of the first page of a day, read through
the real SDK, EventReader, fetch and dataset (`engine.sync_day`). Dropbox answers only events
of the requested `[start_time, end_time)`, so an event outside it is wrong data, not a bug of
ours: the error names the event, its type and timestamp, the page and the range.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import date

import pytest

from dropbox_team_log.client import reader as reader_module
from dropbox_team_log.client.reader import EventPage
from dropbox_team_log.client.wire import PagePosition, WireDataError
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.errors import PermanentError, RouteError
from dropbox_team_log.sync import engine, fetch
from dropbox_team_log.sync.planning import DaySpan, SyncPolicy
from dropbox_team_log.timeutil import day_start
from dropbox_team_log.transform.events import MalformedEventError
from tests.helpers.paths import SPEC_EVENTS
from tests.helpers.pipeline import grant_app, reader_at, utc

T = utc(2026, 11, 20, 12, 0, 0)
DAY = date(2026, 11, 14)
LO = day_start(DAY)
HI = LO + 86_400
GET_EVENTS = "2/team_log/get_events"


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=17, clock=T, events_per_day=300, page_size=25, empty_page_rate=0.0
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def refresh_token(emu) -> str:
    return grant_app(emu).refresh_token


@pytest.fixture
def sync(emu, refresh_token, tmp_path):
    """`sync(lo, hi, concurrency)`: sync_day of [lo, hi) of DAY into tmp_path/dataset."""

    def run(lo: int = LO, hi: int = HI, concurrency: int = 1) -> engine.DaySyncReport:
        reader = reader_at(
            emu.base_url,
            page_limit=25,
            oauth2_refresh_token=refresh_token,
            app_key=emu.config.app_key,
            app_secret=emu.config.app_secret,
        )
        return engine.sync_day(
            reader=reader,
            dataset=EventDataset(str(tmp_path / "dataset")),
            span=DaySpan(DAY, lo, hi),
            as_of=int(T.timestamp()),
            policy=SyncPolicy(),
            team_id="dbtid:test",
            concurrency=concurrency,
        )

    emu.reset_stats()
    yield run
    emu.clear_faults()


def _damage_first_page(emu, corruption: str, **fields: str) -> None:
    emu.set_faults(
        [{"kind": "corrupt_event", "route": GET_EVENTS, "corruption": corruption, **fields}]
    )


@pytest.mark.parametrize("concurrency", [1, 4], ids=["one-call", "slices"])
@pytest.mark.parametrize(
    "timestamp",
    [
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-11-13T23:59:59Z",
        "2026-11-15T00:00:00Z",
    ],
    ids=["1970", "far-future", "the-second-before", "the-end-itself"],
)
def test_an_event_outside_the_range_asked_for_is_named_and_nothing_is_written(
    emu, sync, tmp_path, timestamp, concurrency
):
    _damage_first_page(emu, "timestamp", timestamp=timestamp)
    with pytest.raises(WireDataError) as err:
        sync(concurrency=concurrency)
    message = str(err.value)
    assert isinstance(err.value, PermanentError)
    assert "day 2026-11-14 (range 2026-11-14T00:00:00Z..2026-11-15T00:00:00Z, page 1)" in message
    assert re.search(r"event at index 0 of the page, event_type '[a-z_]+'", message), message
    assert (
        f"its timestamp {timestamp} lies outside the range the query asked for, "
        "2026-11-14T00:00:00Z..2026-11-15T00:00:00Z"
    ) in message
    assert "disagree" not in message and "not retried" in message
    assert EventDataset(str(tmp_path / "dataset")).days() == []
    assert emu.stats()["calls"][GET_EVENTS] == 1


def test_a_failed_fetch_leaves_the_day_as_it_was(emu, sync, tmp_path):
    """The first half of the day is on disk; a re-read of the whole day meets a 1970 event:
    the file keeps exactly its rows and coverage."""
    sync(LO, LO + 43_200)
    folder = tmp_path / "dataset" / f"event_date={DAY}"
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert list(before) == ["events.parquet"]  # a settled day: one day file, half covered
    _damage_first_page(emu, "timestamp", timestamp="1970-01-01T00:00:00Z")
    with pytest.raises(WireDataError, match="lies outside the range"):
        sync(LO + 43_200, HI)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_a_repeated_timestamp_s_last_value_wins_and_is_checked(emu, sync, tmp_path):
    """The documented rule for a key an event holds twice (client/wire.py): the last value
    wins, in the columns; raw_event keeps the bytes as sent. Outside the range: refused."""
    _damage_first_page(emu, "duplicate_timestamp", timestamp="1970-01-01T00:00:00Z")
    with pytest.raises(WireDataError, match="its timestamp 1970-01-01T00:00:00Z lies outside"):
        sync()
    assert EventDataset(str(tmp_path / "dataset")).days() == []
    _damage_first_page(emu, "duplicate_timestamp", timestamp="2026-11-14T23:59:59Z")
    report = sync()
    table = EventDataset(str(tmp_path / "dataset")).read_day(DAY)
    repeated = [
        row
        for row in table.select(["timestamp", "raw_event"]).to_pylist()
        if row["raw_event"].count('"timestamp"') == 2
    ]
    assert len(repeated) == 1 and report.rows_after == len(emu.truth(LO, HI, as_of=T))
    assert repeated[0]["timestamp"].isoformat() == "2026-11-14T23:59:59+00:00"
    assert re.match(
        r'\{"timestamp":"[^"]+","timestamp":"2026-11-14T23:59:59Z",', repeated[0]["raw_event"]
    )


def test_an_event_that_is_not_an_object_is_named(emu, sync, tmp_path):
    _damage_first_page(emu, "not_an_object")
    with pytest.raises(WireDataError) as err:
        sync()
    message = str(err.value)
    assert "page 1), event at index 0 of the page, event_type unknown" in message
    assert "Expected `object`, got `int`" in message
    assert EventDataset(str(tmp_path / "dataset")).days() == []


def test_an_undamaged_day_after_a_damaged_read_is_exact(emu, sync, tmp_path):
    """The day heals once the API answers correctly: the next run reads it whole."""
    _damage_first_page(emu, "timestamp", timestamp="1970-01-01T00:00:00Z")
    with pytest.raises(WireDataError):
        sync()
    emu.clear_faults()
    report = sync()
    truth = emu.truth(LO, HI, as_of=T)
    assert report.rows_after == len(truth) > 0
    table = EventDataset(str(tmp_path / "dataset")).read_day(DAY)
    assert sorted(table.column("raw_event").to_pylist()) == sorted(t.decode() for t in truth)


# --- fuzzing: whatever the bytes, one of four answers ---------------------------------------

#: Bytes that break JSON, text or the decoder in the ways that matter.
HOSTILE = [
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",  # a surrogate encoded as UTF-8: not UTF-8
    b"\\ud800",
    b"\\udc00\\ud800",
    b"\\u0000",
    b"\x00",
    b"\x1b[2J",
    b"[" * 3000,
    b"{" * 3000,
    b'"',
    b",",
    b"}",
    b"]",
    b"NaN",
    b"1e999999",
    b'"timestamp":"1970-01-01T00:00:00Z",',
    b'"timestamp":"9999-12-31T23:59:59Z",',
]


def _mutate(body: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(body))
    kind = rng.randrange(4)
    if kind == 0:  # insert something hostile
        return body[:at] + rng.choice(HOSTILE) + body[at:]
    if kind == 1:  # replace a byte
        return body[:at] + bytes([rng.randrange(256)]) + body[at + 1 :]
    if kind == 2:  # cut a span out
        return body[:at] + body[at + rng.randrange(1, 200) :]
    span = body[at : at + rng.randrange(1, 200)]  # repeat a span
    return body[:at] + span + body[at:]


def test_fuzzed_pages_get_a_page_a_retry_or_a_permanent_error_naming_them():
    """Seeded mutations of a real page, through the reader's decoder and the page's rows: the
    only answers are rows, a ValueError (the client retries: not JSON), a malformed_page route
    error, or a WireDataError on one line without raw control characters. Never a
    RecursionError, a UnicodeError or any other traceback."""
    events = SPEC_EVENTS.read_bytes().splitlines()[:6]
    for index, event in enumerate(events):  # each inside the range read below
        events[index] = re.sub(
            rb'"timestamp":"[^"]*"', b'"timestamp":"2026-11-14T10:00:00Z"', event
        )
    page = b'{"events":[' + b",".join(events) + b'],"cursor":"c","has_more":false}'
    position = PagePosition(LO, HI, LO, 1)
    decode = reader_module._page_decoder("team_log/get_events", position)
    rng = random.Random(14)
    outcomes: Counter = Counter()
    for _ in range(600):
        body = page
        for _ in range(rng.randrange(1, 4)):
            body = _mutate(body, rng)
        try:
            events_page = decode(body)
            fetch._page_batch(EventPage(events_page.events, position), "t", T)
            outcomes["rows"] += 1
        except WireDataError as exc:
            message = str(exc)
            assert "\n" not in message and "\x1b" not in message and "\x00" not in message
            assert "day 2026-11-14" in message and "Report it to Dropbox support" in message
            outcomes["permanent"] += 1
        except RouteError as exc:
            assert exc.tag == "malformed_page"
            outcomes["malformed_page"] += 1
        except ValueError as exc:
            assert not isinstance(exc, (UnicodeError, MalformedEventError))
            outcomes["retried"] += 1
    assert outcomes["rows"] and outcomes["permanent"] and outcomes["retried"], outcomes
