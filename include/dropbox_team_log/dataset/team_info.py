"""Each team's name card: `<root>/_teams/<conn_id>.json`, beside the data, outside its glob.

Rows carry the team's id (`team_id`), never its name, and one deployment may collect several
teams (layout.py): the card maps a connection to its team's id and name, and names the key of
its files (null: the default team's unprefixed files), so the analysts' `teams` view and the
`team_name` column of `events` can say whose rows they are. `connect` writes it; the tail task
(and the backfill's plan) refresh it from the connection each run, writing only on a change.
A team removed from the registry keeps its card, as it keeps its files.

The card is a convenience: a dataset without cards (written before them) reads the same, its
team names empty.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from dropbox_team_log import settings
from dropbox_team_log.dataset import layout, object_store
from dropbox_team_log.dataset.files import write_text
from dropbox_team_log.dataset.roots import glob_under

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeamInfo:
    """One connection's team: its ids, its name, and the key of its files (None: unprefixed)."""

    conn_id: str
    team_id: str | None
    team_name: str | None
    files: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> TeamInfo:
        value = json.loads(text)
        if not isinstance(value, dict) or not isinstance(value.get("conn_id"), str):
            raise ValueError(f"{where}: not a team card (an object with a conn_id)")
        fields = {}
        for name in ("team_id", "team_name", "files"):
            item = value.get(name)
            fields[name] = item if isinstance(item, str) and item else None
        return cls(conn_id=value["conn_id"], **fields)


class TeamInfoStore:
    """The cards under `<root>/_teams/` (a local path or an fsspec URL)."""

    def __init__(self, root: str) -> None:
        self.url = str(root).rstrip("/")
        self.fs, path = object_store.filesystem(self.url)
        self.folder = f"{path.rstrip('/')}/{settings.TEAMS_DIR}"

    def path(self, conn_id: str) -> str:
        """The card's URL (or local path) for connection `conn_id` (checked: it names a file)."""
        layout.check_team_key(conn_id)
        return f"{self.url}/{settings.TEAMS_DIR}/{conn_id}.json"

    def read(self, conn_id: str) -> TeamInfo | None:
        path = f"{self.folder}/{layout.check_team_key(conn_id)}.json"
        try:
            with self.fs.open(path, "rb") as f:
                return TeamInfo.from_json(f.read().decode("utf-8"), path)
        except FileNotFoundError:
            return None

    def save(self, info: TeamInfo) -> bool:
        """Write the card unless it already says exactly this; True when written."""
        try:
            if self.read(info.conn_id) == info:
                return False
        except ValueError:
            pass  # a broken card is replaced
        write_text(self.path(info.conn_id), info.to_json())
        return True

    def load_all(self) -> list[TeamInfo]:
        """Every readable card, by connection id (an unreadable one is logged and skipped)."""
        cards = []
        for path in sorted(self.fs.glob(glob_under(self.folder, "*.json"))):
            try:
                with self.fs.open(path, "rb") as f:
                    cards.append(TeamInfo.from_json(f.read().decode("utf-8"), path))
            except (OSError, ValueError) as exc:
                log.warning("team card %s skipped: %s", path, exc)
        return sorted(cards, key=lambda c: c.conn_id)
