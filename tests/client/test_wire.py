"""event_wire: pages decode to exact event bytes, events to GC-free structs of the flat fields;
unknown keys are ignored, the required ones are not optional; data that cannot be stored is a
permanent error that names the day, the page and the event."""

from __future__ import annotations

import gc
import inspect
import re
from datetime import UTC, date, datetime

import msgspec
import pytest

from dropbox_team_log.client import wire as event_wire
from dropbox_team_log.client.api import RetryPolicy
from dropbox_team_log.client.reader import EventPage, _page_decoder
from dropbox_team_log.client.wire import (
    ABSENT_RAW,
    NULL_RAW,
    EventsPage,
    PagePosition,
    WireDataError,
    decode_event,
    decode_page,
    page_problem,
)
from dropbox_team_log.errors import PermanentError
from dropbox_team_log.timeutil import day_start
from tests.helpers.paths import SPEC_EVENTS
from tests.helpers.pipeline import grant_app, reader_at

SPEC = SPEC_EVENTS


def spec_lines() -> list[bytes]:
    return SPEC.read_bytes().splitlines()


def test_every_struct_is_untracked_by_the_garbage_collector():
    structs = [
        cls
        for _, cls in inspect.getmembers(event_wire, inspect.isclass)
        if issubclass(cls, msgspec.Struct) and cls.__module__ == event_wire.__name__
    ]
    assert len(structs) >= 8
    for cls in structs:
        assert cls.__struct_config__.gc is False, cls.__name__
    event = decode_event(spec_lines()[0])
    assert not gc.is_tracked(event)
    assert not gc.is_tracked(event.actor) and not gc.is_tracked(event.origin)


def test_a_page_gives_each_event_s_exact_bytes_with_spacing_kept():
    lines = spec_lines()[:3]
    body = b'{"has_more": false, "events" : [ ' + b" ,\n".join(lines) + b' ], "x": [1]}'
    page = decode_page(body)
    assert isinstance(page, EventsPage)
    assert [bytes(raw) for raw in page.events] == lines
    assert (page.cursor, page.has_more) == (None, False)


def test_a_str_body_decodes_like_its_utf8_bytes():
    lines = [b'{"name":"Zo\xc3\xab \\u00e9"}', b"{}"]
    body = b'{"events":[' + b",".join(lines) + b'],"cursor":"c","has_more":true}'
    page = decode_page(body.decode())
    assert [bytes(raw) for raw in page.events] == lines
    assert (page.cursor, page.has_more) == ("c", True)


def test_has_more_may_be_null():
    assert decode_page(b'{"events":[],"has_more":null}').has_more is None


@pytest.mark.parametrize(
    "body", [b"", b"<html>", b'{"events":[{"a":1}', b'{"events":[]} x', b'{"events":["\\ud800"]}']
)
def test_a_body_that_is_not_json_is_a_decode_error_not_a_validation_error(body):
    with pytest.raises(msgspec.DecodeError) as err:
        decode_page(body)
    assert not isinstance(err.value, msgspec.ValidationError)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[]", "Expected `object`, got `array`"),
        (b'{"cursor":"c"}', "missing required field `events`"),
        (b'{"events":null}', "$.events"),
        (b'{"events":[],"has_more":"yes"}', "$.has_more"),
        (b'{"events":[],"cursor":5}', "$.cursor"),
    ],
)
def test_json_that_is_not_a_page_is_a_validation_error(body, needle):
    with pytest.raises(msgspec.ValidationError, match=needle.replace("$", r"\$")):
        decode_page(body)


def test_every_spec_event_decodes_and_unknown_keys_are_ignored():
    for line in spec_lines():
        event = decode_event(line)
        assert event.event_type.tag
        assert bytes(event.details).startswith(b'{".tag":')
    extra = decode_event(
        b'{"future":{"a":[1,2]},"timestamp":"t","event_type":{".tag":"x","more":1},'
        b'"actor":{".tag":"app","app":{"app_id":"dbaid:1","kind":"new"}}}'
    )
    assert (extra.event_type.tag, extra.actor.tag, extra.actor.app.app_id) == (
        "x",
        "app",
        "dbaid:1",
    )


def test_optional_parts_may_be_absent_or_null():
    absent = decode_event(b'{"timestamp":"t","event_type":{".tag":"x"}}')
    null = decode_event(
        b'{"timestamp":"t","event_type":{".tag":"x","description":null},"actor":null,'
        b'"origin":null,"context":null,"event_category":null,"involve_non_team_member":null,'
        b'"details":null,"assets":null,"participants":null}'
    )
    for event in (absent, null):
        assert event.actor is None and event.origin is None and event.context is None
        assert event.event_category is None and event.involve_non_team_member is None
        assert event.event_type.description is None
    for raw in (absent.details, absent.assets, absent.participants):
        assert raw == ABSENT_RAW and len(raw) == 0
    for raw in (null.details, null.assets, null.participants):
        assert raw == NULL_RAW and bytes(raw) == b"null"
    empty = decode_event(b'{"timestamp":"t","event_type":{".tag":"x"},"assets":[]}')
    assert bytes(empty.assets) == b"[]"


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        (b'{"event_type":{".tag":"x"}}', "missing required field `timestamp`"),
        (b'{"timestamp":"t"}', "missing required field `event_type`"),
        (b'{"timestamp":"t","event_type":{}}', "missing required field `.tag`"),
        (b'{"timestamp":"t","event_type":{".tag":""}}', "length >= 1"),
        (b'{"timestamp":"t","event_type":{".tag":"x"},"context":"team"}', "$.context"),
        (b'{"timestamp":"t","event_type":{".tag":"x"},"involve_non_team_member":1}', "involve"),
    ],
)
def test_required_fields_and_wrong_types_are_refused(event, needle):
    with pytest.raises(msgspec.ValidationError, match=needle.replace("$", r"\$")):
        decode_event(event)


