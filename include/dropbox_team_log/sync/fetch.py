"""Reading a day's due ranges side by side: slices in flight at once, pages stored in order.

A page costs a network round trip that dwarfs its transform, so the due ranges are cut into time
slices (`slicing.plan`) read by a few threads at once, which only wait on the API: one worker
thread transforms the pages they hand over and adds them to the day's spool. Each slice reads
with its own cursor and applies its own restart discards, so the result is the same multiset as
one sequential read.

Every event must lie in the range its page's query asked for (Dropbox answers `[start_time,
end_time)`): one outside it (1970, the far future, a `timestamp` the query did not ask for) is
a `WireDataError` naming the event, the page and the range, and nothing of the day is written.
So is an event the transform refuses (not an object, no event type, a bad timestamp...).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from dropbox_team_log.client.reader import EventPage, EventReader
from dropbox_team_log.client.wire import WireDataError, event_type_of
from dropbox_team_log.dataset.spool import NewRows
from dropbox_team_log.sync import slicing
from dropbox_team_log.sync.slicing import DensityProfile
from dropbox_team_log.timeutil import Range, to_wire
from dropbox_team_log.transform.events import MalformedEventError, events_to_batch
from dropbox_team_log.transform.pseudonymise import Pseudonymiser

Planned = tuple[Range, float]  # a slice and the events it is expected to hold


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
        batch = page_rows(page, self.team_id, self.ingested_at, self.pseudonymiser)
        if batch is not None:
            batch_ids.append(self.spool.add(batch))
        return batch


def page_rows(
    page: EventPage,
    team_id: str,
    ingested_at: datetime,
    pseudonymiser: Pseudonymiser | None = None,
) -> pa.RecordBatch | None:
    """A page's rows as stored (pseudonymised if configured); None for an empty page. An event
    that cannot be stored, or lies outside its page's range, is a `WireDataError` naming it."""
    if not page.events:
        return None
    batch = _page_batch(page, team_id, ingested_at)
    return batch if pseudonymiser is None else pseudonymiser(batch)


def _page_batch(page: EventPage, team_id: str, ingested_at: datetime) -> pa.RecordBatch:
    """A page's rows; an event that cannot be stored, or lies outside the range its query
    asked for, is a `WireDataError` naming it."""
    at = page.position
    try:
        batch = events_to_batch(page.events, team_id=team_id, ingested_at=ingested_at)
    except MalformedEventError as exc:
        event = exc.position if 0 <= exc.position < len(page.events) else None
        kind = None if event is None else event_type_of(page.events[event])
        raise WireDataError(at, exc.problem, event=event, event_type=kind) from None
    except RecursionError:  # pragma: no cover - the page decoder refuses such nesting first
        raise WireDataError(at, "it is nested deeper than the decoder follows") from None
    if not len(batch):
        return batch
    bounds = pc.min_max(batch.column("timestamp"))
    if at.query_start <= bounds["min"].value and bounds["max"].value < at.end:
        return batch
    seconds = batch.column("timestamp").cast(pa.int64())
    inside = pc.and_(pc.greater_equal(seconds, at.query_start), pc.less(seconds, at.end))
    event = int(pc.index(inside, False).as_py())
    raise WireDataError(
        at,
        f"its timestamp {to_wire(seconds[event].as_py())} lies outside the range the query "
        f"asked for, {to_wire(at.query_start)}..{to_wire(at.end)} (Dropbox answers only "
        "events of the requested range, so this timestamp is wrong)",
        event=event,
        event_type=batch.column("event_type")[event].as_py(),
    )


class _PageWorker:
    """Stores pages on one thread of its own, in the order they are handed over.

    The slice threads then only wait on the API: a thread hands its page over and sends its
    next call at once, instead of transforming and spooling first while the API idles. One
    worker keeps up (it stores pages faster than the most calls in flight bring them) and keeps
    each slice's pages in order, so a restart discard still follows the pages it applies to. The
    queue is short: a page waiting holds its whole body, and a full queue makes the slice
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
    ranges: list[Range],
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
    reader: EventReader, slices: list[Range], store: _PageStore, concurrency: int
) -> None:
    """Read slices with up to `concurrency` calls in flight; one worker stores the pages.

    The threads share the reader (and so its API client, token and stats); each slice keeps its
    own cursor and its own list of batches for restart discards.
    """
    worker = _PageWorker(store, depth=concurrency)

    def read(piece: Range) -> None:
        batch_ids: list[int] = []
        pages = reader.iter_pages(*piece)
        try:
            for page in pages:
                worker.put(batch_ids, page)
        finally:
            pages.close()

    try:
        with ThreadPoolExecutor(min(concurrency, len(slices)), "dropbox-slice") as pool:
            futures = [pool.submit(read, piece) for piece in slices]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    except _WorkerFailed:
        pass  # finish() raises the worker's own error
    finally:
        worker.finish()


def _newest_second(batch: pa.RecordBatch) -> int:
    """The newest timestamp of a batch, in epoch seconds (a page is not sorted)."""
    return int(pc.max(batch.column("timestamp").cast(pa.int64())).as_py())
