"""Team-log events, as the exact JSON bytes the API sent -> Arrow record batches.

The API gives no event id and the details vary by type, so every row keeps the event verbatim
(`raw_event`: the API's own bytes, not a re-serialisation) next to a few flat columns worth
filtering on; the nested parts stay JSON text (the exact bytes of those values) because their
shapes differ between event types (schema inference over them fails).

Speed matters (every event of a day passes through here, on one core): msgspec decodes each
event into GC-free structs of only the flat fields (`client.wire`), one Python loop appends them to
one list per column, and `pa.array` converts each list with its type; timestamps are checked and
parsed by Arrow in one vectorised pass. The JSON columns are built straight from byte buffers (one
join per column), never through Python strings. Errors are only looked for after the fast path
fails, so the happy path pays nothing for naming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dropbox_team_log.client.wire import ABSENT_RAW, NULL_RAW, decode_event
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.schema import (
    AUTHENTICATED,
    EVENT_SCHEMA,
    INGESTED_AT_TYPE,
    JSON_COLUMNS,
    TIMESTAMP_TYPE,
    UNAUTHENTICATED,
    UNKNOWN,
)
from dropbox_team_log.timeutil import from_wire

# Columns `_fill_columns` fills: all but raw_event (the input itself) and the two constants.
_FILLED_FIELDS = EVENT_SCHEMA.names[:-3]
# Filled with `msgspec.Raw` slices of the event bytes (empty for absent or JSON null).
_JSON_FIELDS = frozenset(JSON_COLUMNS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: (actor_user_type, actor_email, actor_display_name, actor_account_id, actor_app_id)
_NO_ACTOR_FIELDS = (None, None, None, None, None)


class MalformedEventError(DropboxTeamLogError, ValueError):
    """An event the API should never send: refusing it beats silently dropping or guessing."""

    def __init__(self, position: int, problem: str) -> None:
        self.position = position
        self.problem = problem
        super().__init__(f"malformed team-log event at position {position}: {problem}")


# --- events -> columns --------------------------------------------------------------------

#: What `events_to_batch` takes as one event: its JSON bytes (or, for tests, a parsed event).
EventBytes = bytes | bytearray | memoryview | msgspec.Raw


def _event_bytes(events: Sequence[object]) -> list[bytes | msgspec.Raw]:
    """Each event as JSON bytes: bytes and `Raw` as they are, anything else (a parsed event, as
    tests and fixtures hold) encoded with orjson, so that every event takes the same path."""
    try:
        return [
            event if event.__class__ is msgspec.Raw or event.__class__ is bytes else _encode(event)
            for event in events
        ]
    except TypeError:  # orjson.JSONEncodeError: not JSON at all (slow path, errors only)
        for position, event in enumerate(events):
            try:
                _encode(event)
            except TypeError as exc:
                raise MalformedEventError(position, f"not a JSON value: {exc}") from None
        raise  # pragma: no cover - the loop raises for the event that failed


def _encode(event: object) -> bytes:
    if isinstance(event, (bytes, bytearray, memoryview, msgspec.Raw)):
        return bytes(event)  # bytearray, memoryview (flat bytes), a bytes or Raw subclass
    return orjson.dumps(event)


def _fill_columns(raws: list[bytes | msgspec.Raw], columns: list[list]) -> None:
    """Append the `_FILLED_FIELDS` values of each event to `columns`, in one pass.

    One list per column (no tuple per row) and GC-free structs: no long-lived tracked objects,
    so the garbage collector stays out of the loop. Timestamps go in as text (`_timestamp_column`
    parses them all at once), the JSON parts as `Raw` slices of the event (empty for absent or
    JSON null).
    """
    (
        timestamp, event_type, description, category, auth_status, actor_type, user_type,
        email, display_name, account_id, app_id, ip_address, country, region, city,
        access_method, involve, context_type, assets, participants, details,
    ) = (column.append for column in columns)  # fmt: skip
    decode = decode_event
    null = NULL_RAW
    absent = ABSENT_RAW
    no_actor = _NO_ACTOR_FIELDS
    for raw in raws:
        event = decode(raw)
        kind = event.event_type
        timestamp(event.timestamp)
        event_type(kind.tag)
        description(kind.description)
        union = event.event_category
        category(None if union is None else union.tag)
        union = event.context
        context = None if union is None else union.tag
        context_type(context)

        # Who acted; auth_status as in docs/data_dictionary.md: anyone the log names is
        # authenticated, an anonymous actor is a signed-out visitor (shared link views), and
        # without an actor only an anonymous context says the visitor was signed out.
        actor = event.actor
        actor_kind = None if actor is None else actor.tag
        actor_type(actor_kind)
        fields = no_actor
        if actor_kind is None:
            auth_status(UNAUTHENTICATED if context == "anonymous" else UNKNOWN)
        elif actor_kind == "anonymous":
            auth_status(UNAUTHENTICATED)
        else:
            auth_status(AUTHENTICATED)
            if actor_kind == "user" or actor_kind == "admin":
                user = actor.user if actor_kind == "user" else actor.admin
                if user is not None:
                    fields = (user.tag, user.email, user.display_name, user.account_id, None)
            elif actor_kind == "app":
                app = actor.app
                if app is not None:
                    fields = (None, None, app.display_name, None, app.app_id)
            elif actor_kind == "reseller":
                fields = (None, actor.reseller_email, actor.reseller_name, None, None)
        user_type(fields[0])
        email(fields[1])
        display_name(fields[2])
        account_id(fields[3])
        app_id(fields[4])

        origin = event.origin
        if origin is None:
            geo = method = None
        else:
            geo = origin.geo_location
            method = origin.access_method
        if geo is None:
            ip_address(None)
            country(None)
            region(None)
            city(None)
        else:
            ip_address(geo.ip_address)
            country(geo.country)
            region(geo.region)
            city(geo.city)
        access_method(None if method is None else method.tag)
        involve(event.involve_non_team_member)

        value = event.assets
        assets(absent if value == null else value)
        value = event.participants
        participants(absent if value == null else value)
        value = event.details
        details(absent if value == null else value)


def _fill_columns_or_name_the_event(raws: list[bytes | msgspec.Raw]) -> list[list]:
    """Column lists of all events; only after a failure is each event looked at on its own."""
    columns: list[list] = [[] for _ in _FILLED_FIELDS]
    try:
        _fill_columns(raws, columns)
    except ValueError:  # msgspec's DecodeError and ValidationError, UnicodeDecodeError
        for position, raw in enumerate(raws):
            problem = _event_problem(raw)
            if problem is not None:
                raise MalformedEventError(position, problem) from None
        raise  # pragma: no cover - _event_problem names the event that failed
    return columns


def _event_problem(raw: bytes | msgspec.Raw) -> str | None:
    """What is wrong with one event, or None (slow path, errors only)."""
    try:
        event = decode_event(raw)
    except msgspec.ValidationError as exc:
        # msgspec shows the key ".tag" as "..tag" in its path; spell it as JSONPath does.
        return str(exc).replace("..tag", '[".tag"]')
    except msgspec.DecodeError as exc:
        return f"not valid JSON: {exc}"
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8: {exc.reason} at byte {exc.start} of a string"
    try:
        from_wire(event.timestamp)
    except ValueError as exc:
        return f"bad timestamp {event.timestamp!r}: {exc}"
    return None


# --- columns -> Arrow -------------------------------------------------------------------------

_MAX_STRING_DATA = 2**31 - 1  # int32 offsets of pa.string()


def _text_column(pieces: list, *, nullable: bool) -> pa.StringArray:
    """A string column from JSON byte strings in one join; an empty piece is a null (a JSON
    value is never empty). Not UTF-8-validated here: see `_check_utf8`."""
    data = b"".join(pieces)
    if len(data) > _MAX_STRING_DATA:
        raise ValueError(
            f"{len(data)} bytes of JSON text is more than one Arrow string column holds: "
            "convert fewer events per batch"
        )
    n = len(pieces)
    lengths = np.fromiter(map(len, pieces), np.int32, n)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    validity = None
    if nullable:
        present = lengths != 0
        if not present.all():
            validity = pa.array(present).buffers()[1]
    return pa.Array.from_buffers(
        pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


# The wire form exactly (RE2's [0-9] is ASCII only), then Arrow's ISO-8601 cast, which refuses
# impossible dates and times (Feb 30, month 13, hour 24, second 60) as `timeutil.from_wire` does.
_WIRE_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
_FIRST_SECOND = -62_135_596_800  # 0001-01-01T00:00:00Z: year 0 is refused, as by datetime


def _timestamp_column(texts: list[str]) -> pa.TimestampArray:
    """Epoch seconds of the events' timestamps: as strict as `timeutil.from_wire`, but one
    vectorised pass instead of a call per event. On a failure, names the first bad event."""
    text = pa.array(texts, pa.string())
    if not texts:
        return text.cast(TIMESTAMP_TYPE)
    try:
        if pc.all(pc.match_substring_regex(text, _WIRE_TIMESTAMP)).as_py():
            seconds = text.cast(TIMESTAMP_TYPE)
            if pc.min(seconds).value >= _FIRST_SECOND:
                return seconds
    except pa.ArrowInvalid:
        pass
    for position, value in enumerate(texts):
        try:
            from_wire(value)
        except ValueError as exc:
            raise MalformedEventError(position, f"bad timestamp {value!r}: {exc}") from None
    raise MalformedEventError(-1, "a timestamp Arrow refused")  # pragma: no cover


def _check_utf8(raw_event: pa.StringArray, raws: list[bytes | msgspec.Raw]) -> None:
    """Refuse invalid UTF-8 anywhere in an event (msgspec checks only the strings it decodes).

    The JSON columns are slices of the events cut at ASCII delimiters, so checking raw_event
    covers them too; the other string columns come from Python str, valid by construction.
    """
    try:
        raw_event.validate(full=True)
    except pa.ArrowInvalid:
        for position, raw in enumerate(raws):
            try:
                bytes(raw).decode()
            except UnicodeDecodeError as exc:
                raise MalformedEventError(
                    position, f"not valid UTF-8: {exc.reason} at byte {exc.start}"
                ) from None
        raise


def _ingested_ms(ingested_at: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (naive ones are ambiguous: refused)."""
    if ingested_at.tzinfo is None or ingested_at.utcoffset() is None:
        raise ValueError("ingested_at must be timezone-aware (UTC)")
    return (ingested_at - _EPOCH) // timedelta(milliseconds=1)


