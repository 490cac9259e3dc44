"""The body of every sync task: bring one day partition up to date, exactly.

Plan (read the day's coverage) -> fetch the ranges that are due -> transform -> replace those
ranges in the day's file. Both DAGs run this; it is idempotent because what is due depends only on
the dataset's coverage and the run's own time, and a write never lets older data replace newer.

Memory stays bounded however big the day: the fetch adds each page's batch to the day's
`RowSpool` (held in memory up to a budget, then a temp file) as soon as it is transformed, and a
restart discards through the spool, so past the budget only the rows' timestamps stay in memory
until `write_day` streams them into the file.

A damaged day file never stops a sync: the dataset moves it aside when a read or the write finds
it (dataset/integrity.py) and the day then reads as uncovered. Found by the plan, the whole span
is fetched; found by the write (a page damaged behind an intact footer), the file holds just the
ranges fetched, and a second pass fetches the rest of the span. Each move is in the report.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from dropbox_team_log import settings
from dropbox_team_log.client.reader import EventReader
from dropbox_team_log.dataset.columns import in_ranges
from dropbox_team_log.dataset.merge import WriteResult
from dropbox_team_log.dataset.spool import RowSpool
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.sync.fetch import fetch_ranges
from dropbox_team_log.sync.planning import DaySpan, SyncPolicy
from dropbox_team_log.sync.slicing import DensityProfile
from dropbox_team_log.sync.tail import TailCover, chain_due
from dropbox_team_log.timeutil import DAY, Range, day_start, to_wire
from dropbox_team_log.transform.pseudonymise import Pseudonymiser

log = logging.getLogger(__name__)


def api_concurrency() -> int:
    """Concurrent API calls per day sync, from the environment (settings.API_CONCURRENCY_ENV)."""
    name = settings.API_CONCURRENCY_ENV
    text = os.environ.get(name, "").strip()
    if not text:
        return settings.DEFAULT_API_CONCURRENCY
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
    if not 1 <= value <= settings.MAX_API_CONCURRENCY:
        raise ValueError(f"{name}={value} must be within 1..{settings.MAX_API_CONCURRENCY}")
    return value


@dataclass
class DaySyncReport:
    """What one day's sync did: logged, and returned to XCom (no secrets in here)."""

    day: str
    ranges: list[list[str]] = field(default_factory=list)
    pages: int = 0
    events: int = 0
    api_calls: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    #: Rows of the files this sync rewrote, before and after, and what rewriting them cost:
    #: the files rewritten and the rows written (a write rewrites only the hours it touches).
    rows_before: int = 0
    rows_after: int = 0
    files_written: int = 0
    rows_written: int = 0
    #: Damaged day files moved aside during this sync (this day's or a neighbour's).
    quarantined: list[dict[str, str]] = field(default_factory=list)

    def to_xcom(self) -> dict:
        return asdict(self)


def due_ranges(
    dataset: EventDataset,
    span: DaySpan,
    *,
    as_of: int,
    policy: SyncPolicy,
    cover: TailCover | None = None,
) -> list[Range]:
    """The ranges of this day span that must be (re)read at `as_of`.

    A day whose file was moved aside as damaged is due whole, not only from where the span
    starts: the first day of a window would otherwise lose its hours before the window for good.
    With the tail's committed `cover`, the hours its chain holds are not due until they settle
    (`tail.chain_due`).
    """
    coverage = dataset.read_coverage(span.day)
    lo = span.lo
    if lo > day_start(span.day) and dataset.has_quarantined(span.day):
        lo = day_start(span.day)
    due = coverage.due_for_refetch(
        lo,
        min(span.hi, as_of),
        as_of=as_of,
        settle=policy.settle_seconds,
        refresh=policy.refresh_seconds,
        batch=policy.settle_batch_seconds,
    )
    if cover is None:
        return due
    return chain_due(
        due,
        dataset.read_tags(span.day),
        cover,
        span=(lo, span.hi),
        as_of=as_of,
        settle=policy.settle_seconds,
        refresh=policy.refresh_seconds,
        coverage=coverage,
    )


#: Days whose rows predict a day's, best first. A team's activity follows the working week: a
#: Monday planned from Sunday's rows expects a quarter of its events, so its slices overflow
#: their page and the day takes a round of calls more; a Saturday planned from Friday's is cut
#: into twice the slices it needs. The same weekday a week before (or after) comes first, then
#: yesterday and tomorrow for the first days of a backfill.
NEIGHBOUR_DAYS = (-7, 7, -1, 1)


