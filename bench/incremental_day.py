"""Issue 15: what a day of incremental runs costs, hour files against whole-day files.

A team with `events_per_day` events a day (the issue's 2M at `--incr-scale 1`) on the default
schedule: the emulator's clock starts at midnight of day A; day A is synced once an hour (a
warm-up that leaves the coverage a day of incremental runs leaves: an hour fetched at its end),
then day B is synced every schedule interval, each run planned like `plan_days` (the days of the
window with work due) and each due day synced by the mapped task's body (`sync_tasks.sync_day`,
no Airflow around it: Airflow's fixed cost per run is not in these figures). Settling day A's
hours happens during day B, so the figures are a steady state: each event fetched new once and
settled once.

The baseline is the layout before hour files with the old defaults (a whole-day file per day,
every 15 minutes, a 6-hourly refresh, settled a few minutes at a time), made by giving both days
an empty day file first: the write path then merges into that one file, as it used to.

Figures (per simulated day B):
- rows written ÷ new rows: the rows of every file a run rewrote, summed, over the events new that
  day (the API's count of events of day B);
- events fetched per event: events the runs fetched over the events new that day;
- run wall at the end ÷ at the start of the day: the median wall of the runs in the last hour
  of B over that of the first hour (the emulator's last hour has 1.5x the first's events, so
  this errs against the layout); beside it, an extrapolation to scale 1 (noisy: the fit
  multiplies a small coefficient by 1 / scale): each run's wall fitted on (1, events fetched,
  rows written, rows of day B already stored), the median run with day B full over empty;
- CPU-hours a day: this process's CPU (the sync; the emulator's is the API's), measured at this
  scale and extrapolated to `events_per_day` by a least-squares fit of each run's CPU on
  (1, events fetched, rows written): runs x fixed + the per-event and per-row parts scaled up;
- bytes per event: day B's files over its rows;
- fresh fetch share: the day's events its runs fetched while fresh (visible when their range was
  first read); with `refresh_hours` 0 the others reach the dataset when their hour settles (a
  cursor that follows the API's tail is what brings them sooner: not part of this layout).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dropbox_emulator.client import EmulatorClient

#: The emulator's clock at the start: midnight of day A, a Tuesday (day B follows: weekdays have
#: about the same activity, so day A's settles stand for day B's).
START = datetime(2026, 3, 3, tzinfo=UTC)
HOUR, DAY = 3_600, 86_400


@dataclass
class Layout:
    """How one simulation writes: the layout and the cadence."""

    name: str
    interval: int  # seconds between runs
    day_files: bool  # whole-day files (the layout before hour files)
    refresh_hours: float | None
    settle_batch_hours: float


NEW = Layout("hours", 240, day_files=False, refresh_hours=None, settle_batch_hours=1)
OLD = Layout("day_files", 900, day_files=True, refresh_hours=6, settle_batch_hours=1 / HOUR)


@dataclass
class Run:
    at: int
    wall: float
    cpu: float
    events: int
    rows_written: int
    files_written: int
    tasks: int = 0  # mapped sync tasks: the days with work due
    fresh_events: int = 0  # of the run's own day (the rest: earlier days, settled or refreshed)
    earlier_ranges: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Day:
    runs: list[Run] = field(default_factory=list)
    new_events: int = 0
    #: Events of day A in the ranges day B's runs fetched again (what a settle should return).
    earlier_events: int = 0
    bytes_on_disk: int = 0
    rows_on_disk: int = 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _policy(layout: Layout):
    from dropbox_team_log.sync.planning import SyncPolicy

    policy = SyncPolicy()
    refresh = None if not layout.refresh_hours else int(layout.refresh_hours * HOUR)
    batch = max(1, int(layout.settle_batch_hours * HOUR))
    return replace(policy, refresh_seconds=refresh, settle_batch_seconds=batch)


def _run(root: str, as_of: int, layout: Layout) -> Run:
    """One incremental run at `as_of`: plan the window (day A on), sync every due day."""
    from airflow.sdk._shared.secrets_masker.secrets_masker import reset_secrets_masker

    from bench.run import CONN_ID
    from dropbox_team_log.dataset.store import EventDataset
    from dropbox_team_log.sync.engine import due_ranges
    from dropbox_team_log.sync.planning import split_days
    from dropbox_team_log.tasks import sync_tasks
    from dropbox_team_log.timeutil import day_of, from_wire

    started, cpu = time.perf_counter(), _cpu()
    policy = _policy(layout)
    dataset = EventDataset(root)
    lo = max(int(START.timestamp()), as_of - policy.catchup_seconds)
    due = [s for s in split_days(lo, as_of) if due_ranges(dataset, s, as_of=as_of, policy=policy)]
    job = {"as_of": as_of, "conn_id": CONN_ID, "root": root, "team_id": "dbtid:bench"}
    job["policy"] = policy.to_xcom()
    run = Run(as_of, 0.0, 0.0, 0, 0, 0, tasks=len(due))
    for span in due:
        reset_secrets_masker()  # a task's process starts with an empty one (bench/run.py)
        report = sync_tasks.sync_day({**job, **span.to_xcom()})
        run.events += report["events"]
        run.rows_written += report["rows_written"]
        run.files_written += report["files_written"]
        if span.day == day_of(as_of - 1):
            run.fresh_events += report["events"]
        else:
            run.earlier_ranges += [(from_wire(s), from_wire(e)) for s, e in report["ranges"]]
    run.wall, run.cpu = time.perf_counter() - started, _cpu() - cpu
    return run


def _empty_day_file(root: str, day) -> None:
    """An empty day file of the layout before hour files (no rows, no coverage)."""
    from dropbox_team_log.dataset.ledger import Coverage
    from dropbox_team_log.dataset.merge import merge_into
    from dropbox_team_log.dataset.spool import BatchList
    from dropbox_team_log.dataset.store import EventDataset

    dataset = EventDataset(root)
    Path(dataset.day_dir(day)).mkdir(parents=True, exist_ok=True)
    with open(dataset.day_file_path(day), "wb") as sink:
        merge_into(sink, None, None, BatchList(), [], Coverage())


def simulate(client: EmulatorClient, root: str, layout: Layout) -> Day:
    """Day A hourly, then day B on `layout`'s schedule; the figures of day B."""
    a = int(START.timestamp())
    b = a + DAY
    client.set_clock(START)
    if layout.day_files:
        for day in (START.date(), (START + timedelta(days=1)).date()):
            _empty_day_file(root, day)
    for hour in range(1, 25):  # day A: the coverage a day of runs leaves, an hour at a time
        client.set_clock(a + hour * HOUR)
        _run(root, a + hour * HOUR, replace(layout, refresh_hours=None))
    day = Day(new_events=client.truth_count(b, b + DAY, as_of=b + DAY))
    for at in range(b + layout.interval, b + DAY + 1, layout.interval):
        client.set_clock(at)
        day.runs.append(_run(root, at, layout))
    from dropbox_team_log.dataset.ledger import merge_ranges

    for lo, hi in merge_ranges(r for run in day.runs for r in run.earlier_ranges):
        day.earlier_events += client.truth_count(lo, hi, as_of=b + DAY)
    folder = Path(root) / f"event_date={(START + timedelta(days=1)).date()}"
    import pyarrow.parquet as pq

    for path in folder.glob("*.parquet"):
        day.bytes_on_disk += path.stat().st_size
        day.rows_on_disk += pq.read_metadata(path).num_rows
    return day