def events_to_batch(
    events: Sequence[EventBytes | dict], *, team_id: str, ingested_at: datetime
) -> pa.RecordBatch:
    """Convert one page (or several) of API events into a batch with `EVENT_SCHEMA`.

    Each event is its JSON bytes as the API sent them (`EventPage.events`: `msgspec.Raw`, or
    bytes); `raw_event` keeps exactly those bytes. A parsed event (a dict, as tests and fixtures
    hold) is encoded with orjson first. Raises MalformedEventError, naming the position and the
    problem, for an event that is not a JSON object, has no valid timestamp or event type tag,
    has a field of an impossible type, or is not valid UTF-8: never drops one silently.
    """
    if not isinstance(team_id, str) or not team_id:
        raise ValueError("team_id must be a non-empty string")
    ingested_ms = _ingested_ms(ingested_at)
    raws = _event_bytes(events)
    columns = _fill_columns_or_name_the_event(raws)
    arrays = []
    for name, values in zip(_FILLED_FIELDS, columns, strict=True):
        if name == "timestamp":
            arrays.append(_timestamp_column(values))
        elif name in _JSON_FIELDS:
            arrays.append(_text_column(values, nullable=True))
        else:
            arrays.append(pa.array(values, type=EVENT_SCHEMA.field(name).type))
    raw_event = _text_column(raws, nullable=False)
    _check_utf8(raw_event, raws)
    arrays.append(raw_event)
    n = len(raws)
    arrays.append(pa.repeat(pa.scalar(team_id, pa.string()), n))
    arrays.append(pa.repeat(pa.scalar(ingested_ms, INGESTED_AT_TYPE), n))
    return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)
