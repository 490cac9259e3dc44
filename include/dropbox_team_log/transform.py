"""Raw team-log events (as parsed by orjson from an API page) -> Arrow record batches.

The API gives no event id and the details vary by type, so every row keeps the event verbatim
(`raw_event`) next to a few flat columns worth filtering on; the nested parts stay JSON text because
their shapes differ between event types (schema inference over them fails).

Speed matters (a page must go to Parquet at >=100k events/s on one core): one pass of plain Python
builds a tuple per event, `zip(*rows)` transposes, and `pa.array` with explicit types converts each
column. Type errors are only looked for when Arrow refuses a column, so the happy path pays nothing.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa

from dropbox_team_log.errors import DropboxTeamLogError

UTC_TS_S = pa.timestamp("s", tz="UTC")
UTC_TS_MS = pa.timestamp("ms", tz="UTC")

# Column order is the file layout; `_fill_columns` fills its lists in exactly this order.
EVENT_SCHEMA = pa.schema(
    [
        pa.field("timestamp", UTC_TS_S, nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_type_description", pa.string()),
        pa.field("event_category", pa.string()),
        pa.field("auth_status", pa.string(), nullable=False),
        pa.field("actor_type", pa.string()),
        pa.field("actor_user_type", pa.string()),
        pa.field("actor_email", pa.string()),
        pa.field("actor_display_name", pa.string()),
        pa.field("actor_account_id", pa.string()),
        pa.field("actor_app_id", pa.string()),
        pa.field("ip_address", pa.string()),
        pa.field("country", pa.string()),
        pa.field("region", pa.string()),
        pa.field("city", pa.string()),
        pa.field("access_method", pa.string()),
        pa.field("involve_non_team_member", pa.bool_()),
        pa.field("context_type", pa.string()),
        pa.field("assets", pa.string()),
        pa.field("participants", pa.string()),
        pa.field("details", pa.string()),
        pa.field("raw_event", pa.string(), nullable=False),
        pa.field("team_id", pa.string(), nullable=False),
        pa.field("ingested_at", UTC_TS_MS, nullable=False),
    ]
)

# Columns `_fill_columns` fills, i.e. all but the two per-batch constants at the end.
_COLUMN_FIELDS = EVENT_SCHEMA.names[:-2]

AUTHENTICATED = "authenticated"
UNAUTHENTICATED = "unauthenticated"
UNKNOWN = "unknown"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_USER_ACTORS = frozenset({"user", "admin"})
_EMPTY: dict = {}


class MalformedEventError(DropboxTeamLogError, ValueError):
    """An event the API should never send: refusing it beats silently dropping or guessing."""

    def __init__(self, position: int, problem: str) -> None:
        self.position = position
        self.problem = problem
        super().__init__(f"malformed team-log event at position {position}: {problem}")


# --- timestamps ------------------------------------------------------------------------------

_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_TIME_RE = re.compile(r"(\d{2}):(\d{2}):(\d{2})", re.ASCII)
_MAX_CACHED_DATES = 4096
_date_seconds: dict[str, int] = {}
_time_seconds: dict[str, int] = {}


def _parse_date(text: str) -> int:
    """Epoch seconds of a strict `YYYY-MM-DD` at 00:00 UTC (validated once, then cached)."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad date part {text!r}")
    y, mo, d = (int(g) for g in m.groups())
    datetime(y, mo, d)  # range check: raises ValueError for e.g. month 13 or Feb 30
    seconds = calendar.timegm((y, mo, d, 0, 0, 0))
    if len(_date_seconds) >= _MAX_CACHED_DATES:
        _date_seconds.clear()
    _date_seconds[text] = seconds
    return seconds


def _parse_time(text: str) -> int:
    """Seconds since midnight of a strict `HH:MM:SS` (at most 86,400 distinct keys are cached)."""
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad time part {text!r}")
    h, mi, s = (int(g) for g in m.groups())
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"time out of range {text!r}")
    seconds = h * 3600 + mi * 60 + s
    _time_seconds[text] = seconds
    return seconds


