"""The body of every sync task: bring one day partition up to date, exactly.

Plan (read the day's coverage) -> fetch the ranges that are due -> transform -> replace those
ranges in the day's file. Both DAGs run this; it is idempotent because what is due depends only on
the dataset's coverage and the run's own time, and a write never lets older data replace newer.

A page costs a network round trip that dwarfs its transform, so a day's due ranges are cut into
time slices read by a few threads at once (`api_concurrency()`), which only wait on the API: one
worker thread transforms the pages they hand over. Each slice has its own cursor and applies its
own restart discards, so the result is the same multiset as one sequential read.

Memory stays bounded however big the day: the worker adds each page's batch to the day's
`RowSpool` (held in memory up to a budget, then a temp file) as soon as it is transformed, and a
restart discards through the spool, so past the budget only the rows' timestamps stay in memory
until `write_day` streams them into the file.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dropbox_team_log.client.api import CallStats
from dropbox_team_log.client.reader import EventPage, EventReader
from dropbox_team_log.dataset.store import DAY_SECONDS, EventDataset, NewRows, RowSpool, in_ranges
from dropbox_team_log.sync import slicing
from dropbox_team_log.sync.planning import DaySlice, SyncPolicy, iso
from dropbox_team_log.sync.slicing import DensityProfile
from dropbox_team_log.transform.events import events_to_batch
from dropbox_team_log.transform.pseudonymise import Pseudonymiser

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


@dataclass
class _PageStore:
    """What a page becomes: its rows in the day's spool, after any restart discard."""

    spool: NewRows
    team_id: str
    ingested_at: datetime
    pseudonymiser: Pseudonymiser | None = None

    def store(self, batch_ids: list[int], page: EventPage) -> pa.RecordBatch | None:
        """Apply the page's discard to the batches its read added (`batch_ids`), then add its
        rows and their batch id; returns the batch (None for an empty page)."""
        if page.discard_from is not None:
            self.spool.discard_from(batch_ids, page.discard_from)
        if not page.events:
            return None
        batch = events_to_batch(page.events, team_id=self.team_id, ingested_at=self.ingested_at)
        if self.pseudonymiser is not None:
            batch = self.pseudonymiser(batch)
        batch_ids.append(self.spool.add(batch))
        return batch


class _PageWorker:
    """Stores pages on one thread of its own, in the order they are handed over.

    The slice threads then only wait on the API: a thread hands its page over and sends its
    next call at once, instead of transforming and spooling first while the API idles. One
    worker keeps up (it stores ~60k events/s; 8 calls in flight bring ~40k) and keeps each
    slice's pages in order, so a restart discard still follows the pages it applies to. The
    queue is short: a page waiting holds its body (~1 MB), and a full queue makes the slice
    threads wait rather than the memory grow. The first error stops the storing; the rest of
    the queue is drained unread so no slice thread blocks, and `finish` raises it.
    """

    def __init__(self, store: _PageStore, depth: int) -> None:
        self._store = store
        self._queue: queue.Queue[tuple[list[int], EventPage] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dropbox-pages", daemon=True)
        self._thread.start()

    def put(self, batch_ids: list[int], page: EventPage) -> None:
        if self._error is not None:
            raise _WorkerFailed
        self._queue.put((batch_ids, page))

    def finish(self) -> None:
        """Wait for every page handed over to be stored; raise the worker's error, if any."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._store.store(*item)
                except BaseException as exc:  # handed to finish(), on the caller's thread
                    self._error = exc
            del item  # a stored page's body can go before the next one arrives


class _WorkerFailed(Exception):
    """The page worker failed: stop reading (finish() raises its error)."""


def _read(
    reader: EventReader,
    start: int,
    end: int,
    store: _PageStore,
    *,
    probe: Callable[[int, int], list[Planned]] | None = None,
) -> tuple[list[int], list[Planned]]:
    """Add the rows of `[start, end)` to the spool; returns the ids of the batches added, and
    the slices still to read.

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
            batch = store.store(batch_ids, page)
            if batch is not None and probe is not None and page.has_more:
                cut = _newest_second(batch)
                planned = probe(store.spool.live_rows(batch_ids), cut) if cut > start else []
                if len(planned) > 1:
                    store.spool.discard_from(batch_ids, cut)
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
    Slices are read by a thread pool, largest first, while one worker thread transforms and
    spools their pages (`_PageWorker`); a restart discards only what its own slice delivered.
    """
    store = _PageStore(spool, team_id, ingested_at, pseudonymiser)
    if concurrency <= 1:  # one call at a time, the next sent while the worker stores a page
        _read_side_by_side(reader, list(ranges), store, 1)
        return
    plan_slices = partial(slicing.plan, page_limit=reader.page_limit, concurrency=concurrency)
    planned = plan_slices(ranges, profile) if profile is not None else []
    if len(planned) <= 1:  # nothing worth cutting ahead (or no idea): let a first page tell
        planned = []
        for lo, hi in ranges:

            def rest(rows: int, cut: int, lo: int = lo, hi: int = hi) -> list[Planned]:
                expected = max(rows, 1) * (hi - cut) / (cut - lo)  # the probe's density
                return plan_slices([(cut, hi)], DensityProfile.uniform(cut, hi, expected))

            planned += _read(reader, lo, hi, store, probe=rest)[1]
        planned.sort(key=lambda item: -item[1])
    slices = [piece for piece, _rows in planned]
    if slices:
        _read_side_by_side(reader, slices, store, concurrency)


def _read_side_by_side(
    reader: EventReader, slices: list[tuple[int, int]], store: _PageStore, concurrency: int
) -> None:
    """Read slices with up to `concurrency` calls in flight; one worker stores the pages.

    Each slice has its own reader and a copy of the API client (same HTTP session and token),
    so stats are merged once at the end instead of raced over by threads.
    """
    worker = _PageWorker(store, depth=concurrency)

    def read(piece: tuple[int, int]) -> EventReader:
        api = copy.copy(reader.api)
        api.stats = CallStats()
        own = EventReader(api, page_limit=reader.page_limit, max_restarts=reader.max_restarts)
        batch_ids: list[int] = []
        pages = own.iter_pages(*piece)
        try:
            for page in pages:
                worker.put(batch_ids, page)
        finally:
            pages.close()
        return own

    try:
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
    except _WorkerFailed:
        pass  # finish() raises the worker's own error
    finally:
        worker.finish()


#: Days whose rows predict a day's, best first. A team's activity follows the working week: a
#: Monday planned from Sunday's rows expects a quarter of its events, so its slices overflow
#: their page and the day takes a round of calls more; a Saturday planned from Friday's is cut
#: into twice the slices it needs. The same weekday a week before (or after) comes first, then
#: yesterday and tomorrow for the first days of a backfill.
NEIGHBOUR_DAYS = (-7, 7, -1, 1)


def expected_density(
    dataset: EventDataset, day: date, ranges: list[tuple[int, int]]
) -> DensityProfile | None:
    """Where the due ranges' events are expected, from rows already on disk; None if unknown.

    Time the day file covers is predicted by its own rows (a refetch finds about what it held);
    time it does not cover, by the same hours of the first `NEIGHBOUR_DAYS` day whose file
    covers them. Only the slicing depends on it: a poor guess costs speed, never rows.
    """
    own = dataset.read_seconds(day)
    parts = [own[0]] if own else []
    need = [r for lo, hi in ranges for r in own[1].uncovered(lo, hi)] if own else list(ranges)
    for step in NEIGHBOUR_DAYS:
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
