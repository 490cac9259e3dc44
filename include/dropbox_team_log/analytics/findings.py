"""Findings: the detections evaluated over what changed, each new finding written once.

The findings dataset sits beside the events, outside their glob (pyarrow and Spark skip `_`):

    <root>/_findings/findings-<raised at>-<random>.parquet   what one evaluation raised
    <root>/_findings/_state.json    the day-file versions evaluated, the files already alerted

`run_detections` (the detections DAG, `dropbox-team-log detect --changed --write`):
1. lists the day files with their versions (size and mtime, or the S3 ETag) and compares them
   with the state: the days written since the last evaluation (every day, the first time);
2. evaluates the detections over the rows from the earliest changed day on, with
   `history_days` of rows before it as context, and keeps the findings that end on or after
   that day (earlier ones saw unchanged data: they were evaluated before);
3. drops the findings whose id the dataset already holds (a re-read day, or late events that
   add to a pattern already raised) and writes the rest as one file;
4. records the versions it evaluated.
A late event that completes a pattern rewrites its day, so step 1 sees the day and step 3 a new
id: it is raised when it arrives. Alerts (the DAG's notify task) send each findings file not yet
alerted and then mark it: every finding reaches people at least once and is raised once.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dropbox_team_log import settings
from dropbox_team_log.analytics import views
from dropbox_team_log.analytics.detections import (
    ALL_VIEW,
    BY_NAME,
    DetectionConfig,
    register,
)
from dropbox_team_log.analytics.period import Period
from dropbox_team_log.analytics.report_data import Table
from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.files import (
    lock_if_local,
    read_text,
    write_atomically,
    write_text,
)
from dropbox_team_log.dataset.versions import day_file_versions
from dropbox_team_log.schema import PARTITION_KEY

_TIME = pa.timestamp("ms", tz="UTC")
#: A finding as stored: the detect_* view's columns, plus when it was raised.
FINDINGS_SCHEMA = pa.schema(
    [
        pa.field("finding_id", pa.string(), nullable=False),
        pa.field("detection", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("technique", pa.string()),
        pa.field("team_id", pa.string()),
        pa.field("first_seen", _TIME),
        pa.field("last_seen", _TIME),
        pa.field("actor", pa.string()),
        pa.field("asset", pa.string()),
        pa.field("events", pa.int64()),
        pa.field("evidence", pa.string()),
        pa.field("raised_at", _TIME, nullable=False),
    ]
)
STATE_FILE = "_state.json"
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


@dataclass
class Evaluation:
    """The findings of one evaluation, and what it read."""

    rows: list[dict[str, Any]]
    events: int
    seconds: float


def evaluate(
    root: str,
    cfg: DetectionConfig | None = None,
    *,
    since: date | None = None,
    until: date | None = None,
    detections: Sequence[str] | None = None,
) -> Evaluation:
    """Every finding that ends on or after `since` and starts on or before `until` (days, UTC).

    Rows from `history_days` before `since` are read as context (a sign-in's usual countries).
    """
    cfg = cfg or DetectionConfig()
    started = time.perf_counter()
    con = views.connect(root)
    try:
        lo = since - timedelta(days=cfg.history_days) if since else None
        register(con, cfg, days=(lo, until))
        events = _count_events(con, lo, until)
        names = list(detections) if detections else list(BY_NAME)
        unknown = sorted(set(names) - set(BY_NAME))
        if unknown:
            raise ValueError(f"unknown detections {unknown}; known: {', '.join(BY_NAME)}")
        query = f"SELECT * FROM {ALL_VIEW} WHERE list_contains(?, detection)"  # ruff: ignore[hardcoded-sql-expression] (a constant)
        params: list[Any] = [names]
        if since is not None:
            query += " AND last_seen >= ?"
            params.append(_midnight(since))
        if until is not None:
            query += " AND first_seen < ?"
            params.append(_midnight(until + timedelta(days=1)))
        result = con.execute(query + " ORDER BY first_seen, detection, finding_id", params)
        columns = [d[0] for d in result.description]
        rows = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    finally:
        con.close()
    return Evaluation(rows, events, time.perf_counter() - started)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _count_events(con: Any, lo: date | None, hi: date | None) -> int:
    query, params = "SELECT count(*) FROM events WHERE true", []
    if lo is not None:
        query, params = query + f" AND {PARTITION_KEY} >= ?", [*params, lo]
    if hi is not None:
        query, params = query + f" AND {PARTITION_KEY} <= ?", [*params, hi]
    return int(con.execute(query, params).fetchone()[0])


def _is_findings_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(".")


class FindingsStore:
    """The findings dataset of one root: its files, the ids they hold, the state."""

    def __init__(self, root: str) -> None:
        self.root = str(root).rstrip("/")
        self.fs, base = object_store.filesystem(self.root)
        self.folder = f"{base.rstrip('/')}/{settings.FINDINGS_DIR}"
        self.url = f"{self.root}/{settings.FINDINGS_DIR}"

    def lock(self) -> contextlib.AbstractContextManager:
        """One evaluation or alerting at a time (local roots; an object store has one writer,
        the DAG, whose runs never overlap)."""
        return lock_if_local(self.fs, f"{self.folder}/.lock")

    def files(self) -> list[str]:
        """The findings files, oldest first (their names start with the time they were raised)."""
        try:
            names = self.fs.ls(self.folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _is_findings_file(n.rsplit("/", 1)[-1]))

    def read(self, files: Sequence[str] | None = None) -> pa.Table:
        """The findings of `files` (default: all), as stored."""
        tables = [
            pq.read_table(f, filesystem=self.fs, schema=FINDINGS_SCHEMA)
            for f in (self.files() if files is None else files)
        ]
        return pa.concat_tables(tables) if tables else FINDINGS_SCHEMA.empty_table()

    def ids(self) -> set[str]:
        return set(self.read().column("finding_id").to_pylist())

    def add(self, rows: Sequence[dict[str, Any]], raised_at: datetime) -> list[dict[str, Any]]:
        """Write the rows whose finding_id is new as one file; returns them (raised_at set)."""
        known = self.ids()
        new: list[dict[str, Any]] = []
        for row in rows:
            if row["finding_id"] not in known:
                known.add(row["finding_id"])
                new.append({**row, "raised_at": raised_at})
        if new:
            name = f"findings-{raised_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}.parquet"
            self._write(f"{self.folder}/{name}", pa.Table.from_pylist(new, FINDINGS_SCHEMA))
        return new

    def _write(self, path: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        if object_store.is_object_store(self.fs):
            self.fs.pipe_file(path, sink.getvalue())  # one PUT: atomic
            return
        with write_atomically(self.fs, path) as out:
            out.write(sink.getvalue())

    def state(self) -> dict[str, Any]:
        text = read_text(f"{self.url}/{STATE_FILE}")
        return {"day_files": {}, "notified": []} if text is None else json.loads(text)

    def save_state(self, state: dict[str, Any]) -> None:
        write_text(f"{self.url}/{STATE_FILE}", json.dumps(state, indent=1, sort_keys=True))

    def pending(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(file, findings) of each findings file not alerted yet, oldest first."""
        done = set(self.state().get("notified", []))
        out = []
        for path in self.files():
            name = path.rsplit("/", 1)[-1]
            if name not in done:
                out.append((name, self.read([path]).to_pylist()))
        return out

    def mark_notified(self, name: str) -> None:
        state = self.state()
        state["notified"] = sorted({*state.get("notified", []), name})
        self.save_state(state)


@dataclass
class RunResult:
    """What `run_detections` did (logged and returned to XCom: counts and ids, no evidence)."""

    changed_days: list[str] = field(default_factory=list)
    since: str | None = None
    events: int = 0
    findings: int = 0
    new: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_xcom(self) -> dict[str, Any]:
        out = asdict(self)
        out["new"] = [{k: str(r[k]) for k in ("finding_id", "detection")} for r in self.new]
        return out


def run_detections(root: str, cfg: DetectionConfig, *, now: datetime) -> RunResult:
    """Evaluate the days written since the last run; write the new findings (raised at `now`)."""
    store = FindingsStore(root)
    with store.lock():
        state = store.state()
        versions = day_file_versions(root)
        evaluated = state.get("day_files", {})
        changed = sorted(day for day, version in versions.items() if evaluated.get(day) != version)
        if not changed:
            return RunResult()
        since = date.fromisoformat(changed[0])
        evaluation = evaluate(root, cfg, since=since)
        new = store.add(evaluation.rows, raised_at=now)
        store.save_state({**store.state(), "day_files": versions})
    return RunResult(
        changed_days=changed,
        since=since.isoformat(),
        events=evaluation.events,
        findings=len(evaluation.rows),
        new=new,
        seconds=round(evaluation.seconds, 3),
    )


def findings_table(
    root: str, period: Period, limit: int = 50, *, team_id: str | None = None
) -> Table:
    """The report's "findings" table: those raised in `period` (by first seen), of every team or
    of `team_id`, most severe first; where no detections ran yet, the detections evaluated now
    with the defaults."""
    store = FindingsStore(root)
    start, end = _midnight(period.start), _midnight(period.end + timedelta(days=1))
    if store.files() or store.state().get("day_files"):
        rows = [r for r in store.read().to_pylist() if start <= r["first_seen"] < end]
        title = "Findings raised by the detections"
    else:
        rows = evaluate(root, since=period.start, until=period.end).rows
        title = "Findings (detections evaluated now, default thresholds)"
    if team_id is not None:
        rows = [r for r in rows if r["team_id"] == team_id]
    rows.sort(key=lambda r: r["first_seen"], reverse=True)
    rows.sort(key=lambda r: SEVERITY_RANK.get(r["severity"], 9))
    columns = ["severity", "detection", "first_seen", "last_seen", "actor", "asset", "events"]
    shown = [tuple(r[c] for c in columns) for r in rows[:limit]]
    if len(rows) > limit:
        title += f" ({limit} of {len(rows)} shown)"
    return Table("findings", title, columns, shown)
