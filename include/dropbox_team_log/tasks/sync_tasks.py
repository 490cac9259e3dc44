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

from dropbox_team_log import deployment, team_registry
from dropbox_team_log.dataset.root_check import OutputRootError, check_output_root
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.dataset.tail_state import TailStateStore
from dropbox_team_log.dataset.team_info import TeamInfo, TeamInfoStore
from dropbox_team_log.errors import ConnectionConfigError, PermanentError
from dropbox_team_log.hooks.dropbox_team import (
    DropboxTeamConnection,
    DropboxTeamHook,
    parse_connected_at,
)
from dropbox_team_log.settings import CONN_ID_VARIABLE, PSEUDONYMISE_KEY_VARIABLE, TEAMS_VARIABLE
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
from dropbox_team_log.tasks.failures import CONNECTION_MISSING, TeamFailure
from dropbox_team_log.tasks.worker_memory import use_lean_allocators
from dropbox_team_log.team_registry import RegistryError
from dropbox_team_log.timeutil import to_wire
from dropbox_team_log.transform.pseudonymise import (
    PseudonymiseKeyError,
    Pseudonymiser,
    key_from_setting,
)

log = logging.getLogger(__name__)


def load_connection(conn_id: str, hook: DropboxTeamHook | None = None) -> DropboxTeamConnection:
    """The validated connection (of `hook`, if given), or a failure that says how to create it."""
    try:
        return (hook or DropboxTeamHook(dropbox_team_conn_id=conn_id)).settings
    except AirflowNotFoundException:
        raise TeamFailure(
            f"Airflow connection '{conn_id}' does not exist: connect the team with "
            f"`dropbox-team-log connect --conn-id {conn_id}` (or set the conn_id param / the "
            f"'{CONN_ID_VARIABLE}' Variable to the connection you saved)",
            conn_id=conn_id,
            kind=CONNECTION_MISSING,
        ) from None
    except ConnectionConfigError as exc:
        raise TeamFailure.of(exc, conn_id) from None


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
    """Validate everything, then list the day spans with work due (no API call).

    The backfill plans one team (its `conn_id` param, else the default connection); so does the
    incremental DAG given a `conn_id` param. Otherwise the incremental DAG plans every unpaused
    team of the registry, their days interleaved (team A's first day, team B's first, ...) so
    the pool serves each team in turn. With several teams, a team whose connection or dataset
    cannot be planned becomes one failing task of its own (its alert names it) and the others
    are planned as usual.
    """
    try:
        as_of = as_of_from_context(context)
        policy = policy_from_params(params)
    except ParamError as exc:
        raise AirflowFailException(f"Bad parameter: {exc}") from None
    planned = planned_teams(kind, params)
    pseudonymised = load_pseudonymiser() is not None
    root, aws_conn_id = open_dataset_root()  # resolved once: the day tasks write this very root
    try:  # a root that cannot be written fails here, saying why, before any API call
        check_output_root(root)
    except OutputRootError as exc:
        raise AirflowFailException(str(exc)) from None
    default = deployment.default_conn_id()
    shared = {
        "as_of": as_of,
        "aws_conn_id": aws_conn_id,
        "pseudonymised": pseudonymised,
        "policy": policy.to_xcom(),
    }
    per_team = []
    for conn_id, cached_connected_at in planned:
        try:
            team = deployment.team_key(conn_id, default)
            jobs = _plan_team(kind, conn_id, params, root, team, as_of, policy, cached_connected_at)
        except (AirflowFailException, RegistryError) as exc:
            team_failure = isinstance(exc, (TeamFailure, RegistryError))
            if len(planned) == 1:
                if team_failure:
                    raise TeamFailure.of(exc, conn_id) from None
                raise AirflowFailException(str(exc)) from None
            log.error("team '%s' cannot be planned: %s", conn_id, exc)
            jobs = [{"conn_id": conn_id, "day": "setup", "error": str(exc)}]
            if team_failure:
                jobs[0]["error_kind"] = TeamFailure.of(exc, conn_id).kind
        per_team.append([{**shared, **job} for job in jobs])
    return interleave(per_team)


