"""transform: every fixture event type -> one exact row; raw_event and the JSON columns are the
exact bytes the API sent; malformed input is refused by position."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import orjson
import pyarrow as pa
import pytest

from dropbox_team_log.client.wire import decode_page
from dropbox_team_log.schema import EVENT_SCHEMA
from dropbox_team_log.timeutil import from_wire
from dropbox_team_log.transform.events import MalformedEventError, events_to_batch
from tests.helpers.paths import SPEC_EVENTS, SPEC_PAGE
from tests.test_timeutil import NOT_WIRE_TIMESTAMPS

FIXTURES = SPEC_EVENTS.parent
PAGE_FIXTURE = SPEC_PAGE
INGESTED = datetime(2026, 3, 2, 3, 4, 5, 678000, tzinfo=UTC)


def page_to_batch(body: bytes | str, **kwargs):
    """A get_events page body straight to a batch, as the reader and the transform do it."""
    return events_to_batch(decode_page(body).events, **kwargs)


TEAM = "dbtid:AAC9Cmb-O7zWSL6LiXsmFh1MXGPyEbCs1h0"


def fixture_lines() -> list[bytes]:
    return (FIXTURES / "dropbox_spec_team_events.ndjson").read_bytes().splitlines()


def fixture_events() -> list[dict]:
    return [orjson.loads(line) for line in fixture_lines()]


def to_rows(events: list[dict]) -> list[dict]:
    return events_to_batch(events, team_id=TEAM, ingested_at=INGESTED).to_pylist()


def one(event: dict) -> dict:
    return to_rows([event])[0]


def base_event(**changes: object) -> dict:
    """The first fixture event with some top-level keys replaced (None: key removed)."""
    event = fixture_events()[0]
    for key, value in changes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


# --- the fixture file, line by line ---------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_batch() -> tuple[list[dict], pa.RecordBatch]:
    events = fixture_events()
    return events, events_to_batch(events, team_id=TEAM, ingested_at=INGESTED)


def test_every_fixture_line_becomes_one_row_with_the_schema(fixture_batch):
    events, batch = fixture_batch
    assert batch.schema == EVENT_SCHEMA
    assert batch.num_rows == len(events) == 636
    batch.validate(full=True)
    assert len(set(batch.column("event_type").to_pylist())) == 631


def test_every_fixture_line_keeps_its_values(fixture_batch):
    events, batch = fixture_batch
    for event, row in zip(events, batch.to_pylist(), strict=True):
        assert row["timestamp"] == datetime.strptime(
            event["timestamp"], "%Y-%m-%dT%H:%M:%SZ"
        ).replace(tzinfo=UTC)
        assert row["event_type"] == event["event_type"][".tag"]
        assert row["event_type_description"] == event["event_type"]["description"]
        assert row["event_category"] == event["event_category"][".tag"]
        assert row["actor_type"] == event["actor"][".tag"]
        assert json.loads(row["raw_event"]) == event
        assert json.loads(row["details"]) == event["details"]
        assert json.loads(row["assets"]) == event["assets"]
        assert json.loads(row["participants"]) == event["participants"]
        assert row["ip_address"] == "45.56.78.100"
        assert (row["country"], row["region"], row["city"]) == ("US", "California", "San Francisco")
        assert row["access_method"] == "end_user"
        assert row["involve_non_team_member"] is True
        assert row["context_type"] == "team_member"
        assert row["team_id"] == TEAM
        assert row["ingested_at"] == INGESTED


def test_raw_event_is_the_event_as_returned_keys_in_order(fixture_batch):
    events, batch = fixture_batch
    for line, raw in zip(fixture_lines(), batch.column("raw_event").to_pylist(), strict=True):
        assert raw.encode() == line  # compact JSON in, compact JSON out, same key order
    assert [json.loads(r) for r in batch.column("raw_event").to_pylist()] == events


def test_auth_status_per_fixture_actor_kind(fixture_batch):
    _, batch = fixture_batch
    seen = {
        (row["actor_type"], row["auth_status"])
        for row in batch.select(["actor_type", "auth_status"]).to_pylist()
    }
    assert seen == {
        ("user", "authenticated"),
        ("admin", "authenticated"),
        ("app", "authenticated"),
        ("dropbox", "authenticated"),
        ("reseller", "authenticated"),
        ("anonymous", "unauthenticated"),
    }


def test_shared_link_views_by_signed_out_visitors_are_unauthenticated(fixture_batch):
    _, batch = fixture_batch
    anonymous_types = {
        row["event_type"] for row in batch.to_pylist() if row["auth_status"] == "unauthenticated"
    }
    assert {
        "shared_link_view",
        "shared_content_view",
        "shared_content_download",
        "shared_link_download",
        "file_preview",
    } <= anonymous_types


def test_page_fixture_converts():
    row = one(orjson.loads(PAGE_FIXTURE.read_bytes())["events"][0])
    assert row["event_type"] == "shared_content_download"
    assert row["event_category"] == "tfa"  # as published, even though it contradicts the type
    assert row["actor_user_type"] == "non_team_member"


# --- actors ---------------------------------------------------------------------------------

USER = {
    ".tag": "team_member",
    "account_id": "dbid:AAHgR8xsQP48a5DQUGPo-Vxsrjd0OByVmho",
    "display_name": "John Smith",
    "email": "john_smith@acmecorp.com",
}
TEAM_CONTEXT = {".tag": "team_member", **{k: v for k, v in USER.items() if k != ".tag"}}


@pytest.mark.parametrize(
    ("actor", "context", "expected"),
    [
        ({".tag": "user", "user": USER}, TEAM_CONTEXT, "authenticated"),
        ({".tag": "admin", "admin": USER}, TEAM_CONTEXT, "authenticated"),
        (
            {".tag": "app", "app": {".tag": "user_linked_app", "app_id": "dbaid:x"}},
            TEAM_CONTEXT,
            "authenticated",
        ),
        ({".tag": "dropbox"}, TEAM_CONTEXT, "authenticated"),
        (
            {".tag": "reseller", "reseller_name": "r", "reseller_email": "r@x"},
            None,
            "authenticated",
        ),
        ({".tag": "some_future_actor"}, None, "authenticated"),
        ({".tag": "anonymous"}, TEAM_CONTEXT, "unauthenticated"),
        ({".tag": "anonymous"}, None, "unauthenticated"),
        (None, {".tag": "anonymous"}, "unauthenticated"),
        (None, TEAM_CONTEXT, "unknown"),
        (None, None, "unknown"),
        (None, {".tag": "non_team_member"}, "unknown"),
    ],
)
def test_auth_status_rule(actor, context, expected):
    row = one(base_event(actor=actor, context=context))
    assert row["auth_status"] == expected
    assert row["actor_type"] == (actor or {}).get(".tag")
    assert row["context_type"] == (context or {}).get(".tag")


def test_actor_null_json_counts_as_missing():
    event = base_event()
    event["actor"] = None
    assert one(event)["auth_status"] == "unknown"


def test_user_and_admin_actor_fields():
    for kind in ("user", "admin"):
        for user_type in ("team_member", "non_team_member", "trusted_non_team_member"):
            row = one(base_event(actor={".tag": kind, kind: {**USER, ".tag": user_type}}))
            assert row["actor_user_type"] == user_type
            assert row["actor_email"] == USER["email"]
            assert row["actor_display_name"] == USER["display_name"]
            assert row["actor_account_id"] == USER["account_id"]
            assert row["actor_app_id"] is None


def test_app_actor_has_app_id_not_account_id(fixture_batch):
    _, batch = fixture_batch
    apps = [r for r in batch.to_pylist() if r["actor_type"] == "app"]
    assert len(apps) == 90
    for row in apps:
        app = json.loads(row["raw_event"])["actor"]["app"]
        assert row["actor_app_id"] == app["app_id"]
        assert row["actor_display_name"] == app["display_name"]
        assert row["actor_account_id"] is None
        assert row["actor_user_type"] is None


def test_reseller_actor_fields():
    row = one(base_event(actor={".tag": "reseller", "reseller_name": "R", "reseller_email": "r@x"}))
    assert (row["actor_display_name"], row["actor_email"]) == ("R", "r@x")


# --- event types, origin, odd values --------------------------------------------------------


def test_unknown_event_type_keeps_its_tag():
    event = base_event(
        event_type={".tag": "brand_new_thing_no_sdk_knows", "description": "(x) New"},
        event_category={".tag": "brand_new_category"},
        details={".tag": "brand_new_thing_no_sdk_knows_details", "new_value": [1, {"a": None}]},
    )
    row = one(event)
    assert row["event_type"] == "brand_new_thing_no_sdk_knows"
    assert row["event_category"] == "brand_new_category"
    assert json.loads(row["details"])["new_value"] == [1, {"a": None}]
    assert json.loads(row["raw_event"]) == event


def test_event_type_without_description_is_fine():
    row = one(base_event(event_type={".tag": "file_add"}))
    assert (row["event_type"], row["event_type_description"]) == ("file_add", None)


def test_ipv6_origin():
    origin = {
        "access_method": {".tag": "api", "api": {".tag": "api_session", "request_id": "r"}},
        "geo_location": {"ip_address": "2001:db8:85a3::8a2e:370:7334", "country": "DE"},
    }
    row = one(base_event(origin=origin))
    assert row["ip_address"] == "2001:db8:85a3::8a2e:370:7334"
    assert (row["country"], row["region"], row["city"]) == ("DE", None, None)
    assert row["access_method"] == "api"


def test_missing_optional_parts_are_null():
    event = base_event(
        actor=None,
        origin=None,
        context=None,
        involve_non_team_member=None,
        participants=None,
        assets=None,
        details=None,
        event_category=None,
    )
    row = one(event)
    for column in EVENT_SCHEMA.names:
        if column not in {
            "timestamp",
            "event_type",
            "event_type_description",
            "auth_status",
            "raw_event",
            "team_id",
            "ingested_at",
        }:
            assert row[column] is None, column
    assert row["auth_status"] == "unknown"
    assert json.loads(row["raw_event"]) == event


def test_involve_non_team_member_false_stays_false():
    assert one(base_event(involve_non_team_member=False))["involve_non_team_member"] is False


def test_empty_lists_stay_json_not_null():
    row = one(base_event(assets=[], participants=[]))
    assert (row["assets"], row["participants"]) == ("[]", "[]")


def test_unicode_and_control_characters_round_trip():
    text = 'naïve 日本語 🙂 \u202eRTL\u202c tab\t nl\n nul\x00 bell\x07 quote" backslash\\ \u2028'
    event = base_event(
        details={".tag": "file_rename_details", "relocate_action_details": [], "note": text},
        actor={".tag": "user", "user": {**USER, "display_name": text}},
    )
    row = one(event)
    assert json.loads(row["details"])["note"] == text
    assert row["actor_display_name"] == text
    assert json.loads(row["raw_event"]) == event
    assert "\x00" not in row["raw_event"]  # escaped in the JSON text, not raw


def test_numbers_and_nesting_survive_exactly():
    details = {
        ".tag": "x_details",
        "big": 2**63 - 1,
        "neg": -(2**63),
        "float": 0.1,
        "exp": 1.5e-300,
        "deep": [[[[{"a": [True, False, None]}]]]],
    }
    assert json.loads(one(base_event(details=details))["details"]) == details


def test_timestamps_and_constants():
    batch = events_to_batch(fixture_events()[:3], team_id=TEAM, ingested_at=INGESTED)
    assert batch.column("timestamp").type == pa.timestamp("s", tz="UTC")
    assert batch.column("ingested_at").type == pa.timestamp("ms", tz="UTC")
    assert batch.column("ingested_at").to_pylist() == [INGESTED] * 3
    other_tz = INGESTED.astimezone(timezone(timedelta(hours=-5)))
    batch = events_to_batch(fixture_events()[:1], team_id=TEAM, ingested_at=other_tz)
    assert batch.column("ingested_at")[0].as_py() == INGESTED


def test_empty_input_gives_empty_batch():
    batch = events_to_batch([], team_id=TEAM, ingested_at=INGESTED)
    assert batch.num_rows == 0
    assert batch.schema == EVENT_SCHEMA


def test_naive_ingested_at_and_bad_team_id_are_refused():
    with pytest.raises(ValueError, match="timezone"):
        events_to_batch([], team_id=TEAM, ingested_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="team_id"):
        events_to_batch([], team_id="", ingested_at=INGESTED)


# --- malformed events -----------------------------------------------------------------------


def _break(**changes: object) -> list[object]:
    events: list[object] = fixture_events()[:5]
    events[3] = base_event(**changes)
    return events


@pytest.mark.parametrize(
    ("events", "needle"),
    [
        (["not an event"], "Expected `object`, got `str`"),
        ([None], "Expected `object`, got `null`"),
        ([[1, 2]], "Expected `object`, got `array`"),
        (_break(timestamp=None), "missing required field `timestamp`"),
        (_break(timestamp="2026-01-01 00:00:00"), "timestamp"),
        (_break(timestamp="2026-01-01T00:00:00.5Z"), "timestamp"),
        (_break(timestamp="2026-13-01T00:00:00Z"), "month"),
        (_break(timestamp="2026-02-30T00:00:00Z"), "day"),
        (_break(timestamp="2026-01-01T24:00:00Z"), "range"),
        (_break(timestamp="2026-01-01T00:60:00Z"), "range"),
        (_break(timestamp="\uff12\uff10\uff12\uff16-01-01T00:00:00Z"), "date"),
        (_break(timestamp=1767225600), "timestamp"),
        (_break(event_type=None), "event_type"),
        (_break(event_type={"description": "no tag"}), "event_type"),
        (_break(event_type={".tag": ""}), re.escape('$.event_type[".tag"]')),
        (_break(event_type={".tag": 7}), "event_type"),
        (_break(event_type="file_add"), "event_type"),
        (_break(involve_non_team_member="yes"), "involve_non_team_member"),
        (_break(actor="someone"), "position 3"),
        (_break(actor={".tag": "user", "user": "someone"}), re.escape("$.actor.user")),
        (_break(origin={"geo_location": {"ip_address": 12345}}), "ip_address"),
        (_break(event_category={".tag": ["a"]}), "event_category"),
    ],
)
def test_malformed_events_are_refused_with_position(events, needle):
    with pytest.raises(MalformedEventError, match=needle) as err:
        events_to_batch(events, team_id=TEAM, ingested_at=INGESTED)
    expected_position = 0 if len(events) == 1 else 3
    assert err.value.position == expected_position
    assert f"position {expected_position}" in str(err.value)
    assert isinstance(err.value, ValueError)


# --- raw bytes in: the API's bytes are kept, never re-serialised --------------------------

MINIMAL = b'{"timestamp":"2026-01-01T00:00:00Z","event_type":{".tag":"file_add"}}'


def raw_rows(*raws: bytes) -> list[dict]:
    return events_to_batch(list(raws), team_id=TEAM, ingested_at=INGESTED).to_pylist()


def spec_page(lines: list[bytes]) -> bytes:
    return b'{"events":[' + b",".join(lines) + b'],"cursor":"AAAA","has_more":true}'


def test_page_to_batch_keeps_each_event_s_exact_bytes(fixture_batch):
    lines = fixture_lines()
    batch = page_to_batch(spec_page(lines), team_id=TEAM, ingested_at=INGESTED)
    assert batch.schema == EVENT_SCHEMA
    batch.validate(full=True)
    assert [r.encode() for r in batch.column("raw_event").to_pylist()] == lines
    # Same columns as from parsed events (whose encoding is the same compact JSON here).
    assert batch.equals(fixture_batch[1])
    # A str body (what the SDK hands over) gives the same batch.
    text_batch = page_to_batch(spec_page(lines).decode(), team_id=TEAM, ingested_at=INGESTED)
    assert text_batch.equals(batch)


def test_the_reader_s_raw_items_go_in_as_they_are():
    lines = fixture_lines()[:20]
    raws = decode_page(spec_page(lines)).events
    assert all(isinstance(raw, msgspec.Raw) for raw in raws)
    batch = events_to_batch(raws, team_id=TEAM, ingested_at=INGESTED)
    assert [r.encode() for r in batch.column("raw_event").to_pylist()] == lines


def test_every_kind_of_event_input_gives_the_same_rows():
    lines = fixture_lines()[:4]
    kinds = [lines[0], msgspec.Raw(lines[1]), bytearray(lines[2]), memoryview(lines[3])]
    mixed = events_to_batch(kinds, team_id=TEAM, ingested_at=INGESTED)
    dicts = events_to_batch(
        [orjson.loads(line) for line in lines], team_id=TEAM, ingested_at=INGESTED
    )
    assert mixed.equals(dicts)


def test_json_columns_are_the_exact_bytes_of_those_values():
    raw = (
        b'{ "timestamp" : "2026-01-01T00:00:00Z", "event_type": {".tag": "file_add"},\n'
        b' "details" : {"path": "caf\\u00e9 \\/x", "n": 1.50, "e": 1E3} ,'
        b' "assets": [ ], "participants":[{"a":null}] }'
    )
    row = raw_rows(raw)[0]
    assert row["raw_event"].encode() == raw  # spacing, escapes and number forms as sent
    assert row["details"] == '{"path": "caf\\u00e9 \\/x", "n": 1.50, "e": 1E3}'
    assert row["assets"] == "[ ]"
    assert row["participants"] == '[{"a":null}]'


@pytest.mark.parametrize("column", ["details", "assets", "participants"])
def test_json_null_and_absent_are_both_null(column):
    absent = raw_rows(MINIMAL)[0]
    null = raw_rows(MINIMAL[:-1] + f',"{column}":null}}'.encode())[0]
    assert absent[column] is None
    assert null[column] is None
    empty = raw_rows(MINIMAL[:-1] + f',"{column}":{{}}}}'.encode())[0]
    assert empty[column] == "{}"


def test_nulls_in_a_json_column_sit_next_to_values():
    with_details = MINIMAL[:-1] + b',"details":{"x":1}}'
    batch = events_to_batch(
        [MINIMAL, with_details, MINIMAL, with_details], team_id=TEAM, ingested_at=INGESTED
    )
    batch.validate(full=True)
    assert batch.column("details").to_pylist() == [None, '{"x":1}', None, '{"x":1}']
    assert batch.column("details").null_count == 2
    assert batch.column("assets").null_count == 4


def test_unknown_fields_and_an_unknown_event_type_still_convert():
    raw = (
        b'{"timestamp":"2026-01-01T00:00:00Z","brand_new_top":{"deep":[1,{"x":null}]},'
        b'"event_type":{".tag":"quantum_teleport_file","description":"(future)","extra":7},'
        b'"event_category":{".tag":"quantum","quantum":{"q":1}},'
        b'"actor":{".tag":"user","user":{".tag":"team_member","email":"a@b.c","new_id":5},'
        b'"shiny":true},'
        b'"origin":{"geo_location":{"ip_address":"2001:db8::1","altitude":12.5},'
        b'"access_method":{".tag":"teleporter","teleporter":{"id":"t"}},"x":[]},'
        b'"context":{".tag":"team","team":{}},"details":{".tag":"quantum_teleport_file_details"}}'
    )
    row = raw_rows(raw)[0]
    assert row["raw_event"].encode() == raw
    assert (row["event_type"], row["event_category"]) == ("quantum_teleport_file", "quantum")
    assert (row["actor_type"], row["actor_user_type"], row["actor_email"]) == (
        "user",
        "team_member",
        "a@b.c",
    )
    assert (row["ip_address"], row["access_method"], row["context_type"]) == (
        "2001:db8::1",
        "teleporter",
        "team",
    )
    assert row["auth_status"] == "authenticated"


def test_non_ascii_and_escaped_strings_round_trip_from_bytes():
    name = 'Zoë "q" back\\slash tab\t nl\n nul\x00 😀 \u202eRTL\u202c \u2028 日本'
    escaped = json.dumps(name)  # \u-escapes for everything non-ASCII, surrogate pair for 😀
    raw_utf8 = json.dumps(name, ensure_ascii=False)
    for encoded in (escaped, raw_utf8):
        raw = (
            '{"timestamp":"2026-01-01T00:00:00Z","event_type":{".tag":"file_add"},'
            f'"actor":{{".tag":"user","user":{{"display_name":{encoded},"email":"zoë@例え.jp"}}}},'
            f'"details":{{"note":{encoded}}}}}'
        ).encode()
        row = raw_rows(raw)[0]
        assert row["actor_display_name"] == name
        assert row["actor_email"] == "zoë@例え.jp"
        assert row["raw_event"].encode() == raw
        assert json.loads(row["details"])["note"] == name


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (MINIMAL[:-5], "not valid JSON"),
        (b"", "not valid JSON"),
        (b"<html>", "not valid JSON"),
        (MINIMAL + b" trailing", "not valid JSON"),
        (MINIMAL[:-1] + b',"unknown":"\xff\xfe"}', "not valid UTF-8"),
        (MINIMAL[:-1] + b',"details":{"a":"\xc3("}}', "not valid UTF-8"),
        (MINIMAL[:-1] + b',"actor":{".tag":"\xff"}}', "not valid UTF-8"),
        (MINIMAL[:-1] + b',"details":"\\ud800"}', "not valid JSON"),  # lone surrogate
    ],
)
def test_broken_event_bytes_are_refused_with_position(bad, needle):
    events = [MINIMAL, MINIMAL, bad, MINIMAL]
    with pytest.raises(MalformedEventError, match=needle) as err:
        events_to_batch(events, team_id=TEAM, ingested_at=INGESTED)
    assert err.value.position == 2


def test_an_item_that_is_not_json_at_all_is_refused_with_position():
    with pytest.raises(MalformedEventError, match="not a JSON value") as err:
        events_to_batch([MINIMAL, object()], team_id=TEAM, ingested_at=INGESTED)
    assert err.value.position == 1


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>busy</html>", b'{"events":[', b"[]", b'{"cursor":"x"}', b'{"events":{}}'],
)
def test_page_to_batch_refuses_a_body_that_is_not_a_page(body):
    with pytest.raises(msgspec.DecodeError):
        page_to_batch(body, team_id=TEAM, ingested_at=INGESTED)


@pytest.mark.parametrize("text", NOT_WIRE_TIMESTAMPS)
def test_batches_refuse_the_same_timestamps_by_position(text):
    events = [MINIMAL, MINIMAL.replace(b"2026-01-01T00:00:00Z", json.dumps(text).encode()[1:-1])]
    with pytest.raises(MalformedEventError, match="bad timestamp") as err:
        events_to_batch(events, team_id=TEAM, ingested_at=INGESTED)
    assert err.value.position == 1


def test_batch_timestamps_equal_from_wire_over_random_instants():
    """The batch parses its timestamps in Arrow: same seconds as `from_wire`, years 1-9999."""
    rng = random.Random(11)
    first, last = -62_135_596_800, 253_402_300_799  # 0001-01-01T00:00:00Z, 9999-12-31T23:59:59Z
    epochs = [rng.randrange(first, last + 1) for _ in range(4000)]
    epochs += [first, last, -1, 0, 951_782_400, 4_107_542_399]  # 2000-02-29, 2100-02-28 end
    texts = []
    for epoch in epochs:
        d = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=epoch)
        texts.append(
            f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"
        )
    raws = [MINIMAL.replace(b"2026-01-01T00:00:00Z", text.encode()) for text in texts]
    batch = events_to_batch(raws, team_id=TEAM, ingested_at=INGESTED)
    seconds = batch.column("timestamp").cast(pa.int64()).to_pylist()
    assert seconds == epochs == [from_wire(text) for text in texts]
