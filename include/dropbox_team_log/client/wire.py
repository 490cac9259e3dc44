"""The wire shape of a team_log page, as msgspec structs.

Why not `orjson.loads`: a page of dicts costs more in the cyclic garbage collector than in the
parse (every dict is GC-tracked), and re-serialising an event for `raw_event` is neither free nor
exact. msgspec validates the JSON once, builds no dicts, and hands back each event as a
zero-copy `msgspec.Raw`: the exact bytes the API sent. Decoding one event then reads only the
flat fields the transform needs; the nested parts whose shape varies by event type (`details`,
`assets`, `participants`) stay `Raw` too.

Rules the types follow:
- Unknown keys are ignored everywhere: new Dropbox fields must not break the pipeline.
- What the API marks optional (or "may be missing due to historical data gap") may be absent
  or JSON null; a present value of the wrong JSON type is refused, not guessed at.
- `timestamp` and a non-empty `event_type[".tag"]` are required: an event without them cannot
  be placed or named. (The timestamp's format is checked by `transform.parse_timestamp`.)
- Every struct is `gc=False`: they hold no reference cycles, and tracked objects by the million
  are what made the GC dominate.

Data that cannot be stored is a `WireDataError`, a permanent error: Dropbox answers the same
query with the same bytes, so asking again cannot help. It names the page (`PagePosition`), the
event and its type when they can be told, and what to do. Covered here: invalid UTF-8, lone
UTF-16 surrogate escapes (`"\\ud800"`: half a character, which no Arrow or Parquet string
holds), and nesting deeper than the decoder's recursion allows. A body that is merely not JSON
(cut short, an HTML error page) is not data: the API client retries it.

A key an event holds twice: the last value wins, as in msgspec, orjson, Python's json and
JavaScript's JSON.parse, so the columns (`timestamp`, `event_type`, ...) hold the last one;
`raw_event` keeps the bytes as sent (DuckDB's JSON functions over it read the first: query the
columns for when and what). The winning timestamp must lie in the range the query asked for
(`sync.fetch` refuses the event otherwise). Dropbox's serialiser writes each key once, and an
outsider controls only string values, which arrive escaped, so no one can add a key; the check
that would refuse repeats costs a scan of every page for nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated

import msgspec
from msgspec import Meta, Raw, Struct, field

from dropbox_team_log.display import visible
from dropbox_team_log.errors import PermanentError
from dropbox_team_log.timeutil import day_of, to_wire

#: A `Raw` field's value when the key is absent. JSON null arrives as `NULL_RAW`; both mean None.
ABSENT_RAW = Raw()
NULL_RAW = Raw(b"null")


class Tagged(Struct, gc=False):
    """Any union value of the API (`{".tag": ..., ...}`); only its tag is read."""

    tag: str | None = field(name=".tag", default=None)


class EventType(Struct, gc=False):
    tag: Annotated[str, Meta(min_length=1)] = field(name=".tag")
    description: str | None = None


class UserLogInfo(Struct, gc=False):
    """team_member / non_team_member / trusted_non_team_member."""

    tag: str | None = field(name=".tag", default=None)
    email: str | None = None
    display_name: str | None = None
    account_id: str | None = None


class AppLogInfo(Struct, gc=False):
    app_id: str | None = None
    display_name: str | None = None


class ActorLogInfo(Struct, gc=False):
    """The actor union, flattened: which member is set depends on `tag`."""

    tag: str | None = field(name=".tag", default=None)
    user: UserLogInfo | None = None
    admin: UserLogInfo | None = None
    app: AppLogInfo | None = None
    reseller_email: str | None = None
    reseller_name: str | None = None


class GeoLocation(Struct, gc=False):
    ip_address: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None


class OriginLogInfo(Struct, gc=False):
    access_method: Tagged | None = None
    geo_location: GeoLocation | None = None


class TeamEvent(Struct, gc=False):
    """The fields of one TeamEvent that become columns; the rest is in the raw bytes."""

    timestamp: str
    event_type: EventType
    event_category: Tagged | None = None
    actor: ActorLogInfo | None = None
    origin: OriginLogInfo | None = None
    involve_non_team_member: bool | None = None
    context: Tagged | None = None
    details: Raw = ABSENT_RAW
    assets: Raw = ABSENT_RAW
    participants: Raw = ABSENT_RAW


class EventsPage(Struct, gc=False):
    """A get_events (or /continue) result: each event kept as its exact JSON bytes.

    `has_more` may be null (read as false); whether a cursor comes with it is the reader's check.
    """

    events: list[Raw]
    cursor: str | None = None
    has_more: bool | None = False


class _EventTypeOnly(Struct, gc=False):
    """Just enough of an event to name its type in an error."""

    event_type: Tagged | None = None


_page_decoder = msgspec.json.Decoder(EventsPage)
_event_decoder = msgspec.json.Decoder(TeamEvent)
_event_type_decoder = msgspec.json.Decoder(_EventTypeOnly)

#: Decode one event's JSON bytes (raises msgspec.ValidationError / DecodeError, or
#: UnicodeDecodeError for invalid UTF-8 inside a string that is read).
decode_event = _event_decoder.decode


def decode_page(body: str | bytes) -> EventsPage:
    """Parse a page body: msgspec.DecodeError if it is not JSON, ValidationError (a subclass)
    if it is JSON but not a page. The events' `Raw` items borrow from `body` (no copy)."""
    return _page_decoder.decode(body)


