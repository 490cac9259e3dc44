"""How the suite is split over pytest-xdist workers (`make test`: `-n $(TEST_WORKERS)`, 3).

A unit of work is a module, so that its module-scoped fixtures (an emulator, a shared backfill)
start once; the modules of a package in SHARED_PACKAGES form one unit (tests/web: one api-server
for the package). The units are handed out in FIRST_UNITS order, then in collection order.

The grouping is by node id in the scheduler itself: xdist's own `loadgroup` tags node ids
through `Item._nodeid`, which pytest 9 no longer reads, so its xdist_group marks group nothing.
"""

from __future__ import annotations

import os
from typing import Any

#: The nice value of a worker's tests that yield the CPU to an e2e deployment (see yield_cpu).
YIELDING_NICENESS = 10

#: Folders whose modules form one unit of work: tests/web shares package-scoped fixtures (one
#: api-server); tests/e2e's two modules each start an Airflow stack, one after the other on one
#: worker, so that a stack's timeliness claim never shares the cores with the other stack.
SHARED_PACKAGES = ("tests/web", "tests/e2e")

#: The units handed out first, in this order. The long ones (real Airflow stacks, a browser,
#: many real DAG runs) start first, longest first, so that the short ones fill the gaps instead
#: of trailing. A worker asks for a second unit as soon as it holds two tests or fewer, so the
#: e2e worker (two tests) takes the unit after the first 3 (or 4) along, to run when its stacks
#: are done: units 4 and 5 are short for that reason.
FIRST_UNITS = (
    "tests/e2e",
    "tests/web",
    "tests/test_pipeline.py",
    "tests/test_timeutil.py",
    "tests/analytics/test_text.py",
    "tests/reliability/test_kill_and_readers.py",
    "tests/reliability/test_fault_matrix.py",
    "tests/tasks/test_team_fanout.py",
    "tests/reliability/test_all_at_once.py",
    "tests/dataset/test_store_s3.py",
    "tests/sync/test_tail.py",
    "tests/reliability/test_secrets.py",
    "tests/analytics/test_ocsf_export.py",
    "tests/hooks/test_dropbox_team.py",
    "tests/reliability/test_damaged_files.py",
    "tests/notifications/test_alert_state.py",
    "tests/test_deployment.py",
    "tests/analytics/test_findings.py",
    "tests/dataset/test_store_teams.py",
    "tests/analytics/test_report.py",
    "tests/cli/test_connect.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its package when listed above, else its module."""
    module = nodeid.split("::", 1)[0]
    for package in SHARED_PACKAGES:
        if module.startswith(package + "/"):
            return package
    return module


def order(nodeids: list[str]) -> list[int]:
    """Positions of `nodeids` with FIRST_UNITS first (stable: the order within a unit and of
    the other units is the collection's)."""
    rank = {unit: n for n, unit in enumerate(FIRST_UNITS)}
    return sorted(
        range(len(nodeids)), key=lambda i: rank.get(unit_of(nodeids[i]), len(FIRST_UNITS))
    )


def yield_cpu() -> None:
    """Lower this worker's CPU priority to YIELDING_NICENESS, once: the processes a test starts
    afterwards inherit it, the e2e stacks started before it (at 0) keep their share."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < YIELDING_NICENESS:
        os.nice(YIELDING_NICENESS - current)


def make_scheduler(config: Any, log: Any) -> Any:
    """xdist's scope scheduling with our units as scopes, queued in collection order (the
    workers' collection is already in `order()`: tests/conftest.py sorts it)."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    config.option.loadscopereorder = False  # not by size: in FIRST_UNITS order
    return UnitScheduling(config, log)
