"""event_wire: pages decode to exact event bytes, events to GC-free structs of the flat fields;
unknown keys are ignored, the required ones are not optional."""

from __future__ import annotations

import gc
import inspect

import msgspec
import pytest

from dropbox_team_log.client import wire as event_wire
from dropbox_team_log.client.wire import (
    ABSENT_RAW,
    NULL_RAW,
    EventsPage,
    decode_event,
    decode_page,
)
from tests.helpers.paths import SPEC_EVENTS

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
