"""`dropbox-team-log`: the commands people run (connect a team, test it, query, report)."""
