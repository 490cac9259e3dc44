"""Read one `[start, end)` range of the team log: every event the API holds, each exactly once.

Dropbox pages carry no event id and are unsorted within a page, and a cursor may answer `reset`
(restart from a timestamp) or `bad_cursor` (it expired). Instead of de-duplicating (which would
drop genuine byte-identical repeats), the reader tells its consumer which already-delivered
events to forget: a page with `discard_from = t` means "drop what you got with timestamp >= t",
then the reader re-reads `[t, end)` with a fresh query. Consumers can stream pages and still end
with the exact multiset.

Pages are decoded with `event_wire.decode_page`: each event stays the exact JSON bytes the API
sent (no dicts are built; `transform.events_to_batch` reads them directly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import orjson

from dropbox_team_log.client.api import RouteResponseError, TeamApiClient
from dropbox_team_log.client.wire import EventsPage, decode_page
from dropbox_team_log.errors import CursorRestartLimitError, RouteError

log = logging.getLogger(__name__)

GET_EVENTS = "team_log/get_events"
GET_EVENTS_CONTINUE = "team_log/get_events/continue"
WIRE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class EventPage:
    """One API page. `discard_from`, when set, applies *before* this page's events.

    `events` holds each event's exact JSON bytes as the API sent them: bytes-like
    `msgspec.Raw` objects (use `bytes(raw)`, or `memoryview(raw)` for no copy) that borrow
    from the page body. `transform.events_to_batch` takes them as they are; `parsed()`
    gives dicts for the odd caller that needs them.
    """

    events: list[msgspec.Raw]
    discard_from: int | None = None  # epoch seconds
    has_more: bool = False  # more pages of this range follow (lets a consumer stop and split)

    def parsed(self) -> list[dict]:
        """The events as dicts (orjson): for checks and small pages, not the pipeline's path."""
        return [orjson.loads(memoryview(event)) for event in self.events]


@dataclass
class ReadStats:
    pages: int = 0
    empty_pages: int = 0
    events: int = 0
    restarts: int = 0

    def merge(self, other: ReadStats) -> None:
        """Add the counts of a reader that read a slice of the same work."""
        self.pages += other.pages
        self.empty_pages += other.empty_pages
        self.events += other.events
        self.restarts += other.restarts


def to_wire(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(WIRE_FORMAT)


def from_wire(text: str) -> int:
    return int(datetime.strptime(text, WIRE_FORMAT).replace(tzinfo=UTC).timestamp())


class EventReader:
    """Pages team_log/get_events for a range through a `TeamApiClient`."""

    def __init__(
        self, api: TeamApiClient, *, page_limit: int = 1000, max_restarts: int = 10
    ) -> None:
        if not 1 <= page_limit <= 1000:
            raise ValueError("page_limit must be within 1..1000 (Dropbox's bounds)")
        self.api = api
        self.page_limit = page_limit
        self.max_restarts = max_restarts
        self.stats = ReadStats()

    def iter_pages(
        self, start: int, end: int, *, category: str | None = None
    ) -> Iterator[EventPage]:
        """Yield the pages of `[start, end)` (epoch seconds), with discard markers on restarts."""
        if end <= start:
            return
        query_start = start
        discard_from: int | None = None
        restarts = 0
        while True:
            if query_start >= end:  # a reset at the very end: everything before it is in hand
                yield EventPage([], discard_from)
                return
            try:
                result = self.api.call(
                    GET_EVENTS,
                    self._query(query_start, end, category),
                    decode=_page_decoder(GET_EVENTS),
                )
            except RouteResponseError as exc:
                raise exc.as_route_error() from None
            try:
                for page, more in self._follow(result):
                    yield EventPage(page, discard_from, more)
                    discard_from = None
                return
            except RouteResponseError as exc:
                restarts += 1
                self.stats.restarts += 1
                if restarts > self.max_restarts:
                    raise CursorRestartLimitError(
                        f"Dropbox cursor for {to_wire(start)}..{to_wire(end)} failed {restarts} "
                        f"times ({exc.tag}); nothing from this range is kept: the task retries"
                    ) from None
                query_start = self._restart_point(exc, start, end)
                discard_from = query_start
                log.warning("Dropbox cursor %s: re-reading from %s", exc.tag, to_wire(query_start))

    def read_all(self, start: int, end: int, *, category: str | None = None) -> list[dict]:
        """Whole range in memory as dicts, discards applied: for checks and small ranges."""
        events: list[dict] = []
        for page in self.iter_pages(start, end, category=category):
            if page.discard_from is not None:
                events = [e for e in events if from_wire(e["timestamp"]) < page.discard_from]
            events.extend(page.parsed())
        return events

    def _query(self, start: int, end: int, category: str | None) -> dict:
        query: dict = {
            "limit": self.page_limit,
            "time": {"start_time": to_wire(start), "end_time": to_wire(end)},
        }
        if category:
            query["category"] = {".tag": category}
        return query

    def _follow(self, result: EventsPage) -> Iterator[tuple[list[msgspec.Raw], bool]]:
        """Pages of one query: the first result, then /continue with the latest cursor."""
        while True:
            events = result.events
            self.stats.pages += 1
            self.stats.events += len(events)
            if not events:
                self.stats.empty_pages += 1
            has_more = bool(result.has_more)
            yield events, has_more
            if not has_more:
                return
            cursor = result.cursor
            if not cursor:
                raise RouteError(GET_EVENTS_CONTINUE, "malformed_page", "has_more without a cursor")
            try:
                result = self.api.call(
                    GET_EVENTS_CONTINUE,
                    {"cursor": cursor},
                    decode=_page_decoder(GET_EVENTS_CONTINUE),
                )
            except RouteResponseError as exc:
                if exc.tag in ("reset", "bad_cursor"):
                    raise
                raise exc.as_route_error() from None

    @staticmethod
    def _restart_point(exc: RouteResponseError, start: int, end: int) -> int:
        """Where to re-read from: the reset timestamp (clamped), or the range start."""
        if exc.tag == "reset":
            try:
                reset_at = from_wire(str(exc.error.get("reset")))
            except ValueError:
                return start
            return min(max(reset_at, start), end)
        return start


def _page_decoder(route: str) -> Callable[[str | bytes], EventsPage]:
    """The body decoder for `route`'s answers, for `TeamApiClient.call`.

    Not JSON, or JSON but not an object: a ValueError, which the client retries as a bad body
    (as for any route). A JSON object that is not a page (no events list, a has_more that is
    not a boolean, ...): a permanent `malformed_page` route error: asking again will not help.
    """

    def decode(body: str | bytes) -> EventsPage:
        # The events borrow from what is decoded, for as long as the page lives. The SDK hands
        # over a str: with one character beyond Latin-1 (a name, a curly quote) that is 2-4
        # bytes a character, plus the UTF-8 copy CPython caches on it for msgspec; its UTF-8
        # bytes are the page's own size (a third as much for a typical page).
        data = body.encode() if isinstance(body, str) else body
        try:
            return decode_page(data)
        except msgspec.ValidationError as exc:
            try:
                is_object = isinstance(orjson.loads(data), dict)
            except orjson.JSONDecodeError:
                raise exc from None  # msgspec stopped at the shape before the JSON broke
            if not is_object:
                raise
            raise RouteError(route, "malformed_page", f"not an events page: {exc}") from None

    return decode
