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
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Raw, Struct, field

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


_page_decoder = msgspec.json.Decoder(EventsPage)
_event_decoder = msgspec.json.Decoder(TeamEvent)

#: Decode one event's JSON bytes (raises msgspec.ValidationError / DecodeError, or
#: UnicodeDecodeError for invalid UTF-8 inside a string that is read).
decode_event = _event_decoder.decode


def decode_page(body: str | bytes) -> EventsPage:
    """Parse a page body: msgspec.DecodeError if it is not JSON, ValidationError (a subclass)
    if it is JSON but not a page. The events' `Raw` items borrow from `body` (no copy)."""
    return _page_decoder.decode(body)
