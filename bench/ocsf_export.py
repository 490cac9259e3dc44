"""The OCSF export's speed on one core, alone, and against another version of the code.

    python -m bench.ocsf_export --root DATASET [--baseline CHECKOUT] [--runs 3]
    python -m bench.ocsf_export --events 250000          # makes a dataset with the emulator

Each run is a fresh process (DuckDB and Arrow at one thread, as `make bench`) that exports the
whole dataset (hive layout) and reports wall time, CPU time (user + system: the per-core figure,
which the load of a shared machine inflates less than the wall time) and page faults. With
`--baseline`, a checkout of another version (a folder with its `include/`) runs alternately with
this one on the same dataset, so both see the same machine. Prints one line per run, then (last
line) one JSON object with the best of each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def child(root: str, out: str) -> None:
    """One export in this process; its figures as JSON on stdout."""
    import pyarrow as pa

    from dropbox_team_log.analytics.ocsf_export import export

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started, cpu = time.perf_counter(), time.process_time()
    result = export(root, out, threads=1)
    figures = {
        "events": result.records,
        "files": len(result.written),
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
    }
    print(json.dumps(figures))


def run_once(code: Path, root: str, out: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{code / 'include'}{os.pathsep}{HERE}"}
    env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # as the Makefile and the Dockerfile
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ocsf_export", "--child", root, out],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_dataset(events: int, work: str) -> str:
    """A 60-day dataset of about `events` events, synced from the emulator without latency."""
    from bench import run

    root = os.path.join(work, "dataset")
    with run.emulator(events / 60, latency=0.0, days=60) as client:
        run.connect(client)
        client.truth_count()
        run.run_sync("backfill", root, int(run.CLOCK.timestamp()), days=60)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="the dataset to export (default: make one)")
    parser.add_argument("--events", type=int, default=250_000, help="events of a made dataset")
    parser.add_argument("--baseline", type=Path, help="a checkout of the version to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="dtl-ocsf-bench-") as work:
        if args.root:
            root = args.root
        else:
            import logging

            logging.disable(logging.INFO)
            root = make_dataset(args.events, work)
        versions = {"this": HERE}
        if args.baseline:
            versions["baseline"] = args.baseline.resolve()
        best: dict[str, dict] = {}
        for index in range(args.runs):
            for name, code in versions.items():
                figures = run_once(code, root, os.path.join(work, f"out-{name}"))
                rate = figures["events"] / figures["cpu_s"]
                print(
                    f"run {index + 1} {name}: {figures['events']:,} events, {figures['files']} "
                    f"files, wall {figures['wall_s']:.2f} s, CPU {figures['cpu_s']:.2f} s "
                    f"({rate:,.0f} events/CPU-s), {figures['page_faults']:,} page faults",
                    flush=True,
                )
                if name not in best or figures["cpu_s"] < best[name]["cpu_s"]:
                    best[name] = figures
    summary = {}
    for name, figures in best.items():
        summary[f"{name}_events"] = figures["events"]
        summary[f"{name}_cpu_s"] = round(figures["cpu_s"], 3)
        summary[f"{name}_events_per_cpu_s"] = round(figures["events"] / figures["cpu_s"])
        summary[f"{name}_page_faults"] = figures["page_faults"]
    if "baseline" in best:
        summary["cpu_ratio_to_baseline"] = round(
            best["this"]["cpu_s"] / best["baseline"]["cpu_s"], 3
        )
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