def _fit_cpu(runs: list[Run], scale: float, attribute: str) -> float:
    """A day's `attribute` (cpu or wall) at scale 1: fixed per run + per event + per row, each
    fitted over the runs, the variable parts scaled up by 1 / scale."""
    import numpy as np

    x = np.array([[1.0, r.events, r.rows_written] for r in runs])
    y = np.array([getattr(r, attribute) for r in runs])
    (fixed, per_event, per_row), *_ = np.linalg.lstsq(x, y, rcond=None)
    fixed, per_event, per_row = max(fixed, 0.0), max(per_event, 0.0), max(per_row, 0.0)
    return float(
        len(runs) * fixed
        + per_event * sum(r.events for r in runs) / scale
        + per_row * sum(r.rows_written for r in runs) / scale
    )


def figures(day: Day, layout: Layout, scale: float) -> dict:
    import numpy as np

    prefix = f"incr_{layout.name}_"
    runs = day.runs[1:]  # the first run pays the process's imports and caches
    first = [r.wall for r in runs if r.at - day.runs[0].at < HOUR]
    last = [r.wall for r in runs if day.runs[-1].at - r.at < HOUR]
    # the same run (the median run's events and rows) with day B empty vs full: the wall's
    # growth with what is stored, fitted over the day's runs (its rows: the fresh ones so far)
    stored = np.cumsum([0] + [r.fresh_events for r in day.runs])[1:-1]
    x = np.array([[1.0, r.events, r.rows_written, s] for r, s in zip(runs, stored, strict=True)])
    coef, *_ = np.linalg.lstsq(x, np.array([r.wall for r in runs]), rcond=None)
    coef = np.maximum(coef, 0.0)  # a negative share is noise: no cost, not a saving
    fresh = sum(r.fresh_events for r in day.runs)
    typical = np.array([1.0, np.median(x[:, 1]) / scale, np.median(x[:, 2]) / scale, 0.0])
    at_start = float(typical @ coef)  # the median run at scale 1, day B empty
    at_end = at_start + float(coef[3]) * fresh / scale  # the same run, day B full
    earlier = sum(r.events - r.fresh_events for r in day.runs)
    return {
        f"{prefix}runs": len(day.runs),
        f"{prefix}new_events": day.new_events,
        f"{prefix}rows_written_per_new_row": round(
            sum(r.rows_written for r in day.runs) / day.new_events, 2
        ),
        # each event of the day: its fresh fetches, plus the refetches an earlier day's events
        # got (settles, refreshes), per event of the ranges refetched
        f"{prefix}events_fetched_per_event": round(
            fresh / day.new_events + earlier / max(day.earlier_events, 1), 2
        ),
        f"{prefix}fresh_fetch_share": round(fresh / day.new_events, 2),
        f"{prefix}tasks_per_run": round(sum(r.tasks for r in day.runs) / len(day.runs), 2),
        f"{prefix}files_written_per_run": round(
            sum(r.files_written for r in day.runs) / len(day.runs), 2
        ),
        f"{prefix}wall_end_over_start": round(float(np.median(last) / np.median(first)), 2),
        f"{prefix}wall_growth_fit_at_scale_1": (
            round(at_end / at_start, 2) if at_start > 0 else None
        ),
        f"{prefix}run_wall_median_s": round(float(np.median([r.wall for r in runs])), 3),
        f"{prefix}cpu_h_per_day_measured": round(sum(r.cpu for r in day.runs) / HOUR, 4),
        f"{prefix}cpu_h_per_day_at_scale_1": round(_fit_cpu(day.runs, scale, "cpu") / HOUR, 3),
        f"{prefix}bytes_per_event": round(day.bytes_on_disk / max(day.rows_on_disk, 1), 1),
    }


def bench_incremental_day(scale: float, work: str, *, baseline: bool = True) -> dict:
    """Both simulations (each its own emulator and dataset); their figures, and the ratios."""
    from bench.run import connect, emulator

    out: dict = {"incr_day_scale": scale, "incr_day_events_per_day": int(2_000_000 * scale)}
    layouts = [NEW, OLD] if baseline else [NEW]
    for layout in layouts:
        with emulator(2_000_000 * scale, days=3) as client:
            connect(client)
            root = str(Path(work) / f"incr-{layout.name}")
            out |= figures(simulate(client, root, layout), layout, scale)
    if baseline:
        for name in ("rows_written_per_new_row", "cpu_h_per_day_at_scale_1", "bytes_per_event"):
            new, old = out[f"incr_hours_{name}"], out[f"incr_day_files_{name}"]
            out[f"incr_{name}_old_over_new"] = round(old / new, 2) if new else None
    return out
