"""`make demo` ends with where the teams page is when an api-server with it answers, and how
to start one when none does (demo/run.py, loaded from its file: the demo is no package)."""

from __future__ import annotations

import importlib.util

from tests.helpers.connecting import closed_port
from tests.helpers.paths import REPO


def demo_module():
    spec = importlib.util.spec_from_file_location("demo_run", REPO / "demo" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_prints_the_teams_page_of_a_running_api_server(api_server):
    note = demo_module().teams_page_note(
        {"AIRFLOW__API__BASE_URL": api_server.url, "AIRFLOW_HOME": "/x"}
    )
    assert (
        note
        == f"Dropbox teams page (connect, test, pause teams): {api_server.url}/plugin/dropbox-teams"
    )


def test_without_an_api_server_the_demo_says_how_to_start_one():
    url = f"http://127.0.0.1:{closed_port()}"
    note = demo_module().teams_page_note({"AIRFLOW__API__BASE_URL": url, "AIRFLOW_HOME": "/x"})
    assert "start the api-server (AIRFLOW_HOME=/x AIRFLOW__CORE__PLUGINS_FOLDER=" in note
    assert f"{url}/plugin/dropbox-teams" in note
