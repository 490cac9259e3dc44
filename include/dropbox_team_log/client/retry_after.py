"""A 429's Retry-After, in every form a server sends, as a bounded wait that never crashes.

HTTP allows whole seconds or an HTTP-date; servers also send decimals, and a broken or hostile
one anything. The SDK reads the header with `int()` and the JSON body's `error.retry_after`
through its strict types, so "1.5", a date, a negative number or an unknown reason tag raised out
of a call that only had to wait. Here the header wins (Dropbox always sends it), the body's
field is the fallback, and nonsense means "no advice": the caller waits its default.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from dropbox.auth import RateLimitError_validator
from dropbox.exceptions import RateLimitError
from stone.backends.python_rsrc import stone_serializers
from stone.backends.python_rsrc.stone_validators import ValidationError

from dropbox_team_log.settings import RETRY_AFTER_DEFAULT_SECONDS, RETRY_AFTER_MAX_SECONDS

_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait, from delta-seconds ("2", "1.5", 2) or an HTTP-date (a past date: 0).

    None when `value` is missing or nonsense: negative, not finite, not a number or a date.
    Not bounded above (see `wait_seconds`).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        return seconds if seconds >= 0 and not math.isnan(seconds) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)  # a huge one is inf, which the bound clips
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    try:
        remaining = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, remaining)


def wait_seconds(
    retry_after: Any,
    *,
    default: float = RETRY_AFTER_DEFAULT_SECONDS,
    cap: float = RETRY_AFTER_MAX_SECONDS,
) -> float:
    """How long to wait after a 429: its advice (any form `parse_retry_after` takes) up to
    `cap`, or `default` when there is none or it is nonsense."""
    seconds = parse_retry_after(retry_after)
    return min(default if seconds is None else seconds, cap)


def rate_limit_error(response: requests.Response) -> RateLimitError:
    """A 429 answer as the SDK's RateLimitError; its `backoff` is seconds (float) or None."""
    error_json = _error_object(response)
    seconds = parse_retry_after(response.headers.get("Retry-After"))
    if seconds is None and error_json is not None:
        seconds = parse_retry_after(error_json.get("retry_after"))
    error = None
    if error_json is not None:
        try:
            error = stone_serializers.json_compat_obj_decode(
                RateLimitError_validator, error_json, strict=False
            )
        except ValidationError:
            error = None  # the reason is informative only; the wait is read above
    return RateLimitError(response.headers.get("x-dropbox-request-id"), error, seconds)


def _error_object(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None
