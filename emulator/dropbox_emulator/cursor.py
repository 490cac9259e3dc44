"""Stateless, signed paging cursors.

A cursor carries everything needed to serve the next page (the query, the visibility window
of its snapshot, the position, a page counter and the latest timestamp returned), so cursors
survive an emulator restart with the same config. The HMAC (keyed by seed + team) makes any
edited or foreign cursor a `bad_cursor`. The page counter makes every cursor different.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import astuple, dataclass

import orjson

_VERSION = 1
_MAC_BYTES = 16


@dataclass(frozen=True)
class Query:
    """The filters of a get_events call; times are epoch seconds, [start, end)."""

    start: int | None
    end: int | None
    category: str | None
    event_type: str | None
    account_id: str | None
    limit: int


@dataclass(frozen=True)
class Window:
    """Which events a snapshot sees: visible by `hi`/`cv_hi`, minus what a previous one saw.

    `lo is None` for a get_events snapshot. A poll of an exhausted cursor (no end_time) moves
    the window forward: lo/cv_lo = the previous hi/cv_hi, so it yields only newly visible
    events. `cv` is the count of custom events added through the control API.
    """

    lo: int | None
    hi: int
    cv_lo: int
    cv_hi: int


@dataclass(frozen=True)
class CursorState:
    query: Query
    window: Window
    day: int  # position: the next event is the k-th visible one of this UTC day
    k: int
    n: int  # pages served so far along this cursor chain
    latest: int | None  # latest event timestamp returned so far (for `reset`)
    done: bool = False  # the last answer had has_more=false


class BadCursor(ValueError):
    """The cursor is not one this emulator issued (or was edited)."""


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, state: CursorState) -> str:
        payload = orjson.dumps(
            [
                _VERSION,
                *astuple(state.query),
                *astuple(state.window),
                state.day,
                state.k,
                state.n,
                state.latest,
                int(state.done),
            ]
        )
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def decode(self, text: object) -> CursorState:
        if not isinstance(text, str) or not text:
            raise BadCursor("empty cursor")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, TypeError) as exc:
            raise BadCursor("not base64") from exc
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        good = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, good):
            raise BadCursor("signature mismatch")
        try:
            fields = orjson.loads(payload)
            if fields[0] != _VERSION:
                raise BadCursor("unknown cursor version")
            q = Query(*fields[1:7])
            w = Window(*fields[7:11])
            day, k, n, latest, done = fields[11:16]
        except (ValueError, TypeError, IndexError) as exc:
            raise BadCursor("malformed cursor") from exc
        return CursorState(q, w, day, k, n, latest, bool(done))
