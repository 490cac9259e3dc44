"""Read one `[start, end)` range of the team log: every event the API holds, each exactly once.

Dropbox pages carry no event id and are unsorted within a page, and a cursor may answer `reset`
(restart from a timestamp) or `bad_cursor` (it expired). Instead of de-duplicating (which would
drop genuine byte-identical repeats), the reader tells its consumer which already-delivered
events to forget: a page with `discard_from = t` means "drop what you got with timestamp >= t",
then the reader re-reads `[t, end)` with a fresh query. Consumers can stream pages and still end
with the exact multiset.

Pages are decoded with `client.wire.decode_page`: each event stays the exact JSON bytes the API
sent (no dicts are built; `transform.events.events_to_batch` reads them directly). Every page
carries its `PagePosition`, so an error about its data names the day, the page and the event;
data that cannot be stored (invalid UTF-8, lone surrogates, absurd nesting) is a permanent
`WireDataError`, never retried as a bad body.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import msgspec
import orjson

from dropbox_team_log.client.api import RouteResponseError, TeamApiClient
from dropbox_team_log.client.wire import (
    EventsPage,
    PagePosition,
    WireDataError,
    decode_page,
    invalid_utf8_event,
    page_problem,
)
from dropbox_team_log.errors import CursorRestartLimitError, RouteError
from dropbox_team_log.timeutil import from_wire, to_wire

log = logging.getLogger(__name__)

GET_EVENTS = "team_log/get_events"
GET_EVENTS_CONTINUE = "team_log/get_events/continue"


@dataclass(frozen=True)
class EventPage:
    """One API page. `discard_from`, when set, applies *before* this page's events.

    `events` holds each event's exact JSON bytes as the API sent them: bytes-like
    `msgspec.Raw` objects (use `bytes(raw)`, or `memoryview(raw)` for no copy) that borrow
    from the page body. `transform.events.events_to_batch` takes them as they are. `position`
    says which page of which query this is, and the range its events must lie in.
    """

    events: list[msgspec.Raw]
    position: PagePosition
    discard_from: int | None = None  # epoch seconds
    has_more: bool = False  # more pages of this range follow (lets a consumer stop and split)
    #: The cursor answered with this page (a tail keeps the last one); never logged whole.
    cursor: str = field(default="", repr=False)


@dataclass
class ReadStats:
    """What a reader read; one reader may serve several threads, so counting takes a lock."""

    pages: int = 0
    empty_pages: int = 0
    events: int = 0
    restarts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_page(self, events: int) -> None:
        with self._lock:
            self.pages += 1
            self.events += events
            if not events:
                self.empty_pages += 1

    def count_restart(self) -> None:
        with self._lock:
            self.restarts += 1


class EventReader:
    """Pages team_log/get_events for a range through a `TeamApiClient`.

    Thread-safe: a day's sync reads several ranges side by side through one reader (each
    `iter_pages` call keeps its own cursor; the client and the stats are shared).
    """

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
            position = PagePosition(start, end, query_start, 1, restarts)
            if query_start >= end:  # a reset at the very end: everything before it is in hand
                yield EventPage([], position, discard_from)
                return
            try:
                result = self.call_page(
                    GET_EVENTS, self.query(query_start, end, category), position
                )
            except RouteResponseError as exc:
                raise exc.as_route_error() from None
            try:
                for page in self.follow(result, position):
                    yield replace(page, discard_from=discard_from)
                    discard_from = None
                return
            except RouteResponseError as exc:
                restarts += 1
                self.stats.count_restart()
                if restarts > self.max_restarts:
                    raise CursorRestartLimitError(
                        f"Dropbox cursor for {to_wire(start)}..{to_wire(end)} failed {restarts} "
                        f"times ({exc.tag}); nothing from this range is kept: the task retries"
                    ) from None
                query_start = self._restart_point(exc, start, end)
                discard_from = query_start
                log.warning("Dropbox cursor %s: re-reading from %s", exc.tag, to_wire(query_start))

    def query(self, start: int, end: int | None, category: str | None) -> dict:
        """A get_events argument; without `end` the cursor can be polled (see `client.tail`)."""
        time_arg = {"start_time": to_wire(start)}
        if end is not None:
            time_arg["end_time"] = to_wire(end)
        query: dict = {"limit": self.page_limit, "time": time_arg}
        if category:
            query["category"] = {".tag": category}
        return query

    def follow(self, result: EventsPage, position: PagePosition) -> Iterator[EventPage]:
        """Pages of one query: the first result, then /continue with the latest cursor, up to
        has_more=false. `reset` / `bad_cursor` leave as `RouteResponseError` (the caller
        restarts); any other route error as a `RouteError`."""
        while True:
            events = result.events
            self.stats.count_page(len(events))
            has_more = bool(result.has_more)
            cursor = result.cursor or ""
            yield EventPage(events, position, None, has_more, cursor)
            if not has_more:
                return
            if not cursor:
                raise RouteError(GET_EVENTS_CONTINUE, "malformed_page", "has_more without a cursor")
            position = replace(position, page=position.page + 1)
            try:
                result = self.call_page(GET_EVENTS_CONTINUE, {"cursor": cursor}, position)
            except RouteResponseError as exc:
                if exc.tag in ("reset", "bad_cursor"):
                    raise
                raise exc.as_route_error() from None

    def call_page(self, route: str, arg: dict, position: PagePosition) -> EventsPage:
        """One page call; a body that is not UTF-8 is a `WireDataError` naming the event."""
        try:
            return self.api.call(route, arg, decode=_page_decoder(route, position))
        except UnicodeDecodeError as exc:  # the SDK decodes the body before we see it
            body = exc.object if isinstance(exc.object, bytes) else b""
            raise _not_utf8(route, position, body, exc) from None

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


def _page_decoder(route: str, position: PagePosition) -> Callable[[str | bytes], EventsPage]:
    """The body decoder for `route`'s answers at `position`, for `TeamApiClient.call`.

    Not JSON (cut short, an HTML error page), or JSON but not an object: a ValueError, which
    the client retries as a bad body (as for any route). A JSON object that is not a page (no
    events list, a has_more that is not a boolean, ...): a permanent `malformed_page` route
    error. Complete JSON whose data cannot be stored (a lone surrogate, nesting deeper than
    the decoder follows): a `WireDataError`. Asking again will not help either of the last two.
    """

    def decode(body: str | bytes) -> EventsPage:
        # The events borrow from what is decoded, for as long as the page lives. The SDK hands
        # over a str: with one character beyond Latin-1 (a name, a curly quote) that is 2-4
        # bytes a character, plus the UTF-8 copy CPython caches on it for msgspec; its UTF-8
        # bytes are the page's own size (much less than the str for a typical page).
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
        except UnicodeDecodeError as exc:  # in a string msgspec reads (the cursor)
            raise _not_utf8(route, position, data, exc) from None
        except (msgspec.DecodeError, RecursionError) as exc:
            found = page_problem(data, too_deep=isinstance(exc, RecursionError))
            if found is None:
                raise  # not JSON: the client retries it as a bad body
            event, event_type, problem = found
            raise WireDataError(position, problem, event=event, event_type=event_type) from None

    return decode


def _not_utf8(
    route: str, position: PagePosition, body: bytes, exc: UnicodeDecodeError
) -> WireDataError:
    """The permanent error for an answer that is not UTF-8, naming the event if it is one."""
    event, event_type = invalid_utf8_event(body)
    where = f" at byte {exc.start} of it" if exc.object is body else ""  # else: of one string
    return WireDataError(
        position,
        f"the {route} answer is not valid UTF-8 ({exc.reason}{where})",
        event=event,
        event_type=event_type,
    )
