"""A tail poll's rows added to one hour file, only where that cannot count an event twice.

A tail chain delivers each newly visible event once (client/tail.py), so its rows are ADDED to
the hour file their timestamps fall in (the day file of a day stored as one: store.py; no event
id: nothing could be de-duplicated). That is
exact only while the file holds exactly the chain's earlier polls, which its footer's tail tag
(tail_state.TailTag) says. The rule, decided on the footer read under the day's lock (S3: on
the object the conditional PUT replaces):

- tag (this chain, seq <= the committed seq): the file holds every earlier poll and not this
  one: add the rows, tag (chain, this seq), coverage `covered` as of the poll's X.
- no file, and the chain had not reached the hour before this poll (`may_create`): a new file.
- tag (this chain, seq > the committed seq): a crashed or concurrent attempt of this poll
  already added its rows, and this attempt's rows are a superset of them: nothing is added,
  and the tag is cleared (the file's coverage, as of that attempt, stays true), so no later
  poll adds to it either.
- anything else (no tag: a replace write, e.g. the settle, cleared it; another chain's tag;
  no file where the chain had been): nothing is added. That hour gets the events at its next
  refresh or settle, never twice.

Each outcome is one atomic replace of one file (or none), as any write of the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.spool import BatchList
from dropbox_team_log.dataset.store import EventDataset, FileWrite
from dropbox_team_log.dataset.tail_state import TailTag
from dropbox_team_log.timeutil import HOUR, Range, day_of


@dataclass
class TailAdd:
    """What happened to one hour file: rows added (`written`), or why not (`reason`)."""

    written: bool = False
    reason: str = ""
    rows_added: int = 0
    detagged: bool = field(default=False)

    @property
    def skipped(self) -> bool:
        return bool(self.reason)


def add_tail_rows(
    dataset: EventDataset,
    rows: Sequence[pa.RecordBatch],
    *,
    tag: TailTag,
    committed_seq: int,
    covered: Range,
    fetched_at: int,
    may_create: bool,
) -> TailAdd:
    """Add one poll's rows of one hour (`covered`: the part of the hour the chain holds, as of
    `fetched_at`, the poll's X) to that hour's file, by the rule of the module docstring."""
    lo, hi = covered
    day = day_of(lo)
    if not lo < hi or hi > (lo // HOUR + 1) * HOUR:
        raise ValueError(f"covered range [{lo}, {hi}) is not inside one hour")
    new = BatchList(rows)
    new.check_inside([covered])
    out = TailAdd()

    def plan(before: Coverage, found: TailTag | None, exists: bool) -> FileWrite | None:
        out.reason, out.detagged = "", False
        if not exists:
            if not may_create:
                out.reason = "its file is gone"
                return None
            return _adding(before, covered, fetched_at, tag, new, out)
        if found is None:
            out.reason = "replaced since (a refresh or the settle)"
            return None
        if found.chain != tag.chain:
            out.reason = "another chain's file"
            return None
        if found.seq > committed_seq:
            out.reason = "a crashed attempt of this poll added its rows already"
            out.detagged = True
            return FileWrite([], before, add=True, tail=None)  # same rows, tag cleared
        if not new.live_rows():
            return None  # nothing new for an hour that has its file: leave it be
        return _adding(before, covered, fetched_at, tag, new, out)

    # a day-file day stays one file (store.py): the tag then speaks for the whole day
    dataset.rewrite_at(day, lo, new, plan)
    return out


def _adding(
    before: Coverage, covered: Range, fetched_at: int, tag: TailTag, new: BatchList, out: TailAdd
) -> FileWrite:
    coverage, _taken = before.apply([covered], fetched_at)
    out.written, out.rows_added = True, new.live_rows()
    return FileWrite([covered], coverage, add=True, tail=tag)
