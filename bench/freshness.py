"""Freshness with the tail (issue 15): a 2M-events-a-day team polled on the default schedule.

The emulator (its own process, a fixed latency per call) serves a team with
`events_per_day`; its clock is set to each run's time, so hours of runs take minutes. A tail
chain starts `warmup` hours before the measured stretch (so its polls see the steady mix of
new and hours-late events), then each run is the pipeline's own tail step (sync/tail.py: poll,
add the rows to their hour files, commit the chain) into a real dataset, checked against the
ground truth at the end. For every event that becomes visible during the stretch:
freshness = (the run that polled it + that run's measured wall) - its visibility time (Airflow's
scheduling delay before a run starts is not in it: see docs/performance.md), which
the emulator's own generator knows (`EventGenerator.generate_day`: `vis`, made in-process from
the emulator's exact config; the counts are checked against the emulator's ground truth).

The baseline, in the same run: the same events under the planner without a tail, replayed with
the dataset's own coverage rules (`Coverage.due_for_refetch` / `apply`, `SyncPolicy()`
defaults) on the same schedule. An event is fresh there at the first run whose due ranges hold
it after it became visible (the tick alone: no run cost is charged, a lower bound). Fetches per
event: how many fetches read it until it settled, tail + settle for the tail.

At a scale below 1 the per-run wall is fitted (wall = a + b * events) and the freshness
extrapolated to 2M events a day. The CPU a day at 2M is fitted over the runs of two scales (the
bench's and a smaller one, `cpu_per_day_at_2m`): CPU per run = a + b * events per run, so a day
of `*/4` runs costs 360 a + 2M b; a run's fixed cost is a, the rewrites that grow with the
hour files are in b. The measured CPU scaled by volume is printed beside it (pessimistic: it
scales the fixed cost too, and the measured stretch is the week's busiest hours).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY = 86_400
HOUR = 3_600
FULL_EVENTS_PER_DAY = 2_000_000
#: A Tuesday's office hours: the busiest stretch of the emulator's week.
SIM_START = datetime(2026, 3, 3, 8, tzinfo=UTC)
FAR = "2027-01-01T00:00:00Z"


def schedule_seconds() -> int:
    """The incremental DAG's default period, from its cron (`*/N * * * *` or `@hourly`...)."""
    from dropbox_team_log import settings

    cron = settings.DEFAULT_SCHEDULE.strip()
    step = re.fullmatch(r"\*/(\d+) \* \* \* \*", cron)
    if step:
        return int(step.group(1)) * 60
    if cron in ("@hourly", "0 * * * *"):
        return HOUR
    raise SystemExit(f"freshness bench: cannot read a period from schedule {cron!r}")


@dataclass
class Truth:
    """Every generated event of the simulated days, sorted by timestamp."""

    ts: np.ndarray
    vis: np.ndarray


