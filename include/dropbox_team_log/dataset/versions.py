"""What changed in a dataset: a version of each day's files, which any write of them changes.

The consumers that follow the dataset (the detections, the OCSF export DAG) keep the versions
they last worked on and compare: a day whose version differs was written since, a day they have
none for is new. Listing only: no file is opened.
"""

from __future__ import annotations

from dropbox_team_log.dataset import object_store
from dropbox_team_log.schema import PARTITION_KEY


def day_file_versions(root: str) -> dict[str, str]:
    """Each day of the dataset and a version of its file(s): it changes whenever one is written.

    Listed without a glob (a root may hold glob characters): `<root>/event_date=D/*.parquet`.
    """
    fs, base = object_store.filesystem(root)
    base = base.rstrip("/")
    try:
        found = fs.find(base, maxdepth=2, detail=True)
    except FileNotFoundError:
        return {}
    versions: dict[str, str] = {}
    for path, info in sorted(found.items()):
        folder, _, name = path[len(base) + 1 :].partition("/")
        prefix = f"{PARTITION_KEY}="
        if not folder.startswith(prefix) or "/" in name or name.startswith("."):
            continue
        if not name.endswith(".parquet"):
            continue
        token = info.get("ETag") or f"{info.get('size')}:{info.get('mtime')}:{info.get('ino')}"
        day = folder[len(prefix) :]
        versions[day] = f"{versions[day]}|{name}:{token}" if day in versions else f"{name}:{token}"
    return versions