# --- data that cannot be stored: a permanent error naming the day, the page and the event ------
# Over real HTTP: the emulator damages the first event of the second page (the first /continue
# answer) of a day read through the real SDK and EventReader.

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
DAY = date(2026, 11, 15)
LO = day_start(DAY)
CONTINUE = "2/team_log/get_events/continue"
#: What every WireDataError says, whatever the damage: the day, the range, the page, and what to do.
POSITION = (
    "day 2026-11-15 (range 2026-11-15T00:00:00Z..2026-11-16T00:00:00Z, page 2), "
    "event at index 0 of the page, event_type '"
)
WHAT_TO_DO = ("not retried", "nothing of this fetch was written", "Report it to Dropbox support")


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=13, clock=T, events_per_day=200, page_size=20, empty_page_rate=0.0
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def refresh_token(emu) -> str:
    return grant_app(emu).refresh_token


@pytest.fixture
def read_day(emu, refresh_token):
    """`read_day()`: every page of DAY through a fresh reader, faults cleared afterwards."""

    def read() -> list[EventPage]:
        reader = reader_at(
            emu.base_url,
            page_limit=20,
            policy=RetryPolicy(max_attempts=3),
            oauth2_refresh_token=refresh_token,
            app_key=emu.config.app_key,
            app_secret=emu.config.app_secret,
        )
        return list(reader.iter_pages(LO, LO + 86_400))

    emu.reset_stats()
    yield read
    emu.clear_faults()


def _damage(emu, corruption: str, **fields: str) -> None:
    emu.set_faults(
        [{"kind": "corrupt_event", "route": CONTINUE, "corruption": corruption, **fields}]
    )


@pytest.mark.parametrize(
    ("corruption", "problem"),
    [
        ("invalid_utf8", "not valid UTF-8 (invalid start byte at byte "),
        ("lone_surrogate", "a string holds a lone UTF-16 surrogate escape"),
        ("deep_nesting", "it is nested 100001 levels deep, more than the decoder follows"),
    ],
)
def test_a_page_that_cannot_be_stored_is_a_permanent_error_naming_the_event(
    emu, read_day, corruption, problem
):
    _damage(emu, corruption)
    with pytest.raises(WireDataError) as err:
        read_day()
    message = str(err.value)
    assert isinstance(err.value, PermanentError)
    assert POSITION in message and problem in message
    assert re.search(r"event_type '[a-z_]+'", message), message
    assert all(part in message for part in WHAT_TO_DO)
    assert "Traceback" not in message and "\n" not in message
    calls = emu.stats()["calls"]
    assert calls[CONTINUE] == 1, "asking again returns the same bytes: no retry"
    assert emu.stats()["faults_injected"] == {"corrupt_event": 1}


def test_the_same_day_reads_whole_once_the_api_answers_correctly(emu, read_day):
    pages = read_day()
    events = [bytes(raw) for page in pages for raw in page.events]
    assert sorted(events) == sorted(emu.truth(LO, LO + 86_400, as_of=T))
    assert [page.position.page for page in pages] == list(range(1, len(pages) + 1))


@pytest.mark.parametrize(
    "key", [b'"timestamp"', b'"\\u0074imestamp"'], ids=["plain", "spelled-with-an-escape"]
)
def test_a_repeated_key_s_last_value_wins(key):
    """The documented rule (see client/wire.py): the columns take the last value of a key an
    event holds twice; sync.fetch then checks that timestamp against the range asked for."""
    event = b'{"timestamp":"2026-11-15T10:00:00Z","event_type":{".tag":"x"},' + key + b':"late"}'
    assert decode_event(event).timestamp == "late"


def test_nesting_outside_the_events_is_the_page_as_a_whole():
    deep = b"[" * 5000 + b"]" * 5000
    body = b'{"events":[{"timestamp":"t","event_type":{".tag":"x"}}],"extra":' + deep + b"}"
    assert page_problem(body, too_deep=True) == (
        None,
        None,
        "it is nested deeper than the decoder follows",
    )


@pytest.mark.parametrize(
    "body", [b"", b"<html>", b'{"events":[{"a":1}', b'{"events":[]} x'], ids=repr
)
def test_a_body_that_is_not_json_is_not_called_data(body):
    """Cut short or HTML: the API client retries those (a permanent error would be wrong)."""
    assert page_problem(body, too_deep=False) is None


def test_invalid_utf8_outside_the_events_is_the_page_as_a_whole():
    """The SDK decodes the body first (the reader names the event); a decoder handed bytes
    meets it only in a string it reads, such as the cursor: permanent too."""
    position = PagePosition(LO, LO + 86_400, LO, 3)
    decode = _page_decoder("team_log/get_events/continue", position)
    with pytest.raises(WireDataError) as err:
        decode(b'{"events":[],"cursor":"c\xff","has_more":true}')
    assert "page 3), the page as a whole: the team_log/get_events/continue answer is not " in str(
        err.value
    )
    assert "valid UTF-8 (invalid start byte)" in str(err.value)
