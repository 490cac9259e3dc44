"""What the reliability tests share: the emulator's settings (a private app secret), real DAG
runs, comparisons with the emulator's ground truth, and the fault figures each test records.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers.connecting import APP_SECRET
from tests.helpers.pipeline import (  # re-exported for the suite's modules
    canonical,
    connection_json,
    dataset_raws,
    multiset,
    utc,
)

T0 = utc(2026, 11, 20, 10, 30, 15)  # the moment the admin connected the team
SETTLE = timedelta(hours=25)
HORIZON = timedelta(days=2)  # truth "as of" T + 2 days: every late event has landed
EMULATOR = {
    "app_secret": APP_SECRET,
    "seed": 5,
    "clock": T0,
    "timeline_start": T0 - timedelta(days=62),
    "timeline_end": T0 + timedelta(days=5),
    "events_per_day": 30,
    "page_size": 4,  # many pages per slice: faults land at every stage of paging
    "empty_page_rate": 0.05,
    "duplicate_rate": 0.03,
    "late_rate": 0.3,
    "unknown_type_rate": 0.02,
}


@dataclass
class FaultFigures:
    """One row of the closing note's table."""

    case: str
    faults_injected: int
    api_calls: int
    api_calls_fault_free: int | None  # None: no fault-free twin of this case
    events_expected: int
    events_lost: int
    events_duplicated: int
    note: str = ""


_FIGURES: list[FaultFigures] = []
_SCANS: list[dict[str, Any]] = []


def record(figures: FaultFigures) -> FaultFigures:
    _FIGURES.append(figures)
    return figures


def record_scan(chars_by_source: dict[str, int], secrets: int, leaks: list[str]) -> None:
    """What the secret scan read (characters per source) and what it found."""
    _SCANS.append({"sources": chars_by_source, "secrets_searched": secrets, "leaks": leaks})


def export() -> dict[str, list]:
    """This process's figures, as plain data: what a pytest-xdist worker hands the controller."""
    return {"figures": [asdict(f) for f in _FIGURES], "scans": list(_SCANS)}


def merge(exported: dict[str, list] | None) -> None:
    """Add a worker's `export()` to this process's figures (the controller prints them all)."""
    if exported:
        _FIGURES.extend(FaultFigures(**row) for row in exported["figures"])
        _SCANS.extend(exported["scans"])


def summary_dir() -> Path:
    return Path(
        os.environ.get("RELIABILITY_SUMMARY_DIR")
        or Path(tempfile.gettempdir()) / "dropbox_team_log_reliability"
    )


def write_summary(terminalreporter: Any) -> None:
    """Write and print the fault figures (the lead copies them into the closing note)."""
    if not _FIGURES and not _SCANS:
        return
    out = summary_dir()
    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(f) for f in _FIGURES]
    data = {"fault_matrix": rows, "secret_scan": _SCANS}
    (out / "fault_matrix.json").write_text(json.dumps(data, indent=2) + "\n")
    head = (
        "| case | faults injected | API calls | fault-free calls | events | lost | duplicated "
        "| note |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {f.case} | {f.faults_injected} | {f.api_calls} | {f.api_calls_fault_free or 'n/a'} "
        f"| {f.events_expected} | {f.events_lost} | {f.events_duplicated} | {f.note} |"
        for f in _FIGURES
    ]
    table = head + "\n".join(lines) + "\n"
    for scan in _SCANS:
        table += (
            f"\nSecret scan: {scan['secrets_searched']} secrets (app secret, refresh token, "
            f"every access token issued) searched; leaks: {scan['leaks'] or 'none'}\n"
        )
        table += "".join(f"- {where}: {n:,} chars\n" for where, n in scan["sources"].items())
    (out / "fault_matrix.md").write_text(table)
    terminalreporter.write_sep("=", f"fault matrix figures ({out}/fault_matrix.md)")
    terminalreporter.write(table)


def conn_json(emu, **extra: Any) -> str:
    """The connection the connect command would save, with extra fields changed."""
    value = json.loads(connection_json(emu, connected_at=T0))
    value["extra"].update(extra)
    return json.dumps(value)


def injected(emu) -> int:
    return sum(emu.stats().get("faults_injected", {}).values())


def compare(root: Path, emu, lo: datetime, hi: datetime, as_of: datetime) -> tuple[int, int, int]:
    """(expected events, lost, duplicated) of the dataset against the emulator's truth."""
    got = multiset(dataset_raws(str(root), lo, hi))
    want = multiset(emu.truth(lo, hi, as_of=as_of))
    return sum(want.values()), sum((want - got).values()), sum((got - want).values())


def over_count(
    root: Path, want: Counter, lo: datetime, hi: datetime, seen: dict[str, str] | None = None
) -> int:
    """Rows the dataset holds more often than the API does (0 = never doubled). `seen`: the
    canonical form of each raw event already met, for a caller that reads the same rows again
    and again (each is parsed once, not once per read)."""
    raws = dataset_raws(str(root), lo, hi)
    if seen is None:
        return sum((multiset(raws) - want).values())
    for raw in raws:
        if raw not in seen:
            seen[raw] = canonical(raw)
    return sum((Counter(seen[raw] for raw in raws) - want).values())
