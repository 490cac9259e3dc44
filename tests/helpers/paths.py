"""Where the tests find the project's files and Dropbox's published example events."""

from __future__ import annotations

from pathlib import Path

import dropbox_emulator

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
#: Dropbox's own example events, one per event type (the emulator serves their shapes).
SPEC_EVENTS = Path(dropbox_emulator.__file__).parent / "dropbox_spec_team_events.ndjson"
#: A get_events page body as Dropbox's spec shows it.
SPEC_PAGE = REPO / "tests" / "fixtures" / "dropbox_spec_get_events_page.json"
