"""The tail: one long-lived cursor chain that delivers every newly visible event once.

Dropbox: "Without end_time, the cursor can be polled with /continue for new events". A chain
starts with get_events(start_time=S) and no end_time, followed to has_more=false: exactly the
events with timestamp >= S visible now. Each later poll is /continue from the chain's last
cursor, followed to has_more=false: the events that became visible since the previous answer,
whatever their timestamp (>= S). Pages come as the range reader's `EventPage`s (same decoding,
retries, empty pages, positions), each with the cursor answered with it: the consumer keeps the
last one, and only once every page of the poll is stored.

A chain that breaks (`reset`, `bad_cursor`, an expired cursor) leaves as `CursorLostError`
carrying the reset timestamp; nothing is restarted here, because what was already delivered
along the chain is the consumer's to reconcile (it starts a new chain).
"""

from __future__ import annotations

from collections.abc import Iterator

from dropbox_team_log.client.api import RouteResponseError
from dropbox_team_log.client.reader import (
    GET_EVENTS,
    GET_EVENTS_CONTINUE,
    EventPage,
    EventReader,
)
from dropbox_team_log.client.wire import EventsPage, PagePosition
from dropbox_team_log.errors import CursorLostError
from dropbox_team_log.timeutil import from_wire

CHAIN_ERRORS = frozenset({"reset", "bad_cursor"})


class TailReader:
    """Starts and polls cursor chains through an `EventReader` (its client, limits and stats).

    `until` bounds the timestamps a page may carry (the API's "now" plus clock skew): it is the
    end of each page's `PagePosition`, what the consumer checks the events against.
    """

    def __init__(self, reader: EventReader) -> None:
        self.reader = reader

    def start(self, start: int, *, until: int) -> Iterator[EventPage]:
        """The pages of a new chain from `start`: every event with timestamp >= start visible
        now. The last page (has_more=false) carries the cursor to poll next."""
        position = PagePosition(start, until, start, 1)
        try:
            first = self.reader.call_page(
                GET_EVENTS, self.reader.query(start, None, None), position
            )
        except RouteResponseError as exc:
            raise exc.as_route_error() from None
        yield from self._guarded(first, position)

    def poll(self, cursor: str, *, start: int, until: int) -> Iterator[EventPage]:
        """The pages of one poll of a chain that started at `start`: /continue from `cursor`
        up to has_more=false (an empty page if nothing new became visible)."""
        position = PagePosition(start, until, start, 1)
        try:
            first = self.reader.call_page(GET_EVENTS_CONTINUE, {"cursor": cursor}, position)
        except RouteResponseError as exc:
            raise _chain_error(exc) from None
        yield from self._guarded(first, position)

    def _guarded(self, first: EventsPage, position: PagePosition) -> Iterator[EventPage]:
        try:
            yield from self.reader.follow(first, position)
        except RouteResponseError as exc:
            raise _chain_error(exc) from None


def _chain_error(exc: RouteResponseError) -> Exception:
    """`reset` / `bad_cursor` end the chain (a typed error); any other is a route error."""
    if exc.tag not in CHAIN_ERRORS:
        return exc.as_route_error()
    reset_at = None
    if exc.tag == "reset" and isinstance(exc.error, dict):
        try:
            reset_at = from_wire(str(exc.error.get("reset")))
        except ValueError:
            reset_at = None
    return CursorLostError(exc.tag, reset_at)
