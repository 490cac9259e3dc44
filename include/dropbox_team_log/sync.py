"""The body of every sync task: bring one day partition up to date, exactly.

Plan (read the day's coverage) -> fetch the ranges that are due -> transform -> replace those
ranges in the day's file. Both DAGs run this; it is idempotent because what is due depends only on
the dataset's coverage and the run's own time, and a write never lets older data replace newer.

A page costs a network round trip that dwarfs its transform, so a day's due ranges are cut into
time slices read by a few threads at once (`api_concurrency()`): while one thread transforms its
page, the others wait on the API. Each slice has its own cursor and applies its own restart
discards, so the result is the same multiset as one sequential read.

Memory stays bounded however big the day: each thread adds its page's batch to the day's
`RowSpool` (a temp file) as soon as it is transformed, and a restart discards through the spool,
so only the rows' timestamps stay in memory until `write_day` streams them into the file.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dropbox_team_log import slicing
from dropbox_team_log.api_client import CallStats
from dropbox_team_log.dataset import DAY_SECONDS, EventDataset, NewRows, RowSpool, in_ranges
from dropbox_team_log.event_reader import EventReader
from dropbox_team_log.pseudonymise import Pseudonymiser
from dropbox_team_log.slicing import DensityProfile
from dropbox_team_log.transform import events_to_batch
from dropbox_team_log.windows import DaySlice, SyncPolicy, iso

log = logging.getLogger(__name__)

Planned = tuple[tuple[int, int], float]  # a slice and the events it is expected to hold

#: Concurrent API calls of one day's sync. A team's rate limit is shared by every running task:
#: the total is this times the `dropbox_api` pool's slots, so size the two together.
CONCURRENCY_ENV = "DROPBOX_TEAM_LOG_API_CONCURRENCY"
DEFAULT_API_CONCURRENCY = 4
MAX_API_CONCURRENCY = 8  # the HTTP session's connection pool (transport.build_session)


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


def _read(
    reader: EventReader,
    start: int,
    end: int,
    team_id: str,
    ingested_at: datetime,
    pseudonymiser: Pseudonymiser | None,
    spool: NewRows,
    *,
    probe: Callable[[int, int], list[Planned]] | None = None,
) -> tuple[list[int], list[Planned]]:
    """Add the rows of `[start, end)` to `spool`; returns the ids of the batches added, and the
    slices still to read.

    With `probe`, the first page that has more after it is a probe: `probe(rows, t)` plans
    `[t, end)` from the rows seen before t (t is the page's newest second, so rows of that
    second that spilled onto the next page are not lost). A plan of several slices stops this
    read (only rows before t are kept) and is returned for the caller to read side by side; a
    plan of one slice is not worth a new query, so the same cursor reads on. A cursor restart
    discards, in the batches this call added, what the reader is about to re-read.
    """
    batch_ids: list[int] = []
    pages = reader.iter_pages(start, end)
    try:
        for page in pages:
            if page.discard_from is not None:
                spool.discard_from(batch_ids, page.discard_from)
            if not page.events:
                continue
            batch = events_to_batch(page.events, team_id=team_id, ingested_at=ingested_at)
            batch_ids.append(spool.add(pseudonymiser(batch) if pseudonymiser else batch))
            if probe is not None and page.has_more:
                cut = _newest_second(batch)
                planned = probe(spool.live_rows(batch_ids), cut) if cut > start else []
                if len(planned) > 1:
                    spool.discard_from(batch_ids, cut)
                    return batch_ids, planned
                probe = None
    finally:
        pages.close()
    return batch_ids, []


def fetch_ranges(
    reader: EventReader,
    ranges: list[tuple[int, int]],
    spool: NewRows,
    *,
    team_id: str,
    ingested_at: datetime,
    concurrency: int,
    pseudonymiser: Pseudonymiser | None = None,
    profile: DensityProfile | None = None,
) -> None:
    """Add every event of `ranges` to `spool`, with up to `concurrency` API calls in flight.

    With a `profile` (where the events are expected, from rows already on disk) the ranges are
    cut into slices of about one page each before the first call, so every worker is busy from
    the start (`slicing.plan`). Without one (or when it foresees a single slice), each range's
    first page is a probe: the rest is cut by the density it saw, or, when one slice would do,
    read on with the same cursor, so a small range costs no more calls than a plain read.
    Slices are read by a thread pool, largest first. Each slice has its own reader
    and a copy of the API client (same HTTP session and token), so stats are merged once at the
    end instead of raced over by threads; each thread adds its pages to the spool as it reads
    them and discards only what its own slice delivered.
    """
    args = (team_id, ingested_at, pseudonymiser, spool)
    if concurrency <= 1:
        for lo, hi in ranges:
            _read(reader, lo, hi, *args)
        return
    plan_slices = partial(slicing.plan, page_limit=reader.page_limit, concurrency=concurrency)
    planned = plan_slices(ranges, profile) if profile is not None else []
    if len(planned) <= 1:  # nothing worth cutting ahead (or no idea): let a first page tell
        planned = []
        for lo, hi in ranges:

            def rest(rows: int, cut: int, lo: int = lo, hi: int = hi) -> list[Planned]:
                expected = max(rows, 1) * (hi - cut) / (cut - lo)  # the probe's density
                return plan_slices([(cut, hi)], DensityProfile.uniform(cut, hi, expected))

            planned += _read(reader, lo, hi, *args, probe=rest)[1]
        planned.sort(key=lambda item: -item[1])
    slices = [piece for piece, _rows in planned]
    if not slices:
        return

    def read(piece: tuple[int, int]) -> EventReader:
        api = copy.copy(reader.api)
        api.stats = CallStats()
        own = EventReader(api, page_limit=reader.page_limit, max_restarts=reader.max_restarts)
        _read(own, *piece, *args)
        return own

    with ThreadPoolExecutor(min(concurrency, len(slices)), "dropbox-slice") as pool:
        futures = [pool.submit(read, piece) for piece in slices]
        try:
            for future in futures:
                own = future.result()
                reader.stats.merge(own.stats)
                reader.api.stats.merge(own.api.stats)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def expected_density(
    dataset: EventDataset, day: date, ranges: list[tuple[int, int]]
) -> DensityProfile | None:
    """Where the due ranges' events are expected, from rows already on disk; None if unknown.

    Time the day file covers is predicted by its own rows (a refetch finds about what it held);
    time it does not cover, by the same hours of yesterday (else tomorrow) when that day's file
    covers them. Only the slicing depends on it: a poor guess costs speed, never rows.
    """
    own = dataset.read_seconds(day)
    parts = [own[0]] if own else []
    need = [r for lo, hi in ranges for r in own[1].uncovered(lo, hi)] if own else list(ranges)
    for step in (-1, 1):
        if not need:
            break
        shift = -step * DAY_SECONDS
        other = dataset.read_seconds(day + timedelta(days=step))
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
    concurrency = api_concurrency() if concurrency is None else concurrency
    # One call at a time never slices: no need to read the neighbours' timestamps.
    profile = expected_density(dataset, part.day, ranges) if concurrency > 1 else None
    with RowSpool() as spool:  # closed (its temp file deleted) on every path
        fetch_ranges(
            reader,
            ranges,
            spool,
            team_id=team_id,
            ingested_at=ingested_at,
            concurrency=concurrency,
            pseudonymiser=pseudonymiser,
            profile=profile,
        )
        report.ranges = [[iso(start), iso(end)] for start, end in ranges]
        result = dataset.write_day(part.day, ranges, spool, fetched_at=as_of)
        report.events = spool.live_rows()
    report.pages = reader.stats.pages
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


def _newest_second(batch: pa.RecordBatch) -> int:
    """The newest timestamp of a batch, in epoch seconds (a page is not sorted)."""
    return int(pc.max(batch.column("timestamp").cast(pa.int64())).as_py())
