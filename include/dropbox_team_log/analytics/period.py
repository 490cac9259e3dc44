"""The report's period: whole UTC days, and the same number of days before it to compare with.

A period is given the way people ask for one (`--start`, `--end`, `--days`, or nothing: the last
REPORT_DAYS days up to today), so the CLI, the report DAG and the demo resolve it alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from dropbox_team_log import settings


@dataclass(frozen=True)
class Period:
    """Whole UTC days, `start` and `end` both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The same number of days just before this period."""
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def label(self) -> str:
        return f"{self.start.isoformat()} .. {self.end.isoformat()} ({self.days} days, UTC)"


def resolve_period(
    start: date | None = None,
    end: date | None = None,
    days: int | None = None,
    *,
    today: date | None = None,
) -> Period:
    """The period from any of: start+end, start+days, end+days, days (ending today, UTC)."""
    if start is not None and end is not None and days is not None:
        raise ValueError("give --start and --end, or one of them with --days, not all three")
    if days is not None and days < 1:
        raise ValueError("--days must be at least 1")
    span = timedelta(days=(days or settings.REPORT_DAYS) - 1)
    if start is not None and end is None:
        end = start + span if days is not None else (today or datetime.now(UTC).date())
    if end is None:
        end = today or datetime.now(UTC).date()
    if start is None:
        start = end - span
    return Period(start, end)