# --- data that cannot be stored -------------------------------------------------------------


@dataclass(frozen=True)
class PagePosition:
    """Where a page sits in the read of one range: what an error about its data names.

    The events of the page must lie in `[query_start, end)`: the range the page's query asked
    for (`query_start` is `start` unless a cursor restart re-read the range from later on).
    """

    start: int  # the range being read, epoch seconds
    end: int
    query_start: int  # where this page's query starts
    page: int  # 1: the get_events answer of the query; 2, 3...: the /continue answers after it
    restarts: int = 0  # cursor restarts of this range before this page's query

    def describe(self) -> str:
        """`day D (range A..B, page N)`, plus the restart point if the range was re-read."""
        first, last = day_of(self.start), day_of(max(self.start, self.end - 1))
        days = f"day {first}" if first == last else f"days {first}..{last}"
        text = f"{days} (range {to_wire(self.start)}..{to_wire(self.end)}"
        if self.restarts:
            text += f", re-read from {to_wire(self.query_start)} after "
            text += f"{self.restarts} cursor restart{'s' if self.restarts > 1 else ''}"
        return f"{text}, page {self.page})"


class WireDataError(PermanentError):
    """Dropbox sent team-log data that cannot be stored; asking again returns the same bytes."""

    def __init__(
        self,
        position: PagePosition,
        problem: str,
        *,
        event: int | None = None,
        event_type: str | None = None,
    ) -> None:
        self.position = position
        self.problem = problem = visible(problem)  # it may quote the event's own text
        self.event = event
        self.event_type = event_type
        if event is None:
            which = "the page as a whole"
        else:
            kind = "unknown" if event_type is None else repr(visible(event_type)[:100])
            which = f"event at index {event} of the page, event_type {kind}"
        super().__init__(
            f"Dropbox sent team-log data that cannot be stored, for {position.describe()}, "
            f"{which}: {problem}. Asking again returns the same data, so the task is not retried "
            "and nothing of this fetch was written (the day keeps what it held). Report it to "
            "Dropbox support quoting the range and position above; every later run that covers "
            "the day reads it again, so the day heals once the API answers correctly"
        )


def event_type_of(raw: bytes | Raw) -> str | None:
    """An event's type tag, or None when it cannot be told (errors only)."""
    try:
        union = _event_type_decoder.decode(raw).event_type
    except (ValueError, RecursionError):  # msgspec's errors and UnicodeDecodeError
        return None
    return None if union is None else union.tag


