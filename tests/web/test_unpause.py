"""The teams page's Unpause, over real HTTP against a real api-server: it unpauses a paused
pipeline DAG (read back through Airflow's own REST API, with its audit-log entry), only with this
session's CSRF token, only for a user who may edit DAGs, and only for the pipeline's DAGs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from dropbox_team_log.settings import PIPELINE_DAG_IDS, REPORT_DAG_ID
from tests.helpers.api_server import ApiServer
from tests.web.conftest import PageClient

pytestmark = pytest.mark.timeout(300)


def rest(server: ApiServer) -> requests.Session:
    """Airflow's REST API as the admin (a bearer token)."""
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Bearer {server.token('admin')}"
    return session


def is_paused(server: ApiServer, dag_id: str) -> bool:
    with rest(server) as api:
        resp = api.get(f"{server.url}/api/v2/dags/{dag_id}", timeout=60)
    resp.raise_for_status()
    return resp.json()["is_paused"]


def set_paused(server: ApiServer, dag_id: str, paused: bool) -> None:
    with rest(server) as api:
        resp = api.patch(
            f"{server.url}/api/v2/dags/{dag_id}",
            params={"update_mask": "is_paused"},
            json={"is_paused": paused},
            timeout=60,
        )
    resp.raise_for_status()


@pytest.fixture
def paused_report(api_server: ApiServer) -> Iterator[str]:
    """The report DAG paused for the test (it is created unpaused), then as it was."""
    before = is_paused(api_server, REPORT_DAG_ID)
    set_paused(api_server, REPORT_DAG_ID, True)
    yield REPORT_DAG_ID
    set_paused(api_server, REPORT_DAG_ID, before)


def test_unpause_unpauses_a_paused_pipeline_dag(api_server, paused_report):
    admin = PageClient(api_server, "admin")
    page = admin.get("/")
    assert page.status_code == 200
    for dag_id in PIPELINE_DAG_IDS:
        assert f'data-dag-id="{dag_id}"' in page.text
    assert f'action="dags/{paused_report}/unpause"' in page.text
    resp = admin.post(f"/dags/{paused_report}/unpause", {"csrf": admin.csrf()})
    assert resp.status_code == 303, resp.text
    assert is_paused(api_server, paused_report) is False
    shown = admin.get("/")
    assert f"Unpaused {paused_report}" in shown.text
    assert f'action="dags/{paused_report}/unpause"' not in shown.text
    # Audited as the REST API's own changes are, under the page's user.
    with rest(api_server) as api:
        logs = api.get(
            f"{api_server.url}/api/v2/eventLogs",
            params={"dag_id": paused_report, "event": "unpause"},
            timeout=60,
        ).json()["event_logs"]
    assert any(entry["owner"] == "admin" for entry in logs), logs
    # Again: nothing to do, and it says so.
    again = admin.post(f"/dags/{paused_report}/unpause", {"csrf": admin.csrf()})
    assert again.status_code == 303
    assert f"{paused_report} was not paused" in admin.get("/").text


def test_unpause_is_refused_without_the_csrf_token_or_the_right(api_server, paused_report):
    admin = PageClient(api_server, "admin")
    admin.csrf()  # a browser of the page: its cookie is set, only the token is missing
    assert admin.post(f"/dags/{paused_report}/unpause", {}).status_code == 403
    other = PageClient(api_server, "admin")
    assert admin.post(f"/dags/{paused_report}/unpause", {"csrf": other.csrf()}).status_code == 403
    viewer = PageClient(api_server, "viewer")
    resp = viewer.post(f"/dags/{paused_report}/unpause", {"csrf": admin.csrf()})
    assert resp.status_code == 403
    assert is_paused(api_server, paused_report) is True


def test_unpause_refuses_a_dag_outside_the_pipeline(api_server):
    admin = PageClient(api_server, "admin")
    token = admin.csrf()
    for dag_id in ("some_other_dag", "dropbox_team_log_nope"):
        resp = admin.post(f"/dags/{dag_id}/unpause", {"csrf": token})
        assert resp.status_code == 404
        assert "no such DAG in this pipeline" in resp.text
