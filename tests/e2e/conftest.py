"""Fixtures of the end-to-end test: emulator on real time, alert receiver, the Airflow stack.

The stack is torn down (processes, PostgreSQL database, Redis keys) however the test ends; on a
failure the tails of every component log and the latest task logs are printed first.
"""

from __future__ import annotations

import json
import sys
import time
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


@pytest.fixture(scope="module")
def deployment(request, tmp_path_factory, emu, connected_at, alert_target):
    """A running CeleryExecutor deployment on this machine's PostgreSQL and Redis."""
    root = tmp_path_factory.mktemp("e2e")
    dataset = root / "dataset"
    stack = AirflowStack(
        root=root,
        extra_env={
            "AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT": connection_json(emu, connected_at=connected_at),
            "AIRFLOW_CONN_DROPBOX_TEAM_LOG_ALERTS": json.dumps(
                {"conn_type": "http", "host": alert_target.url}
            ),
            "AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT": str(dataset),
            "DROPBOX_TEAM_LOG_SCHEDULE": SCHEDULE,
        },
    )
    started = time.monotonic()
    try:
        stack.start()
        rest = AirflowRest(stack.api_url, stack.username, stack.password)
        stack.wait_for("the api-server", rest.healthy, timeout=180)
        rest.login()
        yield Deployment(stack, rest, dataset)
    finally:
        failed = any(
            getattr(item, "rep_call", None) is not None and item.rep_call.failed
            for item in request.session.items
            if item.module is request.module
        )
        if failed or sys.exc_info()[0] is not None:
            print(stack.log_tails(), file=sys.stderr)
        stack.close()
        figure = f"e2e wall time (start to clean-up): {time.monotonic() - started:.0f}s"
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():  # the figure shows even with capture on
            print(f"\n{figure}")