def parse_timestamp(s: str) -> int:
    """Epoch seconds of an API timestamp `%Y-%m-%dT%H:%M:%SZ`.

    Two dict look-ups (date part, time part) instead of a strptime per event: pages hold
    thousands of events from a handful of days.
    """
    if s.__class__ is not str or len(s) != 20 or s[10] != "T" or s[19] != "Z":
        raise ValueError(f"timestamp {s!r} is not %Y-%m-%dT%H:%M:%SZ")
    date_part = s[:10]
    time_part = s[11:19]
    day = _date_seconds.get(date_part)
    if day is None:
        day = _parse_date(date_part)
    tod = _time_seconds.get(time_part)
    if tod is None:
        tod = _parse_time(time_part)
    return day + tod


def format_timestamp(epoch_seconds: int) -> str:
    """The API's wire form of an epoch second (inverse of `parse_timestamp`)."""
    return (_EPOCH + timedelta(seconds=epoch_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- events -> columns --------------------------------------------------------------------


def _tag(union: object) -> str | None:
    """The `.tag` of a union value, or None when the value is missing."""
    return union.get(".tag") if union else None  # type: ignore[union-attr]


def _auth_status(actor_type: str | None, context: dict | None) -> str:
    """Who acted, as far as authentication goes (see docs/data_dictionary.md).

    Anyone the log names is authenticated; an anonymous actor is a signed-out visitor (shared
    link views). Without an actor, only an anonymous context says the visitor was signed out.
    """
    if actor_type is None:
        return UNAUTHENTICATED if _tag(context) == "anonymous" else UNKNOWN
    if actor_type == "anonymous":
        return UNAUTHENTICATED
    return AUTHENTICATED


def _actor_fields(actor: dict | None) -> tuple:
    """(actor_type, user_type, email, display_name, account_id, app_id) of an ActorLogInfo."""
    actor_type = _tag(actor)
    if actor_type is None:
        return (None, None, None, None, None, None)
    if actor_type in _USER_ACTORS:
        user = actor.get(actor_type) or _EMPTY  # type: ignore[union-attr]
        return (
            actor_type,
            user.get(".tag"),
            user.get("email"),
            user.get("display_name"),
            user.get("account_id"),
            None,
        )
    if actor_type == "app":
        app = actor.get("app") or _EMPTY  # type: ignore[union-attr]
        return (actor_type, None, None, app.get("display_name"), None, app.get("app_id"))
    if actor_type == "reseller":
        return (
            actor_type,
            None,
            actor.get("reseller_email"),  # type: ignore[union-attr]
            actor.get("reseller_name"),  # type: ignore[union-attr]
            None,
            None,
        )
    return (actor_type, None, None, None, None, None)


def _fill_columns(events: Sequence[dict], columns: list[list]) -> None:
    """Append the `_COLUMN_FIELDS` values of each event to `columns`, in one pass.

    One list per column (no tuple per row): fewer long-lived objects means the garbage
    collector stays out of the loop. Timestamps go in as epoch seconds, JSON parts as bytes.
    """
    (
        timestamp, event_type_, description, category, auth_status, actor_type_, user_type,
        email, display_name, account_id, app_id, ip_address, country, region, city,
        access_method, involve, context_type, assets, participants, details, raw_event,
    ) = (column.append for column in columns)  # fmt: skip
    dumps = orjson.dumps
    for event in events:
        event_type = event["event_type"]
        type_tag = event_type[".tag"]
        if type_tag.__class__ is not str or not type_tag:
            raise ValueError(f"event_type .tag is {type_tag!r}")
        timestamp(parse_timestamp(event["timestamp"]))
        event_type_(type_tag)
        description(event_type.get("description"))
        category(_tag(event.get("event_category")))
        actor = _actor_fields(event.get("actor"))
        context = event.get("context")
        auth_status(_auth_status(actor[0], context))
        actor_type_(actor[0])
        user_type(actor[1])
        email(actor[2])
        display_name(actor[3])
        account_id(actor[4])
        app_id(actor[5])
        origin = event.get("origin") or _EMPTY
        geo = origin.get("geo_location") or _EMPTY
        ip_address(geo.get("ip_address"))
        country(geo.get("country"))
        region(geo.get("region"))
        city(geo.get("city"))
        access_method(_tag(origin.get("access_method")))
        involve(event.get("involve_non_team_member"))
        context_type(_tag(context))
        value = event.get("assets")
        assets(None if value is None else dumps(value))
        value = event.get("participants")
        participants(None if value is None else dumps(value))
        value = event.get("details")
        details(None if value is None else dumps(value))
        raw_event(dumps(event))


def _check_event(position: int, event: object) -> None:
    """Name what is wrong with an event `_fill_columns` refused (slow path, errors only)."""
    if not isinstance(event, dict):
        raise MalformedEventError(position, f"expected a JSON object, got {type(event).__name__}")
    if "timestamp" not in event:
        raise MalformedEventError(position, "no timestamp")
    try:
        parse_timestamp(event["timestamp"])
    except ValueError as exc:
        raise MalformedEventError(position, str(exc)) from None
    event_type = event.get("event_type")
    tag = event_type.get(".tag") if isinstance(event_type, dict) else None
    if not isinstance(tag, str) or not tag:
        raise MalformedEventError(position, f"no event_type .tag (event_type={event_type!r})")
    try:
        _fill_columns([event], [[] for _ in _COLUMN_FIELDS])
    except _ROW_ERRORS as exc:
        raise MalformedEventError(position, f"{type(exc).__name__}: {exc}") from None


_ROW_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


def _columns(events: Sequence[object]) -> list[list]:
    """Column lists of all events; only after a failure is each event looked at on its own."""
    columns: list[list] = [[] for _ in _COLUMN_FIELDS]
    try:
        _fill_columns(events, columns)  # type: ignore[arg-type]
    except _ROW_ERRORS:
        for position, event in enumerate(events):
            _check_event(position, event)
        raise  # pragma: no cover - _check_event raises for the event that failed
    return columns


# Filled with orjson output, which is valid UTF-8 by construction: no need to validate it again.
_JSON_COLUMNS = frozenset({"assets", "participants", "details", "raw_event"})


def _column(name: str, values: list) -> pa.Array:
    """One typed Arrow column; on a type clash, find and name the offending event."""
    field = EVENT_SCHEMA.field(name)
    if name in _JSON_COLUMNS:
        return pa.array(values, type=pa.binary()).view(pa.string())
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        for position, value in enumerate(values):
            try:
                pa.array([value], type=field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise MalformedEventError(
                    position, f"{name} has unexpected value {value!r}"
                ) from None
        raise MalformedEventError(-1, f"{name}: {exc}") from exc  # pragma: no cover


def _ingested_ms(ingested_at: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (naive ones are ambiguous: refused)."""
    if ingested_at.tzinfo is None or ingested_at.utcoffset() is None:
        raise ValueError("ingested_at must be timezone-aware (UTC)")
    return (ingested_at - _EPOCH) // timedelta(milliseconds=1)


def events_to_batch(
    events: Sequence[dict], *, team_id: str, ingested_at: datetime
) -> pa.RecordBatch:
    """Convert one page (or several) of API events into a batch with `EVENT_SCHEMA`.

    Raises MalformedEventError for an event that is not an object, has no valid timestamp or
    no event type tag, or whose fields have impossible types: never drops one silently.
    """
    if not isinstance(team_id, str) or not team_id:
        raise ValueError("team_id must be a non-empty string")
    ingested_ms = _ingested_ms(ingested_at)
    columns = _columns(events)
    arrays = [_column(name, values) for name, values in zip(_COLUMN_FIELDS, columns, strict=True)]
    n = len(columns[0])
    arrays.append(pa.repeat(pa.scalar(team_id, pa.string()), n))
    arrays.append(pa.repeat(pa.scalar(ingested_ms, UTC_TS_MS), n))
    return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)
