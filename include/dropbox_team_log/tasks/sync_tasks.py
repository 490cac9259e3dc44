"""What the DAGs' tasks do, kept out of the DAG files so those stay declarative.

Settings come from the run (params, its logical time) and from Airflow (connection, Variables);
all of it is validated in the plan task, before any API call. Permanent errors become
`AirflowFailException` so a revoked token is not retried five times.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from airflow.sdk.log import mask_secret

from dropbox_team_log.dataset.root_check import require_output_root
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.errors import ConnectionConfigError, PermanentError
from dropbox_team_log.hooks.dropbox_team import DropboxTeamConnection, DropboxTeamHook
from dropbox_team_log.sync.engine import due_ranges, sync_day
from dropbox_team_log.sync.planning import (
    DaySlice,
    ParamError,
    SyncPolicy,
    as_of_from_context,
    backfill_range,
    incremental_range,
    iso,
    policy_from_params,
    split_days,
)
from dropbox_team_log.tasks.dag_spec import CONN_ID_VARIABLE, OUTPUT_VARIABLE
from dropbox_team_log.tasks.worker_memory import use_lean_allocators
from dropbox_team_log.transform.pseudonymise import (
    KEY_VARIABLE,
    PseudonymiseKeyError,
    Pseudonymiser,
    key_from_setting,
)

log = logging.getLogger(__name__)


def default_output_root() -> str:
    """`<project>/data/dropbox_team_log` in a checkout, else under AIRFLOW_HOME."""
    project = Path(__file__).resolve().parents[3]
    if (project / "dags").is_dir():
        return str(project / "data" / "dropbox_team_log")
    return str(
        Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "data" / "dropbox_team_log"
    )


def output_root() -> str:
    return Variable.get(OUTPUT_VARIABLE, default=None) or default_output_root()


def conn_id_from(params: dict[str, Any]) -> str:
    return (
        params.get("conn_id")
        or Variable.get(CONN_ID_VARIABLE, default=None)
        or DropboxTeamHook.default_conn_name
    )


def load_connection(conn_id: str) -> DropboxTeamConnection:
    """The validated connection, or a failure that says how to create it."""
    try:
        return DropboxTeamHook(dropbox_team_conn_id=conn_id).settings
    except AirflowNotFoundException:
        raise AirflowFailException(
            f"Airflow connection '{conn_id}' does not exist: connect the team with "
            f"`dropbox-team-log connect --conn-id {conn_id}` (or set the conn_id param / the "
            f"'{CONN_ID_VARIABLE}' Variable to the connection you saved)"
        ) from None
    except ConnectionConfigError as exc:
        raise AirflowFailException(str(exc)) from None


def load_pseudonymiser() -> Pseudonymiser | None:
    """The opt-in pseudonymiser from the key Variable (None: off); never puts the key in XCom."""
    try:
        key = key_from_setting(
            Variable.get(KEY_VARIABLE, default=None), DropboxTeamHook.get_connection
        )
        if key is None:
            return None
        mask_secret(key)
        return Pseudonymiser(key)
    except AirflowNotFoundException:
        raise AirflowFailException(
            f"Variable {KEY_VARIABLE} names a connection that does not exist"
        ) from None
    except PseudonymiseKeyError as exc:
        raise AirflowFailException(f"Variable {KEY_VARIABLE}: {exc}") from None


def plan(kind: str, params: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate everything, then list the day slices with work due (no API call)."""
    try:
        as_of = as_of_from_context(context)
        policy = policy_from_params(params)
        conn_id = conn_id_from(params)
        settings = load_connection(conn_id)
        connected_at = int(settings.connected_at.timestamp()) if settings.connected_at else None
        if kind == "backfill":
            lo, hi = backfill_range(params, connected_at=connected_at, as_of=as_of)
        else:
            lo, hi = incremental_range(connected_at=connected_at, as_of=as_of, policy=policy)
    except ParamError as exc:
        raise AirflowFailException(f"Bad parameter: {exc}") from None
    pseudonymised = load_pseudonymiser() is not None
    root = output_root()
    require_output_root(root)  # a root that cannot be written fails here, saying why
    dataset = EventDataset(root)
    slices = split_days(lo, hi)
    due = [part for part in slices if due_ranges(dataset, part, as_of=as_of, policy=policy)]
    log.info(
        "%s plan at %s: [%s, %s) over %d days, %d with work due; connection '%s', dataset %s",
        kind,
        iso(as_of),
        iso(lo),
        iso(hi),
        len(slices),
        len(due),
        conn_id,
        root,
    )
    job = {
        "as_of": as_of,
        "conn_id": conn_id,
        "root": root,
        "team_id": settings.team_id,
        "pseudonymised": pseudonymised,
        "policy": policy.to_xcom(),
    }
    return [{**job, **part.to_xcom()} for part in due]


def sync(job: dict[str, Any]) -> dict[str, Any]:
    """One mapped task: sync one day slice (in a process of its own: see task_memory)."""
    use_lean_allocators()
    hook = DropboxTeamHook(dropbox_team_conn_id=job["conn_id"])
    pseudonymiser = load_pseudonymiser()
    if bool(pseudonymiser) != bool(job.get("pseudonymised")):
        raise AirflowFailException(
            f"Variable {KEY_VARIABLE} changed between planning and syncing: re-run the DAG"
        )
    try:
        team_id = job.get("team_id") or str(hook.get_team_info().get("team_id"))
        report = sync_day(
            reader=hook.event_reader(),
            dataset=EventDataset(job["root"]),
            part=DaySlice.from_xcom(job),
            as_of=int(job["as_of"]),
            policy=SyncPolicy(**job["policy"]),
            team_id=team_id,
            pseudonymiser=pseudonymiser,
        )
    except PermanentError as exc:
        raise AirflowFailException(str(exc)) from None
    return report.to_xcom()
