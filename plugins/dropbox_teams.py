"""Airflow plugin: the "Dropbox teams" page (dropbox_team_log.web) in the api-server and the UI.

The api-server mounts the FastAPI app at /dropbox-teams; the UI lists it in its navigation and
shows it in a frame at /plugin/dropbox-teams (a `url_route`: Airflow 3.3.2 renders an external
nav link without one as a button that opens nothing). The page itself checks who may use it.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dropbox_team_log.web.app import PREFIX, UI_ROUTE, create_app


class DropboxTeamsPlugin(AirflowPlugin):
    name = "dropbox_teams"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "Dropbox teams"}]
    external_views = [
        {
            "name": "Dropbox teams",
            "href": f"{PREFIX}/",
            "url_route": UI_ROUTE,
            "destination": "nav",
        }
    ]