def expected_density(
    dataset: EventDataset, day: date, ranges: list[Range]
) -> DensityProfile | None:
    """Where the due ranges' events are expected, from rows already on disk; None if unknown.

    Time the day's files cover is predicted by their own rows (a refetch finds about what they
    held); time they do not cover, by the same hours of the first `NEIGHBOUR_DAYS` day whose
    files cover them. Only the hour files of the due ranges are read, so this costs what is due,
    not what the day holds. Only the slicing depends on it: a poor guess costs speed, never rows.
    """
    own = dataset.read_seconds(day, within=ranges)  # the hours due: the day's size aside
    parts = [own[0][in_ranges(own[0], ranges)]] if own else []
    need = [r for lo, hi in ranges for r in own[1].uncovered(lo, hi)] if own else list(ranges)
    for step in NEIGHBOUR_DAYS:
        if not need:
            break
        shift = -step * DAY
        shifted = [(lo - shift, hi - shift) for lo, hi in need]
        other = dataset.read_seconds(day + timedelta(days=step), within=shifted)
        if other is None or any(other[1].uncovered(lo - shift, hi - shift) for lo, hi in need):
            continue
        moved = other[0] + shift
        parts.append(moved[in_ranges(moved, need)])
        need = []
    if need:
        return None
    return DensityProfile.from_day(np.concatenate(parts) if parts else np.zeros(0, np.int64))


def sync_day(
    *,
    reader: EventReader,
    dataset: EventDataset,
    span: DaySpan,
    as_of: int,
    policy: SyncPolicy,
    team_id: str,
    pseudonymiser: Pseudonymiser | None = None,
    concurrency: int | None = None,
    cover: TailCover | None = None,
) -> DaySyncReport:
    """Fetch what is due for one day and replace it in the dataset, atomically.

    `concurrency` (default `api_concurrency()`) caps this day's API calls in flight; `cover`
    is the tail's committed chain as the plan saw it (its hours are not due until they settle).
    """
    report = DaySyncReport(day=span.day.isoformat())
    moved_before = len(dataset.quarantined)
    calls_before = reader.api.stats.calls
    concurrency = api_concurrency() if concurrency is None else concurrency
    results: list[WriteResult] = []
    # One pass, and a second only if the write found the day file damaged and set it aside:
    # what it held is then due again (a whole day has nothing due once written at `as_of`).
    for _pass in range(2):
        ranges = due_ranges(dataset, span, as_of=as_of, policy=policy, cover=cover)
        if not ranges:
            break
        moved_before_write = len(dataset.quarantined)
        keep_tail_before = cover.start if cover is not None else None
        events, result = _fetch_and_write(
            reader,
            dataset,
            span,
            ranges,
            as_of,
            team_id,
            pseudonymiser,
            concurrency,
            keep_tail_before,
        )
        report.ranges += [[to_wire(start), to_wire(end)] for start, end in ranges]
        report.events += events
        results.append(result)
        if len(dataset.quarantined) == moved_before_write:
            break  # the write kept the day file: nothing it held is due again
    report.quarantined = [q.to_xcom() for q in dataset.quarantined[moved_before:]]
    if not results:
        log.info("%s: nothing due at %s (covered and settled or fresh)", span.day, to_wire(as_of))
        return report
    report.pages = reader.stats.pages
    report.api_calls = reader.api.stats.calls - calls_before
    report.retries = dict(reader.api.stats.retries)
    report.restarts = reader.stats.restarts
    report.rows_before = results[0].rows_before
    report.rows_after = results[-1].rows_after
    report.files_written = sum(r.files_written for r in results)
    report.rows_written = sum(r.rows_written for r in results)
    log.info(
        "%s: ranges %s -> %d events in %d pages (%d API calls, retries %s, cursor restarts %d); "
        "rows of the %d files rewritten %d -> %d",
        span.day,
        report.ranges,
        report.events,
        report.pages,
        report.api_calls,
        report.retries or "none",
        report.restarts,
        report.files_written,
        report.rows_before,
        report.rows_after,
    )
    return report


def _fetch_and_write(
    reader: EventReader,
    dataset: EventDataset,
    span: DaySpan,
    ranges: list[Range],
    as_of: int,
    team_id: str,
    pseudonymiser: Pseudonymiser | None,
    concurrency: int,
    keep_tail_before: int | None,
) -> tuple[int, WriteResult]:
    """Fetch `ranges` of the span's day and replace them in its files: (events, the write).
    A file keeps the tail's tag if all this replaces lies before `keep_tail_before`."""
    # One call at a time never slices: no need to read the neighbours' timestamps.
    profile = expected_density(dataset, span.day, ranges) if concurrency > 1 else None
    with RowSpool() as spool:  # closed (its temp file deleted) on every path
        fetch_ranges(
            reader,
            ranges,
            spool,
            team_id=team_id,
            ingested_at=datetime.now(UTC),
            concurrency=concurrency,
            pseudonymiser=pseudonymiser,
            profile=profile,
        )
        result = dataset.write_day(
            span.day,
            ranges,
            spool,
            fetched_at=as_of,
            keep_tail_before=keep_tail_before,
        )
        return spool.live_rows(), result
