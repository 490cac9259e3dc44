"""Fixtures of the end-to-end test: emulator on real time, alert receiver, the Airflow stack.

The stack is torn down (processes, PostgreSQL database, Redis keys) however the test ends; on a
failure the tails of every component log and the latest task logs are printed first. Its wall
time and the CPU time of its components are printed at the end (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.rest import AirflowRest
from tests.e2e.stack import AirflowStack
from tests.e2e.webhook import WebhookReceiver
from tests.helpers.pipeline import connection_json

#: The incremental DAG's schedule under test: every minute (production default: 15 minutes).
SCHEDULE = "* * * * *"


@dataclass
class Deployment:
    """What the test drives: the running stack, its REST API (logged in), the dataset root."""

    stack: AirflowStack
    rest: AirflowRest
    dataset: Path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)  # fixtures read it to print logs on failure
    return report


@pytest.fixture(scope="module")
def connected_at() -> datetime:
    """The moment the team was connected: now, to the minute (the emulator runs in real time)."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
def emu(connected_at):
    from dropbox_emulator import running_emulator

    # clock_rate=1: the emulator's "now" follows the wall clock, as the scheduler's runs do.
    with running_emulator(
        seed=41,
        clock=datetime.now(UTC),
        clock_rate=1.0,
        timeline_start=connected_at - timedelta(days=12),
        timeline_end=connected_at + timedelta(days=2),
        events_per_day=100,
        page_size=50,
        duplicate_rate=0.03,
        late_rate=0.3,
        empty_page_rate=0.05,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def alert_target():
    with WebhookReceiver() as receiver:
        yield receiver


@contextlib.contextmanager
def deployed(request, root: Path, extra_env: dict[str, str]) -> Generator[Deployment]:
    """Start a stack, log in, yield it; on a failure of the module's test (or of the set-up)
    print every component's log tail; always tear it down and print its wall and CPU time."""
    stack = AirflowStack(root=root, extra_env=extra_env)
    started = time.monotonic()
    cpu: dict[str, float] = {}
    try:
        stack.start()
        rest = AirflowRest(stack.api_url, stack.username, stack.password)
        stack.wait_for("the api-server", rest.healthy, timeout=180)
        rest.login()
        yield Deployment(stack, rest, root / "dataset")
    finally:
        failed = any(
            getattr(item, "rep_call", None) is not None and item.rep_call.failed
            for item in request.session.items
            if item.module is request.module
        )
        if failed or sys.exc_info()[0] is not None:
            print(stack.log_tails(), file=sys.stderr)
        cpu = stack.cpu_seconds()  # before the stop: a killed tree's children are not reaped
        stack.close()
        by_component = ", ".join(f"{name} {seconds:.0f}" for name, seconds in cpu.items())
        module = request.module.__name__.rsplit(".", 1)[-1]
        figure = (
            f"e2e {module}: wall {time.monotonic() - started:.0f}s (start to clean-up), "
            f"stack CPU {sum(cpu.values()):.0f}s ({by_component})"
        )
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():  # the figure shows even with capture on
            print(f"\n{figure}")


def stack_env(root: Path, alert_target, connections: dict[str, str]) -> dict[str, str]:
    """A stack's environment: the teams' connections (conn_id -> JSON), the alert webhook,
    the dataset under `root` and the e2e schedule."""
    return {
        **{f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in connections.items()},
        "AIRFLOW_CONN_DROPBOX_TEAM_LOG_ALERTS": json.dumps(
            {"conn_type": "http", "host": alert_target.url}
        ),
        "AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT": str(root / "dataset"),
        "DROPBOX_TEAM_LOG_SCHEDULE": SCHEDULE,
    }


@pytest.fixture(scope="module")
def deployment(request, tmp_path_factory, emu, connected_at, alert_target):
    """A running CeleryExecutor deployment on this machine's PostgreSQL and Redis."""
    root = tmp_path_factory.mktemp("e2e")
    connections = {"dropbox_team_default": connection_json(emu, connected_at=connected_at)}
    with deployed(request, root, stack_env(root, alert_target, connections)) as deployment:
        yield deployment
