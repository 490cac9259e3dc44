"""Airflow hooks: `DropboxTeamHook` makes a `dropbox_team` connection usable, as providers do."""
