"""The tail step of an incremental run: poll the team's cursor chain, add what is new.

One long-lived cursor chain per team (client/tail.py) delivers every newly visible event once,
whatever its timestamp. Each run, before the day tasks:

- No chain yet: start one at S (the connection's `connected_at`, or, after a broken chain, the
  hour the old one had reached), follow it to has_more=false and REPLACE `[S, X)` in the
  dataset, every hour file of it tagged (chain, 0). X = max(as_of, newest timestamp + 1).
- A chain: claim it in its state (`<root>/_tail/<key>.json`, conditional write), poll it, add
  the delta rows to the hour files their timestamps fall in (`EventDataset.add_tail_rows`, each
  one atomic replace, allowed only while the file's tag says it holds every earlier poll and not
  this one), then commit the new cursor, seq and X. A crash before the commit leaves the state
  as it was: the next poll of the same cursor delivers a superset of what the crashed one had,
  and the hour files that crashed attempt wrote (tag ahead of the state) are left as they are
  but untagged, so nothing is added twice.
- `reset` / `bad_cursor` / an expired cursor: a new chain from the hour floor of the old X; any
  time before it stays with the normal due logic (the day tasks fetch what is uncovered).

Nothing here decides what the day tasks fetch: `tail_cover` (used by `engine.due_ranges`)
reads the committed state and the tags, and calls an hour covered where the chain covers it.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from dropbox_team_log import settings
from dropbox_team_log.client.reader import EventPage, EventReader
from dropbox_team_log.client.tail import TailReader
from dropbox_team_log.dataset.ledger import Coverage, merge_ranges
from dropbox_team_log.dataset.object_store import WriteConflict
from dropbox_team_log.dataset.spool import RowSpool
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.dataset.tail_rows import add_tail_rows
from dropbox_team_log.dataset.tail_state import ChainState, StoredState, TailStateStore, TailTag
from dropbox_team_log.errors import CursorLostError
from dropbox_team_log.sync.fetch import page_rows
from dropbox_team_log.sync.planning import SyncPolicy, split_days
from dropbox_team_log.timeutil import DAY, HOUR, Range, day_of, to_wire
from dropbox_team_log.transform.pseudonymise import Pseudonymiser

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TailCover:
    """What a committed chain covers: each hour file tagged by it (seq <= `seq`) holds every
    event of `[start, as_of)` in its hour that was visible at `as_of`."""

    chain: str
    seq: int
    start: int
    as_of: int

    @classmethod
    def of(cls, state: ChainState) -> TailCover:
        return cls(state.chain, state.seq, state.start, state.as_of)

    def to_xcom(self) -> dict:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: dict | None) -> TailCover | None:
        return None if not value else cls(**value)

    def holds(self, tag: TailTag | None) -> bool:
        return tag is not None and tag.chain == self.chain and tag.seq <= self.seq


def _written_before(coverage: Coverage, lo: int, hi: int, when: int) -> bool:
    """Whether every interval of [lo, hi) in `coverage` was fetched at or before `when`."""
    inside = [f for s, e, f in coverage.intervals if s < hi and e > lo]
    return bool(inside) and max(inside) <= when


def read_cover(states: TailStateStore, key: str) -> TailCover | None:
    """The committed chain of `key`, if any (a claim in progress does not change it)."""
    stored = states.read(key)
    return None if stored is None else TailCover.of(stored.state)


def chain_due(
    due: list[Range],
    tags: dict[Range, TailTag | None],
    cover: TailCover,
    *,
    span: Range,
    as_of: int,
    settle: int,
    refresh: int | None = None,
    coverage: Coverage | None = None,
) -> list[Range]:
    """`due` (the coverage rules' answer for the day span `span`) with the chain's hours out.

    `tags` maps each file's bounds (an hour, or a day file's day) to its tail tag. In a file the
    chain holds, `[start, as_of)` of the chain is covered: not due, until the file's time is
    `settle` old; then the whole file is due once, a replace write that settles it and clears
    its tag. With `refresh`, a held file whose footer (`coverage`) was last written `refresh`
    ago is re-read like any other (a replace write: the refresh knob still works). Anything
    else keeps the coverage rules' answer.
    """
    held: list[Range] = []
    settling: list[Range] = []
    for (lo, hi), tag in tags.items():
        if not cover.holds(tag):
            continue
        if hi + settle <= as_of:
            settling.append((lo, hi))
        elif (
            refresh and coverage is not None and _written_before(coverage, lo, hi, as_of - refresh)
        ):
            continue  # due for its refresh: the coverage rules say how much
        elif max(lo, cover.start) < min(hi, cover.as_of):
            held.append((max(lo, cover.start), min(hi, cover.as_of)))
    if not held and not settling:
        return due
    holes = Coverage.of((a, b, 0) for a, b in merge_ranges(held))
    left = [piece for a, b in due for piece in holes.uncovered(a, b)]
    lo, hi = span[0], min(span[1], as_of)
    settling = [(max(a, lo), min(b, hi)) for a, b in settling]
    return merge_ranges([*left, *((a, b) for a, b in settling if a < b)])


@dataclass
class TailReport:
    """What one tail step did: logged, and returned to XCom (no cursor in here)."""

    key: str
    mode: str = ""  # start | poll | restart | busy (another run polls) | ahead (a replay)
    chain: str = ""
    seq: int = 0
    start: str = ""
    as_of: str = ""
    events: int = 0
    api_calls: int = 0
    hours_written: int = 0
    #: Late rows waiting in the chain's pending file for the next flush (after this step).
    late_pending: int = 0
    #: Hours whose delta was not added (file not the chain's, or a crashed attempt's): each
    #: gets its late events at its next refresh or settle instead.
    hours_skipped: list[str] = field(default_factory=list)

    def to_xcom(self) -> dict:
        return asdict(self)


def tail_step(
    *,
    reader: EventReader,
    dataset: EventDataset,
    states: TailStateStore,
    key: str,
    team_id: str,
    connected_at: int,
    as_of: int,
    policy: SyncPolicy,
    claimant: str,
    pseudonymiser: Pseudonymiser | None = None,
    now: float | None = None,
) -> TailReport:
    """One tail step for `key` (a team): start, poll or restart its chain. See the module."""
    report = TailReport(key=key)
    calls = reader.api.stats.calls
    wall = time.time() if now is None else now
    stored = states.read(key)
    step = _Step(reader, dataset, states, key, team_id, as_of, policy, pseudonymiser, report)
    if stored is None:
        step.start_chain(max(connected_at, as_of - policy.catchup_seconds), "start", None)
    elif as_of < (stored.state.run_as_of or 0):  # a replay of an older run
        report.mode = "ahead"
        log.info(
            "tail %s: the chain was polled by a later run (%s): left alone",
            key,
            to_wire(stored.state.run_as_of or 0),
        )
    else:
        claimed = _claim(states, key, stored, claimant, int(wall))
        if claimed is None:
            report.mode = "busy"
            log.info("tail %s: another run is polling the chain; this run leaves it", key)
        else:
            try:
                step.poll(claimed)
            except BaseException:
                _release(states, key, claimed)
                raise
    report.api_calls = reader.api.stats.calls - calls
    return report


def _claim(
    states: TailStateStore, key: str, stored: StoredState, claimant: str, now: int
) -> StoredState | None:
    """Mark the chain as polled by `claimant`; None if a live claim of another run holds it."""
    state = stored.state
    live = state.claimed_at is not None and now - state.claimed_at < settings.TAIL_CLAIM_SECONDS
    if state.claim not in (None, claimant) and live:
        return None
    claimed = replace(state, claim=claimant, claimed_at=now)
    try:
        version = states.write(key, claimed, expected=stored.version)
    except WriteConflict:
        return None
    return StoredState(claimed, version)


def _release(states: TailStateStore, key: str, claimed: StoredState) -> None:
    """Give up a claim after a failed poll (the state is otherwise as it was); if that fails
    too, the claim lapses after settings.TAIL_CLAIM_SECONDS."""
    idle = replace(claimed.state, claim=None, claimed_at=None)
    try:
        states.write(key, idle, expected=claimed.version)
    except Exception as exc:  # the poll's own error is the one to report
        log.warning("tail %s: claim not released (%s): it lapses by itself", key, exc)


@dataclass
class _Step:
    reader: EventReader
    dataset: EventDataset
    states: TailStateStore
    key: str
    team_id: str
    as_of: int
    policy: SyncPolicy
    pseudonymiser: Pseudonymiser | None
    report: TailReport

    @property
    def until(self) -> int:
        """The latest timestamp a page may carry: the run's time plus a day of clock skew."""
        return self.as_of + DAY

    def start_chain(self, start: int, mode: str, expected: str | None) -> None:
        """Start a chain at `start`: REPLACE [start, X) with its events, tag (chain, 0)."""
        start = min(start, self.as_of)
        chain = uuid.uuid4().hex[:16]
        tag = TailTag(chain, 0)
        tail = TailReader(self.reader)
        with ExitStack() as stack:
            spools: dict[date, RowSpool] = {}
            cursor, newest, events = "", start - 1, 0
            for page in tail.start(start, until=self.until):
                batch = self._rows(page)
                cursor = page.cursor
                if batch is None:
                    continue
                seconds = _seconds(batch)
                newest = max(newest, int(seconds.max()))
                events += batch.num_rows
                for day, part in _split(batch, seconds, DAY).items():
                    if day not in spools:
                        spools[day] = stack.enter_context(RowSpool())
                    spools[day].add(part)
            x = max(self.as_of, newest + 1)
            for span in split_days(start, x):
                rows = spools.get(span.day) or stack.enter_context(RowSpool())
                self.dataset.write_day(span.day, [(span.lo, span.hi)], rows, fetched_at=x, tail=tag)
                self.report.hours_written += (span.hi - 1) // HOUR - span.lo // HOUR + 1
        state = ChainState(
            chain=chain, seq=0, start=start, as_of=x, cursor=cursor, run_as_of=self.as_of
        )
        self.states.write(self.key, state, expected=expected)
        self.states.drop_pending(self.key, keep=None)  # an old chain's late rows: at the settle
        self._done(mode, state, events)
        log.info(
            "tail %s: %s chain %s at %s: %d events, [%s, %s) replaced",
            self.key,
            mode,
            chain,
            to_wire(start),
            events,
            to_wire(start),
            to_wire(x),
        )

    def poll(self, stored: StoredState) -> None:
        state = stored.state
        tail = TailReader(self.reader)
        try:
            pages = list(tail.poll(state.cursor, start=state.start, until=self.until))
        except CursorLostError as exc:
            restart = max((state.as_of // HOUR) * HOUR, self.as_of - self.policy.catchup_seconds)
            log.warning(
                "tail %s: chain %s ended (%s, cursor %s) after poll %d: a new chain starts at "
                "%s; time before it follows the normal due logic",
                self.key,
                state.chain,
                exc.tag,
                state.cursor_tail,
                state.seq,
                to_wire(restart),
            )
            self.start_chain(restart, "restart", stored.version)
            return
        batches = [b for b in (self._rows(page) for page in pages) if b is not None]
        cursor = pages[-1].cursor
        newest = max((int(_seconds(b).max()) for b in batches), default=state.as_of - 1)
        x = max(self.as_of, newest + 1, state.as_of)
        by_hour: dict[int, list[pa.RecordBatch]] = {}
        for batch in batches:
            for hour, part in _split(batch, _seconds(batch), HOUR).items():
                by_hour.setdefault(hour, []).append(part)
        # Late rows (hours before the hot ones) wait in a small pending file and go into
        # their hour files together every TAIL_LATE_FLUSH_SECONDS: one rewrite of each old
        # hour per flush, not one per poll.
        hot = hot_from(state.as_of, x)
        flushed_at = state.start if state.flushed_at is None else state.flushed_at
        flush = x - flushed_at >= settings.TAIL_LATE_FLUSH_SECONDS
        waiting = (
            self.states.read_pending(self.key, state.pending).to_batches() if state.pending else []
        )
        pending = None
        if flush:
            for batch in waiting:
                for hour, part in _split(batch, _seconds(batch), HOUR).items():
                    by_hour.setdefault(hour, []).append(part)
            flushed_at = x
        else:
            late = [part for hour, parts in by_hour.items() if hour < hot for part in parts]
            by_hour = {hour: parts for hour, parts in by_hour.items() if hour >= hot}
            if waiting or late:
                pending = self.states.write_pending(
                    self.key, pa.Table.from_batches([*waiting, *late])
                )
                self.report.late_pending = sum(b.num_rows for b in (*waiting, *late))
        # every hour the chain reaches gets a file (empty if need be): "no file" then means
        # "lost", never "no events yet"
        for hour in range((state.as_of // HOUR) * HOUR, x, HOUR):
            by_hour.setdefault(hour, [])
        tag = TailTag(state.chain, state.seq + 1)
        events = sum(b.num_rows for b in batches)
        for hour, rows in sorted(by_hour.items()):
            outcome = add_tail_rows(
                self.dataset,
                rows,
                tag=tag,
                committed_seq=state.seq,
                covered=(max(hour, state.start), min(hour + HOUR, x)),
                fetched_at=x,
                may_create=hour >= state.as_of,  # the chain had not reached it yet
            )
            if outcome.written:
                self.report.hours_written += 1
            if outcome.skipped and rows:
                self.report.hours_skipped.append(to_wire(hour))
                settled = hour + HOUR + self.policy.settle_seconds <= x
                _log_skip(self.key, hour, outcome.reason, sum(r.num_rows for r in rows), settled)
        committed = replace(
            state,
            seq=tag.seq,
            as_of=x,
            cursor=cursor,
            run_as_of=self.as_of,
            pending=pending,
            flushed_at=flushed_at,
            claim=None,
            claimed_at=None,
        )
        self.states.write(self.key, committed, expected=stored.version)
        self.states.drop_pending(self.key, keep=pending)
        self._done("poll", committed, events)
        log.info(
            "tail %s: poll %d of chain %s: %d events into %d hour files (%d skipped), "
            "covered to %s",
            self.key,
            tag.seq,
            state.chain,
            events,
            self.report.hours_written,
            len(self.report.hours_skipped),
            to_wire(x),
        )

    def _rows(self, page: EventPage):
        return page_rows(page, self.team_id, datetime.now(UTC), self.pseudonymiser)

    def _done(self, mode: str, state: ChainState, events: int) -> None:
        r = self.report
        r.mode, r.chain, r.seq, r.events = mode, state.chain, state.seq, events
        r.start, r.as_of = to_wire(state.start), to_wire(state.as_of)


def hot_from(previous: int, x: int) -> int:
    """The first hour a poll from X `previous` to X `x` adds its rows to at once (older rows
    wait for the flush): the hour the chain had reached, and the one before it only in the
    first settings.TAIL_PREVIOUS_HOUR_SECONDS of an hour (its stragglers; later, a few rows a
    poll would each cost a rewrite of the whole previous hour)."""
    hour = (x // HOUR) * HOUR
    grace = x - hour < settings.TAIL_PREVIOUS_HOUR_SECONDS
    return min((previous // HOUR) * HOUR, hour - HOUR if grace else hour)


def _seconds(batch: pa.RecordBatch) -> np.ndarray:
    return batch.column("timestamp").cast(pa.int64()).to_numpy()


def _split(batch: pa.RecordBatch, seconds: np.ndarray, size: int) -> dict:
    """A batch's rows by the `size`-long bucket (a day as a date, an hour as its start) they
    fall in."""
    buckets = seconds // size
    found = np.unique(buckets).tolist()
    out = {}
    for bucket in found:
        key = day_of(bucket * DAY) if size == DAY else bucket * size
        out[key] = batch if len(found) == 1 else batch.filter(pa.array(buckets == bucket))
    return out


def _log_skip(key: str, hour: int, reason: str, rows: int, settled: bool) -> None:
    day = day_of(hour)
    if settled:
        log.warning(
            "tail %s: %d events for %s hour %s arrived after that hour was settled (Dropbox "
            "promises 24 h): not added, they would be counted twice. Trigger the backfill for "
            "%s to read that day again.",
            key,
            rows,
            day,
            to_wire(hour)[11:13],
            day,
        )
        return
    log.info(
        "tail %s: %d events for hour %s not added (%s): that hour gets them at its next "
        "refresh or settle",
        key,
        rows,
        to_wire(hour),
        reason,
    )