def planned_teams(kind: str, params: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The connection ids this run syncs, each with the registry's copy of its connected_at
    (None: read the connection): one named team, or the registry's unpaused ones."""
    if kind == "backfill" or params.get("conn_id"):
        return [(deployment.conn_id(params), None)]
    try:
        teams = deployment.registered_teams()
    except RegistryError as exc:
        raise AirflowFailException(str(exc)) from None
    active = [(t.conn_id, t.connected_at) for t in team_registry.active(teams)]
    paused = [t.conn_id for t in teams if t.paused]
    if paused:
        log.info("paused, not synced: %s", ", ".join(paused))
    return active


def tail_teams(params: dict[str, Any]) -> list[str]:
    """The connection ids whose tail the incremental run polls: those it syncs."""
    return [conn_id for conn_id, _ in planned_teams("incremental", params)]


def _plan_team(
    kind: str,
    conn_id: str,
    params: dict[str, Any],
    root: str,
    team: str | None,
    as_of: int,
    policy: SyncPolicy,
    cached_connected_at: str | None = None,
) -> list[dict[str, Any]]:
    """One team's due day spans as jobs (its files: those of key `team` under `root`);
    AirflowFailException when it cannot be planned.

    With the registry's copy of `connected_at` the connection is not read here (one metadata-DB
    lookup less per team); the day task, which reads it anyway, checks the copy
    (`check_planned_connected_at`)."""
    job: dict[str, Any] = {"conn_id": conn_id, "root": root, "team": team}
    if kind == "backfill":  # the day tasks keep the team's card current (the tail task does too)
        job["card"] = True
    try:
        if cached_connected_at:
            parsed = parse_connected_at(cached_connected_at, conn_id)
            connected_at = int(parsed.timestamp()) if parsed else None
            job["planned_connected_at"] = connected_at
        else:
            settings = load_connection(conn_id)
            parsed = settings.connected_at
            connected_at = int(parsed.timestamp()) if parsed else None
            job["team_id"] = settings.team_id
        if kind == "backfill":
            lo, hi = backfill_range(params, connected_at=connected_at, as_of=as_of)
        else:
            lo, hi = incremental_range(connected_at=connected_at, as_of=as_of, policy=policy)
    except ParamError as exc:
        raise AirflowFailException(f"Bad parameter: {exc}") from None
    except ConnectionConfigError as exc:  # the registry's copy is not a time
        raise TeamFailure(
            f"Variable {TEAMS_VARIABLE}: {exc}", conn_id=conn_id, kind="RegistryError"
        ) from None
    dataset = EventDataset(root, team=team)
    spans = split_days(lo, hi)
    cover = None
    if kind == "incremental":  # the hours the tail's chain holds are not due until they settle
        cover = tail.read_cover(TailStateStore(root), chain_key(conn_id))
    try:  # a damaged day file that cannot be moved aside: retrying cannot help
        due = [
            s
            for s in spans
            if engine.due_ranges(dataset, s, as_of=as_of, policy=policy, cover=cover)
        ]
    except PermanentError as exc:
        raise AirflowFailException(str(exc)) from None
    log.info(
        "%s plan at %s: [%s, %s) over %d days, %d with work due; connection '%s', dataset %s (%s)",
        kind,
        to_wire(as_of),
        to_wire(lo),
        to_wire(hi),
        len(spans),
        len(due),
        conn_id,
        root,
        "unprefixed files" if team is None else f"files {team}.events*.parquet",
    )
    job["tail"] = cover.to_xcom() if cover else None
    return [{**job, **span.to_xcom()} for span in due]


def chain_key(conn_id: str) -> str:
    """Whose tail chain state (`<root>/_tail/<key>.json`, sync/tail.py): the team's connection
    id, which keys its files too, so two connections never share a chain whose tags live in
    different files (and the plan needs no connection to find it)."""
    return conn_id


def write_team_info(
    root: str,
    conn_id: str,
    team: str | None,
    settings: DropboxTeamConnection,
    team_id: str | None = None,
) -> None:
    """Keep `<root>/_teams/<conn_id>.json` (the team's name for the views) current; a failure
    is logged, never fatal: the name is a convenience, the rows carry the team id."""
    info = TeamInfo(
        conn_id=conn_id,
        team_id=team_id or settings.team_id,
        team_name=settings.team_name,
        files=team,
    )
    try:
        TeamInfoStore(root).save(info)
    except (OSError, ValueError) as exc:
        log.warning("team '%s': its card under %s not updated (%s)", conn_id, root, exc)


def check_planned_connected_at(job: dict[str, Any], settings: DropboxTeamConnection) -> None:
    """Fail, saying how to refresh it, when the plan used a copy of `connected_at` that is no
    longer the connection's (the plan's range would be off)."""
    if "planned_connected_at" not in job:
        return
    actual = settings.connected_at
    actual_s = int(actual.timestamp()) if actual else None
    if actual_s != job["planned_connected_at"]:
        conn_id = job["conn_id"]
        raise TeamFailure(
            f"connection '{conn_id}' has connected_at "
            f"{to_wire(actual_s) if actual_s is not None else 'unset'}, but the Variable "
            f"{TEAMS_VARIABLE} holds another copy: refresh it with `dropbox-team-log teams add "
            f'{conn_id}` (or set its "connected_at" there), then clear this task',
            conn_id=conn_id,
            kind="StaleConnectedAt",
        )


def interleave(per_team: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Round robin over the teams' job lists: each team's first job, then each one's second..."""
    out: list[dict[str, Any]] = []
    for n in range(max((len(jobs) for jobs in per_team), default=0)):
        out.extend(jobs[n] for jobs in per_team if n < len(jobs))
    return out


def tail_poll(conn_id: str, params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The incremental run's first step for one team: start or poll its tail chain
    (sync/tail.py)."""
    try:
        as_of = as_of_from_context(context)
        policy = policy_from_params(params)
        settings = load_connection(conn_id)
        if settings.connected_at is None:
            raise ParamError(
                "the connection has no extra.connected_at: reconnect with `dropbox-team-log "
                "connect`"
            )
    except ParamError as exc:
        raise AirflowFailException(f"Bad parameter: {exc}") from None
    hook = DropboxTeamHook(dropbox_team_conn_id=conn_id)
    root, _aws_conn_id = open_dataset_root()
    try:
        team = deployment.team_key(conn_id, deployment.default_conn_id())
        team_id = settings.team_id or str(hook.get_team_info().get("team_id"))
        write_team_info(root, conn_id, team, settings, team_id)
        report = tail.tail_step(
            reader=hook.event_reader(),
            dataset=EventDataset(root, team=team),
            states=TailStateStore(root),
            key=chain_key(conn_id),
            team_id=team_id,
            connected_at=int(settings.connected_at.timestamp()),
            as_of=as_of,
            policy=policy,
            claimant=str(context.get("run_id") or as_of),
            pseudonymiser=load_pseudonymiser(),
        )
    except (PermanentError, RegistryError) as exc:
        raise TeamFailure.of(exc, conn_id) from None
    return report.to_xcom()


def sync_day(job: dict[str, Any]) -> dict[str, Any]:
    """One mapped task: sync one day span (in a process of its own: see worker_memory)."""
    if job.get("error"):  # this team could not be planned: fail its task alone, saying why
        if job.get("error_kind"):
            raise TeamFailure(job["error"], conn_id=job["conn_id"], kind=job["error_kind"])
        raise AirflowFailException(job["error"])
    use_lean_allocators()
    hook = DropboxTeamHook(dropbox_team_conn_id=job["conn_id"])
    pseudonymiser = load_pseudonymiser()
    if bool(pseudonymiser) != bool(job.get("pseudonymised")):
        raise AirflowFailException(
            f"Variable {PSEUDONYMISE_KEY_VARIABLE} changed between planning and syncing: "
            "re-run the DAG"
        )
    settings = load_connection(job["conn_id"], hook)
    check_planned_connected_at(job, settings)
    try:
        use_aws_connection(job["root"], job.get("aws_conn_id"))
        team_id = job.get("team_id") or settings.team_id or str(hook.get_team_info().get("team_id"))
        if job.get("card"):
            write_team_info(job["root"], job["conn_id"], job.get("team"), settings, team_id)
        report = engine.sync_day(
            reader=hook.event_reader(),
            dataset=EventDataset(job["root"], team=job.get("team")),
            span=DaySpan.from_xcom(job),
            as_of=int(job["as_of"]),
            policy=SyncPolicy(**job["policy"]),
            team_id=team_id,
            pseudonymiser=pseudonymiser,
            cover=tail.TailCover.from_xcom(job.get("tail")),
        )
    except PermanentError as exc:
        raise TeamFailure.of(exc, job["conn_id"]) from None
    return report.to_xcom()
