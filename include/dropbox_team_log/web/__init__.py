"""The "Dropbox teams" page of the Airflow UI: a FastAPI app the api-server mounts (the plugin
in plugins/ registers it), to connect, test, pause and remove teams from a browser."""
