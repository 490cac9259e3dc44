"""Shared by the pipeline tests: connect to the emulator, run DAGs for real, compare with truth.

Exactness is checked as multisets of events (parsed JSON, canonical form): two byte-identical
events are two entries, so a lost or an extra duplicate fails the comparison.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import dropbox
import pyarrow.compute as pc
import pyarrow.dataset as ds

from dropbox_team_log.hook import REQUIRED_SCOPES
from dropbox_team_log.transport import build_session

DAGS_FOLDER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "dags")


def canonical(raw: str | bytes) -> str:
    return json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))


def multiset(raws: Iterable[str | bytes]) -> Counter:
    return Counter(canonical(raw) for raw in raws)


def connection_json(emu, *, connected_at: datetime, backoff_base: float = 0.01) -> str:
    """Grant the app through the emulator's Allow page, as an admin would, and build the
    connection the connect command saves (here as AIRFLOW_CONN_* JSON)."""
    flow = dropbox.DropboxOAuth2FlowNoRedirect(
        emu.config.app_key,
        consumer_secret=emu.config.app_secret,
        token_access_type="offline",
        scope=list(REQUIRED_SCOPES),
    )
    flow.requests_session = build_session(emu.base_url)
    code = emu.approve(flow.start())
    grant = flow.finish(code)
    return json.dumps(
        {
            "conn_type": "dropbox_team",
            "login": emu.config.app_key,
            "password": emu.config.app_secret,
            "host": emu.base_url,
            "extra": {
                "refresh_token": grant.refresh_token,
                "connected_at": connected_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "team_id": grant.account_id or "",
                "team_name": "test",
                "backoff_base": backoff_base,
            },
        }
    )


def dataset_raws(root: str, lo: datetime, hi: datetime) -> list[str]:
    """raw_event of every row with lo <= timestamp < hi, read back with pyarrow (hive layout)."""
    if not os.path.isdir(root):
        return []
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    table = dataset.to_table(
        columns=["timestamp", "raw_event"],
        filter=(pc.field("timestamp") >= lo) & (pc.field("timestamp") < hi),
    )
    return table.column("raw_event").to_pylist()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
