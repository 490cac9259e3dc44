"""The body of every sync task: bring one day partition up to date, exactly.

Plan (read the day's coverage) -> fetch the ranges that are due -> transform -> replace those
ranges in the day's file. Both DAGs run this; it is idempotent because what is due depends only on
the dataset's coverage and the run's own time, and a write never lets older data replace newer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from dropbox_team_log.dataset import EventDataset
from dropbox_team_log.event_reader import EventReader
from dropbox_team_log.transform import events_to_batch
from dropbox_team_log.windows import DaySlice, SyncPolicy, iso

log = logging.getLogger(__name__)


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
    rows_before: int = 0
    rows_after: int = 0

    def to_xcom(self) -> dict:
        return asdict(self)


def due_ranges(
    dataset: EventDataset, part: DaySlice, *, as_of: int, policy: SyncPolicy
) -> list[tuple[int, int]]:
    """The ranges of this day slice that must be (re)read at `as_of`."""
    coverage = dataset.read_coverage(part.day)
    return coverage.due_for_refetch(
        part.lo,
        min(part.hi, as_of),
        as_of=as_of,
        settle=policy.settle_seconds,
        refresh=policy.refresh_seconds,
    )


def fetch_range(
    reader: EventReader, start: int, end: int, *, team_id: str, ingested_at: datetime
) -> list[pa.RecordBatch]:
    """All events of `[start, end)` as record batches, cursor restarts applied."""
    batches: list[pa.RecordBatch] = []
    for page in reader.iter_pages(start, end):
        if page.discard_from is not None:
            batches = [_before(batch, page.discard_from) for batch in batches]
        if page.events:
            batches.append(events_to_batch(page.events, team_id=team_id, ingested_at=ingested_at))
    return batches


def sync_day(
    *,
    reader: EventReader,
    dataset: EventDataset,
    part: DaySlice,
    as_of: int,
    policy: SyncPolicy,
    team_id: str,
) -> DaySyncReport:
    """Fetch what is due for one day and replace it in the dataset, atomically."""
    report = DaySyncReport(day=part.day.isoformat())
    ranges = due_ranges(dataset, part, as_of=as_of, policy=policy)
    if not ranges:
        log.info("%s: nothing due at %s (covered and settled or fresh)", part.day, iso(as_of))
        return report
    ingested_at = datetime.now(UTC)
    batches: list[pa.RecordBatch] = []
    calls_before = reader.api.stats.calls
    for start, end in ranges:
        batches.extend(fetch_range(reader, start, end, team_id=team_id, ingested_at=ingested_at))
        report.ranges.append([iso(start), iso(end)])
    result = dataset.write_day(part.day, ranges, batches, fetched_at=as_of)
    report.pages = reader.stats.pages
    report.events = sum(batch.num_rows for batch in batches)
    report.api_calls = reader.api.stats.calls - calls_before
    report.retries = dict(reader.api.stats.retries)
    report.restarts = reader.stats.restarts
    report.rows_before = result.rows_before
    report.rows_after = result.rows_after
    log.info(
        "%s: ranges %s -> %d events in %d pages (%d API calls, retries %s, cursor restarts %d); "
        "partition rows %d -> %d",
        part.day,
        report.ranges,
        report.events,
        report.pages,
        report.api_calls,
        report.retries or "none",
        report.restarts,
        report.rows_before,
        report.rows_after,
    )
    return report


def _before(batch: pa.RecordBatch, cutoff: int) -> pa.RecordBatch:
    """Rows strictly before `cutoff` (epoch seconds): what survives a cursor restart."""
    limit = pa.scalar(cutoff, pa.timestamp("s", tz="UTC"))
    return batch.filter(pc.less(batch.column("timestamp"), limit))
