"""What the DAGs' tasks do, kept out of the DAG files so those stay declarative.

Settings come from the run (params, its logical time) and from Airflow (connection, Variables);
all of it is validated in the plan task, before any API call. Permanent errors become
`AirflowFailException` so a revoked token is not retried five times.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from airflow.sdk.log import mask_secret

from dropbox_team_log import deployment
from dropbox_team_log.dataset.root_check import OutputRootError, check_output_root
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.dataset.tail_state import TailStateStore
from dropbox_team_log.errors import ConnectionConfigError, PermanentError
from dropbox_team_log.hooks.dropbox_team import DropboxTeamConnection, DropboxTeamHook
from dropbox_team_log.settings import CONN_ID_VARIABLE, PSEUDONYMISE_KEY_VARIABLE
from dropbox_team_log.sync import engine, tail
from dropbox_team_log.sync.planning import (
    DaySpan,
    ParamError,
    SyncPolicy,
    as_of_from_context,
    backfill_range,
    incremental_range,
    policy_from_params,
    split_days,
)
from dropbox_team_log.tasks.dataset_root import open_dataset_root, use_aws_connection
from dropbox_team_log.tasks.worker_memory import use_lean_allocators
from dropbox_team_log.timeutil import to_wire
from dropbox_team_log.transform.pseudonymise import (
    PseudonymiseKeyError,
    Pseudonymiser,
    key_from_setting,
)

log = logging.getLogger(__name__)


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
            deployment.pseudonymise_key_setting(), DropboxTeamHook.get_connection
        )
        if key is None:
            return None
        mask_secret(key)
        return Pseudonymiser(key)
    except AirflowNotFoundException:
        raise AirflowFailException(
            f"Variable {PSEUDONYMISE_KEY_VARIABLE} names a connection that does not exist"
        ) from None
    except PseudonymiseKeyError as exc:
        raise AirflowFailException(f"Variable {PSEUDONYMISE_KEY_VARIABLE}: {exc}") from None


def plan_days(kind: str, params: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate everything, then list the day spans with work due (no API call)."""
    try:
        as_of = as_of_from_context(context)
        policy = policy_from_params(params)
        conn_id = deployment.conn_id(params)
        settings = load_connection(conn_id)
        connected_at = int(settings.connected_at.timestamp()) if settings.connected_at else None
        if kind == "backfill":
            lo, hi = backfill_range(params, connected_at=connected_at, as_of=as_of)
        else:
            lo, hi = incremental_range(connected_at=connected_at, as_of=as_of, policy=policy)
    except ParamError as exc:
        raise AirflowFailException(f"Bad parameter: {exc}") from None
    pseudonymised = load_pseudonymiser() is not None
    root, aws_conn_id = open_dataset_root()  # resolved once: the day tasks write this very root
    try:  # a root that cannot be written fails here, saying why, before any API call
        check_output_root(root)
    except OutputRootError as exc:
        raise AirflowFailException(str(exc)) from None
    dataset = EventDataset(root)
    spans = split_days(lo, hi)
    cover = None
    if kind == "incremental":  # the hours the tail's chain holds are not due until they settle
        key = tail.tail_key(conn_id, settings.team_id)
        cover = tail.read_cover(TailStateStore(root), key)
    try:  # a damaged day file that cannot be moved aside: retrying cannot help
        due = [
            s
            for s in spans
            if engine.due_ranges(dataset, s, as_of=as_of, policy=policy, cover=cover)
        ]
    except PermanentError as exc:
        raise AirflowFailException(str(exc)) from None
    log.info(
        "%s plan at %s: [%s, %s) over %d days, %d with work due; connection '%s', dataset %s",
        kind,
        to_wire(as_of),
        to_wire(lo),
        to_wire(hi),
        len(spans),
        len(due),
        conn_id,
        root,
    )
    job = {
        "as_of": as_of,
        "conn_id": conn_id,
        "root": root,
        "aws_conn_id": aws_conn_id,
        "team_id": settings.team_id,
        "pseudonymised": pseudonymised,
        "policy": policy.to_xcom(),
        "tail": cover.to_xcom() if cover else None,
    }
    return [{**job, **span.to_xcom()} for span in due]


def tail_poll(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The incremental run's first task: start or poll the team's tail chain (sync/tail.py)."""
    try:
        as_of = as_of_from_context(context)
        policy = policy_from_params(params)
        conn_id = deployment.conn_id(params)
        settings = load_connection(conn_id)
        if settings.connected_at is None:
            raise ParamError(
                "the connection has no extra.connected_at: reconnect with `dropbox-team-log "
                "connect`"
            )
    except ParamError as exc:
        raise AirflowFailException(f"Bad parameter: {exc}") from None
    hook = DropboxTeamHook(dropbox_team_conn_id=conn_id)
    root, aws_conn_id = open_dataset_root()
    try:
        use_aws_connection(root, aws_conn_id)
        team_id = settings.team_id or str(hook.get_team_info().get("team_id"))
        report = tail.tail_step(
            reader=hook.event_reader(),
            dataset=EventDataset(root),
            states=TailStateStore(root),
            key=tail.tail_key(conn_id, settings.team_id),
            team_id=team_id,
            connected_at=int(settings.connected_at.timestamp()),
            as_of=as_of,
            policy=policy,
            claimant=str(context.get("run_id") or as_of),
            pseudonymiser=load_pseudonymiser(),
        )
    except PermanentError as exc:
        raise AirflowFailException(str(exc)) from None
    return report.to_xcom()


def sync_day(job: dict[str, Any]) -> dict[str, Any]:
    """One mapped task: sync one day span (in a process of its own: see worker_memory)."""
    use_lean_allocators()
    hook = DropboxTeamHook(dropbox_team_conn_id=job["conn_id"])
    pseudonymiser = load_pseudonymiser()
    if bool(pseudonymiser) != bool(job.get("pseudonymised")):
        raise AirflowFailException(
            f"Variable {PSEUDONYMISE_KEY_VARIABLE} changed between planning and syncing: "
            "re-run the DAG"
        )
    try:
        use_aws_connection(job["root"], job.get("aws_conn_id"))
        team_id = job.get("team_id") or str(hook.get_team_info().get("team_id"))
        report = engine.sync_day(
            reader=hook.event_reader(),
            dataset=EventDataset(job["root"]),
            span=DaySpan.from_xcom(job),
            as_of=int(job["as_of"]),
            policy=SyncPolicy(**job["policy"]),
            team_id=team_id,
            pseudonymiser=pseudonymiser,
            cover=tail.TailCover.from_xcom(job.get("tail")),
        )
    except PermanentError as exc:
        raise AirflowFailException(str(exc)) from None
    return report.to_xcom()
