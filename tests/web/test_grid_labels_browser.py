"""A real backfill's day tasks as the Airflow UI shows them, in a real browser: each mapped
`sync_day` task is labelled by its team and day (`map_index_template`), not 0..N, so the admin
who watches a new team's backfill sees which day is running, done or failed.

The run is a real `dag.test` backfill against the emulator on the session's metadata DB, the
same DB the api-server serves; the browser reads the run's mapped tasks in the UI. Its
screenshot is docs/img/teams-page-backfill-days.png.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dropbox_team_log.settings import BACKFILL_DAG_ID
from tests.helpers.api_server import ApiServer
from tests.helpers.pipeline import connection_json, run_dag
from tests.web.conftest import shot

pytestmark = pytest.mark.timeout(300)

CONN_ID = "grid_team"
DAYS = 2


def test_the_backfill_s_day_tasks_are_labelled_by_team_and_day_in_the_ui(
    admin, api_server: ApiServer, emu, tmp_path, monkeypatch
):
    at = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", connection_json(emu, connected_at=at))
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(tmp_path / "dataset"))
    run = run_dag(emu, BACKFILL_DAG_ID, at, {"conn_id": CONN_ID, "days": DAYS})

    page, _ = admin
    page.goto(f"{api_server.url}/dags/{BACKFILL_DAG_ID}/runs/{run.run_id}/tasks/sync_day/mapped")
    days = [(at - timedelta(days=n)).date().isoformat() for n in range(DAYS, -1, -1)]
    for day in days:
        page.get_by_text(f"{CONN_ID} {day}", exact=True).first.wait_for()
    shot(page, "08-backfill-days")