def generate(config, lo: int, hi: int) -> Truth:
    """The (timestamp, visibility) of every event in [lo, hi), made as the emulator makes them."""
    from dropbox_emulator.events import EventGenerator

    gen = EventGenerator(config)
    ts: list[int] = []
    vis: list[int] = []
    for d in range(lo // DAY, (hi - 1) // DAY + 1):
        day = gen.generate_day(d)
        ts.extend(day.ts)
        vis.extend(day.vis)
    t, v = np.asarray(ts, dtype=np.int64), np.asarray(vis, dtype=np.int64)
    keep = (t >= lo) & (t < hi)
    order = np.argsort(t[keep], kind="stable")
    return Truth(t[keep][order], v[keep][order])


# --- the tail, over HTTP --------------------------------------------------------------------


@dataclass
class TailRun:
    at: int
    events: int
    wall: float
    cpu: float
    calls: int
    hour_files: int


@dataclass
class TailResult:
    runs: list[TailRun] = field(default_factory=list)
    lags: list[np.ndarray] = field(default_factory=list)  # per run: visible -> readable
    lag_walls: list[np.ndarray] = field(default_factory=list)  # the wall of that run, each
    lag_events: list[np.ndarray] = field(default_factory=list)  # the events of that run, each
    start_events: int = 0
    start_wall: float = 0.0


def run_tail(
    client,
    reader,
    truth: Truth,
    root: str,
    *,
    chain_start: int,
    start: int,
    hours: float,
    period: int,
    own_cpu: Callable[[], float],
    calls: Callable[[], int],
) -> TailResult:
    """The pipeline's tail step (sync/tail.py) into a real dataset: a chain from
    `chain_start` (clock at `start`), then one poll every `period` s."""
    from dropbox_team_log.dataset.store import EventDataset
    from dropbox_team_log.dataset.tail_state import TailStateStore
    from dropbox_team_log.sync.planning import SyncPolicy
    from dropbox_team_log.sync.tail import hot_from, tail_step

    dataset, states, policy = EventDataset(root), TailStateStore(root), SyncPolicy()
    result = TailResult()

    def step(at: int):
        client.set_clock(at)
        return tail_step(
            reader=reader,
            dataset=dataset,
            states=states,
            key="dbtid:bench",
            team_id="dbtid:bench",
            connected_at=chain_start,
            as_of=at,
            policy=policy,
            claimant=f"bench-{at}",
        )

    began = time.perf_counter()
    report = step(start)
    result.start_wall = time.perf_counter() - began
    result.start_events = report.events
    in_chain = truth.ts >= chain_start
    expect = int(np.count_nonzero(in_chain & (truth.vis <= start)))
    if report.events != expect:
        raise SystemExit(
            f"freshness bench: chain start read {report.events} events, the truth holds {expect}"
        )
    previous, k, waiting = start, 0, np.zeros(truth.ts.shape, dtype=bool)
    end = start + int(hours * HOUR)
    while True:  # the measured hours, then on until late rows waiting have been flushed
        k += 1
        at = start + k * period
        previous_as_of = states.read("dbtid:bench").state.as_of
        before_calls, cpu0, wall0 = calls(), own_cpu(), time.perf_counter()
        report = step(at)
        wall, cpu = time.perf_counter() - wall0, own_cpu() - cpu0
        fresh = in_chain & (truth.vis > previous) & (truth.vis <= at)
        if report.mode != "poll" or report.events != int(np.count_nonzero(fresh)):
            raise SystemExit(
                f"freshness bench: {report.mode} at {at} read {report.events} events, "
                f"{np.count_nonzero(fresh)} became visible"
            )
        state = states.read("dbtid:bench").state
        flushed = state.pending is None
        hot = hot_from(previous_as_of, state.as_of)
        readable = fresh if flushed else fresh & (truth.ts >= hot)
        if flushed:  # late rows that waited are readable now too
            readable = readable | waiting
            waiting[:] = False
        else:
            waiting |= fresh & ~readable
        if at <= end:
            result.runs.append(
                TailRun(at, report.events, wall, cpu, calls() - before_calls, report.hours_written)
            )
        measured = readable & (truth.vis <= end)
        result.lags.append(at - truth.vis[measured])
        result.lag_walls.append(np.full(int(measured.sum()), wall))
        result.lag_events.append(np.full(int(measured.sum()), report.events))
        previous = at
        if at >= end and not waiting.any():
            break
        if at > end + 2 * HOUR - period:
            raise SystemExit("freshness bench: late rows still wait 2 h after the last run")
    stored = Counter(_stored_raws(root, chain_start))
    if stored != Counter(r.decode() for r in client.truth(chain_start, FAR)):
        raise SystemExit("freshness bench: the dataset differs from the ground truth")
    return result


def _stored_raws(root: str, lo: int) -> list[str]:
    """raw_event of every stored row with timestamp >= lo (pyarrow's discovery, as a reader)."""
    import pyarrow.dataset as ds

    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(
        columns=["raw_event"],
        filter=pc.field("timestamp") >= pa.scalar(lo, pa.timestamp("s", tz="UTC")),
    )
    return table.column("raw_event").to_pylist()


# --- the planner without a tail, replayed ---------------------------------------------------


def replay_planner(truth: Truth, *, first: int, last: int, period: int, policy) -> tuple:
    """Runs every `period` s from `first` to `last` on the coverage rules alone.

    Returns (when each event was first read after it became visible, how often it was read).
    """
    from dropbox_team_log.dataset.ledger import Coverage
    from dropbox_team_log.sync.planning import split_days

    seen = np.full(truth.ts.shape, np.iinfo(np.int64).max, dtype=np.int64)
    reads = np.zeros(truth.ts.shape, dtype=np.int32)
    coverage: dict[date, Coverage] = {}
    for at in range(first, last + 1, period):
        lo = max(first, at - policy.catchup_seconds)
        for span in split_days(lo, at):
            cov = coverage.get(span.day, Coverage())
            due = cov.due_for_refetch(
                span.lo,
                span.hi,
                as_of=at,
                settle=policy.settle_seconds,
                refresh=policy.refresh_seconds,
                batch=policy.settle_batch_seconds,
            )
            if not due:
                continue
            for a, b in due:
                i, j = np.searchsorted(truth.ts, [a, b])
                visible = truth.vis[i:j] <= at
                reads[i:j] += visible
                seen[i:j] = np.where(visible & (seen[i:j] > at), at, seen[i:j])
            coverage[span.day] = cov.apply(due, at)[0]
    return seen, reads


def tail_fetches(truth: Truth, *, settle: int, refresh: int | None) -> np.ndarray:
    """Reads per event with the tail: its poll, then its hour's settle (and refreshes, if on)."""
    hour_end = (truth.ts // HOUR + 1) * HOUR
    reads = np.ones(truth.ts.shape, dtype=np.int32)  # the tail delivers each event once
    reads += truth.vis <= hour_end + settle  # the settle fetch of its whole hour
    if refresh:
        for k in range(1, settle // refresh + 1):
            at = hour_end + k * refresh
            reads += (truth.vis <= at) & (at < hour_end + settle)
    return reads


# --- the figures ----------------------------------------------------------------------------


def _fit(runs: list[TailRun], attr: str) -> tuple[float, float]:
    """Least squares `value = a + b * events` over the runs (a, b >= 0)."""
    x = np.array([r.events for r in runs], dtype=float)
    y = np.array([getattr(r, attr) for r in runs], dtype=float)
    if len(runs) < 2 or np.ptp(x) == 0:
        return float(y.mean()), 0.0
    b, a = np.polyfit(x, y, 1)
    return max(0.0, float(a)), max(0.0, float(b))


def bench_freshness(
    client,
    config,
    reader,
    work: str,
    *,
    hours: float,
    warmup: float,
    own_cpu: Callable[[], float],
    calls: Callable[[], int],
) -> dict:
    """Figures for the tail and the no-tail baseline; see the module docstring."""
    from dropbox_team_log.sync.planning import SyncPolicy

    policy = SyncPolicy()
    period = schedule_seconds()
    start = int(SIM_START.timestamp())
    chain_start = start - int(warmup * HOUR)
    end = start + int(hours * HOUR)
    replay_from = chain_start - 2 * HOUR
    truth = generate(config, replay_from, end + 2 * HOUR)  # runs go on to the next flush
    tail = run_tail(
        client,
        reader,
        truth,
        f"{work}/fresh",
        chain_start=chain_start,
        start=start,
        hours=hours,
        period=period,
        own_cpu=own_cpu,
        calls=calls,
    )
    runs = tail.runs
    wall_a, wall_b = _fit(runs, "wall")
    lags = np.concatenate(tail.lags)
    walls = np.concatenate(tail.lag_walls)
    per_run = np.array([r.events for r in runs], dtype=float)
    full = FULL_EVENTS_PER_DAY / config.events_per_day  # events per run at 2M a day
    walls_2m = wall_a + wall_b * np.concatenate(tail.lag_events) * full
    measured = (truth.ts >= chain_start) & (truth.vis > start) & (truth.vis <= end)
    seen, reads = replay_planner(
        truth,
        first=replay_from,
        last=end + policy.settle_seconds + 2 * HOUR,
        period=period,
        policy=policy,
    )
    base_lag = (seen - truth.vis)[measured]
    settled = (truth.ts >= chain_start) & (truth.ts < end)
    tail_reads = tail_fetches(truth, settle=policy.settle_seconds, refresh=policy.refresh_seconds)[
        settled
    ]
    cpu_day = sum(r.cpu for r in runs) / (len(runs) * period) * DAY
    return {
        "fresh_events_per_day": round(config.events_per_day),
        "fresh_schedule_s": period,
        "fresh_hours": hours,
        "fresh_events_measured": int(lags.size),
        "fresh_chain_start_events": tail.start_events,
        "fresh_chain_start_wall_s": round(tail.start_wall, 2),
        "fresh_tail_events_per_run": round(float(per_run.mean()), 1),
        "fresh_tail_api_calls_per_run": round(float(np.mean([r.calls for r in runs])), 2),
        "fresh_tail_hour_files_per_run": round(float(np.mean([r.hour_files for r in runs])), 2),
        "fresh_tail_run_wall_mean_s": round(float(np.mean([r.wall for r in runs])), 3),
        "fresh_tail_run_wall_max_s": round(float(np.max([r.wall for r in runs])), 3),
        "fresh_tail_p50_s": round(float(np.percentile(lags + walls, 50)), 1),
        "fresh_tail_p95_s": round(float(np.percentile(lags + walls, 95)), 1),
        "fresh_tail_max_s": round(float(np.max(lags + walls)), 1),
        "fresh_tail_p95_s_at_2m": round(float(np.percentile(lags + walls_2m, 95)), 1),
        # the measured stretch's CPU a day, scaled by volume (rewrites grow with the files)
        "fresh_tail_cpu_h_per_day": round(cpu_day / HOUR, 3),
        "fresh_tail_cpu_h_per_day_at_2m_by_volume": round(cpu_day * full / HOUR, 3),
        "fresh_base_p50_s": round(float(np.percentile(base_lag, 50)), 1),
        "fresh_base_p95_s": round(float(np.percentile(base_lag, 95)), 1),
        "fresh_tail_fetches_per_event": round(float(tail_reads.mean()), 2),
        "fresh_base_fetches_per_event": round(float(reads[settled].mean()), 2),
        "fresh_settle_hours": policy.settle_seconds / HOUR,
        "fresh_refresh_hours": (policy.refresh_seconds or 0) / HOUR,
        "_runs": runs,
    }


def cpu_per_day_at_2m(runs: list[TailRun], period: int) -> dict:
    """CPU per run = a + b * events per run, fitted over runs of two or more scales, and the
    CPU of a day of runs every `period` s at 2M events a day (its figures, `fresh_tail_cpu_*`)."""
    a, b = _fit(runs, "cpu")
    per_day = a * DAY / period + b * FULL_EVENTS_PER_DAY
    return {
        "fresh_tail_cpu_s_per_run_fixed": round(a, 4),
        "fresh_tail_cpu_us_per_event": round(b * 1e6, 1),
        "fresh_tail_cpu_h_per_day_at_2m": round(per_day / HOUR, 3),
    }