def invalid_utf8_event(body: bytes) -> tuple[int | None, str | None]:
    """Which event of a page holds invalid UTF-8, and its type: (None, None) if unknown."""
    try:
        page = decode_page(body)  # no UTF-8 check inside the events: each stays Raw
    except (ValueError, RecursionError):
        return None, None
    for index, raw in enumerate(page.events):
        try:
            bytes(raw).decode()
        except UnicodeDecodeError:
            return index, event_type_of(raw)
    return None, None


#: A UTF-16 surrogate: what a lone `\ud800` escape decodes to (Python's json allows it).
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def page_problem(body: bytes, *, too_deep: bool) -> tuple[int | None, str | None, str] | None:
    """Why msgspec refused a page body: (event index or None, event type or None, problem).

    None when the body is not JSON at all (cut short, an HTML error page): not data, so the
    API client may ask again. `too_deep`: msgspec ran out of recursion depth; a scan of the
    brackets names the deepest event. Otherwise Python's json module is the referee: it accepts
    lone surrogates, so it can say where they are. Slow, and only ever run on a page that
    already failed.
    """
    if too_deep:
        deepest = _deepest_event(body)
        if deepest is None:
            return None, None, _TOO_DEEP
        index, depth, event_type = deepest
        return index, event_type, f"it is nested {depth} levels deep, more than the decoder follows"
    try:
        document = json.loads(body)
    except RecursionError:
        return None, None, _TOO_DEEP
    except ValueError:
        return None
    events = document.get("events") if isinstance(document, dict) else None
    for index, event in enumerate(events if isinstance(events, list) else []):
        if _holds_surrogate(event):
            return index, _tag_of(event), _LONE_SURROGATE
    if _holds_surrogate(document):
        return None, None, _LONE_SURROGATE
    return None, None, "it is JSON this decoder refuses (e.g. NaN or Infinity)"


_TOO_DEEP = "it is nested deeper than the decoder follows"
_LONE_SURROGATE = (
    'a string holds a lone UTF-16 surrogate escape (e.g. "\\ud800"): half a character, which '
    "no text column can store"
)
#: Strings (skipped whole, escapes included) and the bytes that open, close or separate values.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_EVENT_TYPE_TAG = re.compile(rb'"event_type"\s*:\s*\{\s*"\.tag"\s*:\s*"([a-z0-9_]{1,100})"')


def _deepest_event(body: bytes) -> tuple[int, int, str | None] | None:
    """(index, depth, event type if seen) of the most deeply nested event of the page, by a
    scan of its brackets; None if the deepest nesting is not inside an event."""
    depth = deepest_elsewhere = 0
    in_events = after_events_key = False
    items: list[tuple[int, int]] = []  # per event: (depth, start offset)
    for token in _STRUCTURE.finditer(body):
        char = body[token.start()]
        if char in b"[{":
            depth += 1
            if in_events:
                items[-1] = (max(items[-1][0], depth - 2), items[-1][1])
            elif depth == 2 and after_events_key and char == ord("["):
                in_events = True
                items.append((0, token.end()))
            else:
                deepest_elsewhere = max(deepest_elsewhere, depth)
        elif char in b"]}":
            depth -= 1
            if in_events and depth == 1:
                in_events = False
        elif in_events and depth == 2:  # a comma between two events
            items.append((0, token.end()))
        after_events_key = depth == 1 and token.group() == b'"events"'
    if not items:
        return None
    item_depth, index = max((item_depth, -index) for index, (item_depth, _) in enumerate(items))
    index = -index
    if not item_depth or item_depth + 2 < deepest_elsewhere:
        return None
    end = items[index + 1][1] if index + 1 < len(items) else len(body)
    tag = _EVENT_TYPE_TAG.search(body, items[index][1], end)
    return index, item_depth, None if tag is None else tag.group(1).decode()


def _holds_surrogate(value: object) -> bool:
    """Whether a string or key anywhere in a parsed JSON value holds a lone surrogate.

    Iterative: a value may be deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(_SURROGATE.search(key) for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            return True
    return False


def _tag_of(event: object) -> str | None:
    """The event type tag of a parsed event, if it has one."""
    union = event.get("event_type") if isinstance(event, dict) else None
    tag = union.get(".tag") if isinstance(union, dict) else None
    return tag if isinstance(tag, str) else None
