"""The body of every sync task: bring one day partition up to date, exactly.

Plan (read the day's coverage) -> fetch the ranges that are due -> transform -> replace those
ranges in the day's file. Both DAGs run this; it is idempotent because what is due depends only on
the dataset's coverage and the run's own time, and a write never lets older data replace newer.

A page costs a network round trip that dwarfs its transform, so a day's due ranges are cut into
time slices read by a few threads at once (`api_concurrency()`): while one thread transforms its
page, the others wait on the API. Each slice has its own cursor and applies its own restart
discards, so the result is the same multiset as one sequential read.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from dropbox_team_log.api_client import CallStats
from dropbox_team_log.dataset import EventDataset
from dropbox_team_log.event_reader import EventReader
from dropbox_team_log.pseudonymise import Pseudonymiser
from dropbox_team_log.transform import events_to_batch, parse_timestamp
from dropbox_team_log.windows import DaySlice, SyncPolicy, iso

log = logging.getLogger(__name__)

#: Concurrent API calls of one day's sync. A team's rate limit is shared by every running task:
#: the total is this times the `dropbox_api` pool's slots, so size the two together.
CONCURRENCY_ENV = "DROPBOX_TEAM_LOG_API_CONCURRENCY"
DEFAULT_API_CONCURRENCY = 4
MAX_API_CONCURRENCY = 8  # the HTTP session's connection pool (transport.build_session)
#: No slice is shorter than this: each slice costs one partly filled page.
MIN_SLICE_SECONDS = 3_600


def api_concurrency() -> int:
    """Concurrent API calls per day sync, from the environment (default 4, within 1..8)."""
    text = os.environ.get(CONCURRENCY_ENV, "").strip()
    if not text:
        return DEFAULT_API_CONCURRENCY
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{CONCURRENCY_ENV}={text!r} is not a whole number") from None
    if not 1 <= value <= MAX_API_CONCURRENCY:
        raise ValueError(f"{CONCURRENCY_ENV}={value} must be within 1..{MAX_API_CONCURRENCY}")
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
    reader: EventReader,
    start: int,
    end: int,
    *,
    team_id: str,
    ingested_at: datetime,
    pseudonymiser: Pseudonymiser | None = None,
) -> list[pa.RecordBatch]:
    """All events of `[start, end)` as record batches, cursor restarts applied."""
    batches, _ = _read(reader, start, end, team_id, ingested_at, pseudonymiser, probe=False)
    return batches


def _read(
    reader: EventReader,
    start: int,
    end: int,
    team_id: str,
    ingested_at: datetime,
    pseudonymiser: Pseudonymiser | None,
    *,
    probe: bool,
) -> tuple[list[pa.RecordBatch], int | None]:
    """Batches of `[start, end)`; with `probe`, stop after the first page that has more after it.

    A probe returns `(batches before t, t)`: the caller reads `[t, end)` itself (t is the newest
    second of the page, so rows of that second that spilled onto the next page are not lost).
    Otherwise, and when the range fits in the pages read, the second item is None.
    """
    batches: list[pa.RecordBatch] = []
    pages = reader.iter_pages(start, end)
    try:
        for page in pages:
            if page.discard_from is not None:
                batches = [_before(batch, page.discard_from) for batch in batches]
            if not page.events:
                continue
            batch = events_to_batch(page.events, team_id=team_id, ingested_at=ingested_at)
            batches.append(pseudonymiser(batch) if pseudonymiser else batch)
            if probe and page.has_more:
                newest = max(event["timestamp"] for event in page.events)  # fixed-width UTC
                cut = parse_timestamp(newest)
                if cut > start:
                    return [_before(batch, cut) for batch in batches], cut
    finally:
        pages.close()
    return batches, None


def split_range(start: int, end: int, pieces: int) -> list[tuple[int, int]]:
    """`[start, end)` cut into `pieces` equal slices, none shorter than MIN_SLICE_SECONDS."""
    n = max(1, min(pieces, (end - start) // MIN_SLICE_SECONDS))
    bounds = [start + (end - start) * i // n for i in range(n)] + [end]
    return list(itertools.pairwise(bounds))


def fetch_ranges(
    reader: EventReader,
    ranges: list[tuple[int, int]],
    *,
    team_id: str,
    ingested_at: datetime,
    concurrency: int,
    pseudonymiser: Pseudonymiser | None = None,
) -> list[pa.RecordBatch]:
    """Every event of `ranges`, with up to `concurrency` API calls in flight.

    Each range is probed with one page first: a range that fits in it costs one call, as
    before. Otherwise the rest is cut into time slices sized by the density the probe saw (twice
    as many as it predicts pages, at most 2 x concurrency, so a busy office-hours slice runs
    alongside quiet ones rather than setting the pace alone), read by a thread pool. Each
    slice has its own reader and a copy of the API client (same HTTP session and token), so
    stats are merged once at the end instead of raced over by threads.
    """
    args = (team_id, ingested_at, pseudonymiser)
    if concurrency <= 1:
        return [b for lo, hi in ranges for b in _read(reader, lo, hi, *args, probe=False)[0]]
    batches: list[pa.RecordBatch] = []
    slices: list[tuple[int, int]] = []
    for lo, hi in ranges:
        got, cut = _read(reader, lo, hi, *args, probe=True)
        batches.extend(got)
        if cut is not None:
            rows = sum(batch.num_rows for batch in got) or 1
            expected_pages = rows * (hi - cut) / (cut - lo) / reader.page_limit
            slices += split_range(cut, hi, min(2 * concurrency, math.ceil(2 * expected_pages)))
    if not slices:
        return batches

    def read(piece: tuple[int, int]) -> tuple[list[pa.RecordBatch], EventReader]:
        api = copy.copy(reader.api)
        api.stats = CallStats()
        own = EventReader(api, page_limit=reader.page_limit, max_restarts=reader.max_restarts)
        return _read(own, *piece, *args, probe=False)[0], own

    with ThreadPoolExecutor(min(concurrency, len(slices)), "dropbox-slice") as pool:
        futures = [pool.submit(read, piece) for piece in slices]
        try:
            for future in futures:
                got, own = future.result()
                batches.extend(got)
                reader.stats.merge(own.stats)
                reader.api.stats.merge(own.api.stats)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return batches


def sync_day(
    *,
    reader: EventReader,
    dataset: EventDataset,
    part: DaySlice,
    as_of: int,
    policy: SyncPolicy,
    team_id: str,
    pseudonymiser: Pseudonymiser | None = None,
    concurrency: int | None = None,
) -> DaySyncReport:
    """Fetch what is due for one day and replace it in the dataset, atomically.

    `concurrency` (default `api_concurrency()`) caps this day's API calls in flight.
    """
    report = DaySyncReport(day=part.day.isoformat())
    ranges = due_ranges(dataset, part, as_of=as_of, policy=policy)
    if not ranges:
        log.info("%s: nothing due at %s (covered and settled or fresh)", part.day, iso(as_of))
        return report
    ingested_at = datetime.now(UTC)
    calls_before = reader.api.stats.calls
    batches = fetch_ranges(
        reader,
        ranges,
        team_id=team_id,
        ingested_at=ingested_at,
        concurrency=api_concurrency() if concurrency is None else concurrency,
        pseudonymiser=pseudonymiser,
    )
    report.ranges = [[iso(start), iso(end)] for start, end in ranges]
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
