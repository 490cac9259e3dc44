"""The emulator's clock and the wire time format.

Emulator time is decoupled from the wall clock so tests can freeze it, jump it forward to make
late events appear, or let access tokens expire, all deterministically.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

WIRE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def floor_second(value: datetime) -> datetime:
    """Aware UTC datetime at second granularity (naive input is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def format_ts(epoch: int) -> str:
    """Epoch seconds -> `%Y-%m-%dT%H:%M:%SZ`."""
    return time.strftime(WIRE_FORMAT, time.gmtime(epoch))


def parse_wire_ts(text: str) -> int:
    """Strict wire timestamp (`2026-01-02T03:04:05Z`) -> epoch seconds; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected a timestamp string, got {type(text).__name__}")
    return int(datetime.strptime(text, WIRE_FORMAT).replace(tzinfo=UTC).timestamp())


def parse_iso(text: str) -> int:
    """Lenient ISO-8601 (control API input) -> epoch seconds, floored; naive means UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return int(floor_second(value).timestamp())


class Clock:
    """Emulator "now" in epoch seconds: frozen, or running at `rate` x wall time."""

    def __init__(self, start: int, rate: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._base = start
        self._rate = rate
        self._wall0 = time.monotonic()

    def _now_locked(self) -> int:
        if not self._rate:
            return self._base
        return self._base + int((time.monotonic() - self._wall0) * self._rate)

    def now(self) -> int:
        with self._lock:
            return self._now_locked()

    def set(self, epoch: int) -> int:
        with self._lock:
            self._base = int(epoch)
            self._wall0 = time.monotonic()
            return self._base

    def advance(self, seconds: int) -> int:
        with self._lock:
            self._base = self._now_locked() + int(seconds)
            self._wall0 = time.monotonic()
            return self._base
