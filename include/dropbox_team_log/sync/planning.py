"""Which time the DAGs cover: DAG params and the run's clock -> validated ranges and day spans.

Everything here is pure (no Airflow, no I/O) so bad params fail before any API call and the
planning rules are tested directly. Instants are epoch seconds, ranges half-open.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from dropbox_team_log import settings
from dropbox_team_log.timeutil import DAY, HOUR, day_of, day_start, to_wire


class ParamError(ValueError):
    """A DAG param or setting is wrong; the message says what to fix."""


@dataclass(frozen=True)
class DaySpan:
    """The part `[lo, hi)` of UTC day `day` that one task syncs (one partition each)."""

    day: date
    lo: int
    hi: int

    def to_xcom(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> DaySpan:
        return cls(date.fromisoformat(value["day"]), int(value["lo"]), int(value["hi"]))


@dataclass(frozen=True)
class SyncPolicy:
    """When fetched data counts as final, and how often fresh data is re-read."""

    settle_seconds: int = settings.SETTLE_HOURS * HOUR
    #: None: fresh data is never re-read before it settles (REFRESH_HOURS 0, the default).
    refresh_seconds: int | None = settings.REFRESH_HOURS * HOUR or None
    catchup_seconds: int = settings.CATCHUP_DAYS * DAY
    #: Settled time is fetched in whole batches this long (an hour by default): one fetch
    #: settles an hour once all of it is `settle_seconds` old, not a sliver per run.
    settle_batch_seconds: int = settings.SETTLE_BATCH_HOURS * HOUR

    def to_xcom(self) -> dict[str, Any]:
        """The policy as plan hands it to each sync task (`SyncPolicy(**value)` reads it back)."""
        return asdict(self)


def split_days(lo: int, hi: int) -> list[DaySpan]:
    """Cut `[lo, hi)` at UTC midnights: one span per partition."""
    spans = []
    cursor = lo
    while cursor < hi:
        day = day_of(cursor)
        next_midnight = day_start(day) + DAY
        spans.append(DaySpan(day, cursor, min(hi, next_midnight)))
        cursor = next_midnight
    return spans


def parse_instant(value: Any, name: str) -> int:
    """A param given as a date (`2026-10-01`) or an ISO time (`2026-10-01T06:00:00Z`)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ParamError(
                f"{name}={value!r} is not a date or time: use YYYY-MM-DD or "
                "YYYY-MM-DDTHH:MM:SSZ (UTC)"
            ) from None
    else:
        raise ParamError(f"{name} must be a date or time string, got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.microsecond:
        raise ParamError(f"{name}={value!r}: Dropbox times have second granularity")
    return int(parsed.timestamp())


def backfill_range(
    params: dict[str, Any], *, connected_at: int | None, as_of: int
) -> tuple[int, int]:
    """`[start, end)` of a backfill run from its params.

    Default: the `days` (settings.BACKFILL_DAYS) days before the connection's `connected_at`.
    An explicit start/end pair overrides it. The end never passes the run's own time (the future
    has no events yet).
    """
    start_param, end_param = params.get("start"), params.get("end")
    if bool(start_param) != bool(end_param):
        raise ParamError("give both start and end (an explicit [start, end) range), or neither")
    if start_param:
        start = parse_instant(start_param, "start")
        end = parse_instant(end_param, "end")
        if end <= start:
            raise ParamError(f"end ({end_param}) must be after start ({start_param})")
        if end - start > settings.MAX_BACKFILL_DAYS * DAY:
            raise ParamError(
                f"[start, end) spans more than {settings.MAX_BACKFILL_DAYS} days: split it"
            )
    else:
        days = parse_days(params.get("days", settings.BACKFILL_DAYS))
        if connected_at is None:
            raise ParamError(
                "the connection has no extra.connected_at: reconnect with "
                "`dropbox-team-log connect`, or pass an explicit start and end"
            )
        end = connected_at
        start = end - days * DAY
    end = min(end, as_of)
    if end <= start:
        raise ParamError(f"the range ends at {to_wire(end)}, not after its start {to_wire(start)}")
    return start, end


def parse_days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ParamError(
            f"days must be a whole number from 1 to {settings.MAX_BACKFILL_DAYS}, got {value!r}"
        )
    try:
        days = int(value)
    except ValueError:
        raise ParamError(
            f"days must be a whole number from 1 to {settings.MAX_BACKFILL_DAYS}, got {value!r}"
        ) from None
    if not 1 <= days <= settings.MAX_BACKFILL_DAYS:
        raise ParamError(f"days must be from 1 to {settings.MAX_BACKFILL_DAYS}, got {days}")
    return days


def incremental_range(
    *, connected_at: int | None, as_of: int, policy: SyncPolicy
) -> tuple[int, int]:
    """What one incremental run keeps exact: from just before the connection up to its own time.

    It starts `settle` before `connected_at` so the backfill's last, still-unsettled hours are
    settled here too (late events just before the connection still land); coverage metadata makes
    the overlap harmless. `catchup` bounds how far back gaps are filled after an outage.
    """
    if connected_at is None:
        raise ParamError(
            "the connection has no extra.connected_at: reconnect with `dropbox-team-log connect`"
        )
    lo = max(connected_at - policy.settle_seconds, as_of - policy.catchup_seconds)
    return lo, as_of


def policy_from_params(params: dict[str, Any]) -> SyncPolicy:
    """Settle / refresh hours and catch-up days from params, validated."""

    def number(name: str, default: float, low: float, unit: str) -> float:
        value = params.get(name, default)
        try:
            parsed = float(value)
        except (TypeError, ValueError):
            parsed = math.nan
        if isinstance(value, bool) or not math.isfinite(parsed):
            raise ParamError(f"{name} must be a number of {unit}, got {value!r}")
        if parsed < low:
            raise ParamError(f"{name} must be at least {low:g} {unit}, got {value!r}")
        return parsed

    # below settings.MIN_SETTLE_HOURS, late events could be lost
    settle = number("settle_hours", settings.SETTLE_HOURS, settings.MIN_SETTLE_HOURS, "hours")
    # refresh_hours None or 0: fresh data is never re-read before it settles.
    refresh = (
        None
        if params.get("refresh_hours", settings.REFRESH_HOURS) is None
        else number("refresh_hours", settings.REFRESH_HOURS, 0, "hours")
    )
    catchup = number("catchup_days", settings.CATCHUP_DAYS, 1, "days")
    return SyncPolicy(
        settle_seconds=int(settle * HOUR),
        refresh_seconds=None if not refresh else int(refresh * HOUR),
        catchup_seconds=int(catchup * DAY),
    )


def as_of_from_context(context: dict[str, Any]) -> int:
    """The run's notion of "now": data interval end, else logical date, else run_after.

    Never the wall clock, so a past run replays exactly.
    """
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if value is not None:
            return int(value.timestamp())
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None)
    if run_after is not None:
        return int(run_after.timestamp())
    raise ParamError("the run has no data interval, logical date or run_after to take 'now' from")
