"""What the DAG files declare, kept in a module that imports nothing heavy.

DAG files are parsed every few seconds by the dag-processor: they import this and `settings`,
and the task bodies (`sync_tasks`, `report_task`: SDK, pyarrow) only inside the tasks.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, Param, TriggerRule, XComArg, task

from dropbox_team_log import settings
from dropbox_team_log.notifications.alerts import on_failure, on_success

#: Emitted by every successful day write, so downstream DAGs can run on new data.
EVENTS_ASSET = Asset(name=settings.EVENTS_ASSET_NAME, uri=settings.EVENTS_ASSET_URI)
#: Cron or preset of the incremental DAG.
INCREMENTAL_SCHEDULE = os.environ.get(settings.SCHEDULE_ENV, settings.DEFAULT_SCHEDULE)
#: The OCSF export DAG's: after every dataset write, unless a cron or preset is set.
OCSF_EXPORT_SCHEDULE: str | list[Asset] = os.environ.get(settings.OCSF_SCHEDULE_ENV) or [
    EVENTS_ASSET
]


def _default_args(
    owner: str, retries: int, retry_delay: timedelta, max_retry_delay: timedelta | None = None
) -> dict[str, Any]:
    """Retries (with exponential backoff up to `max_retry_delay`, when given) and the failure
    alert (a log line, plus the optional webhook) of every task of a DAG."""
    args: dict[str, Any] = {
        "owner": owner,
        "retries": retries,
        "retry_delay": retry_delay,
        "on_failure_callback": on_failure,
    }
    if max_retry_delay is not None:
        args |= {"retry_exponential_backoff": True, "max_retry_delay": max_retry_delay}
    return args


BACKFILL_DEFAULT_ARGS = _default_args(
    "data-engineering", 3, timedelta(minutes=2), timedelta(minutes=30)
)
INCREMENTAL_DEFAULT_ARGS = _default_args(
    "data-engineering", 3, timedelta(minutes=1), timedelta(minutes=10)
)
#: The DAGs that follow the dataset for security teams (detections, the OCSF export): a
#: webhook or a bucket that is down is waited for.
SECURITY_DEFAULT_ARGS = _default_args("security", 3, timedelta(minutes=2), timedelta(minutes=30))
REPORT_DEFAULT_ARGS = _default_args("data-engineering", 2, timedelta(minutes=1))


#: What the `start` and `end` params accept: a UTC day or a UTC second, as the API writes them.
INSTANT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)?$"
INSTANT_FORMAT = "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC"


def days_param(default: int, maximum: int, title: str, description: str) -> Param:
    """A whole number of days from 1 to `maximum` (the backfill's range, the report's period);
    the range is in the description, since the trigger form clamps a number silently."""
    return Param(
        default,
        type="integer",
        minimum=1,
        maximum=maximum,
        title=title,
        description=f"{description}: a whole number from 1 to {maximum} (default {default}).",
    )


def instant_param(title: str, description: str) -> Param:
    """An optional UTC day or second; other text is refused when the run is triggered."""
    return Param(
        None,
        type=["null", "string"],
        pattern=INSTANT_PATTERN,
        title=title,
        description=f"{description} ({INSTANT_FORMAT}); leave empty for the default.",
    )


def conn_id_param() -> Param:
    """The `conn_id` param both sync DAGs take (a fresh Param per DAG)."""
    return Param(
        None,
        type=["null", "string"],
        title="Connection id",
        description=f"The Dropbox Team connection to read; leave empty for the Variable "
        f"{settings.CONN_ID_VARIABLE}, else {settings.DEFAULT_CONN_ID}.",
    )


def team_param() -> Param:
    """The report's optional `team`: one team's report instead of every team's."""
    return Param(
        None,
        type=["null", "string"],
        title="Team",
        description="Report one team only: its connection id, team id or team name; leave "
        "empty for every team.",
    )


def plan_and_sync(kind: str) -> XComArg:
    """The task graph both DAGs share: plan the due days, then one mapped task per team and day.

    The incremental DAG first polls each team's tail (one mapped task per team, named by its
    connection id: a team's slow or failing poll holds no other team's); the plan runs once
    they are all done, failed or not (a failed poll leaves its time to the day tasks).

    Both share the `dropbox_api` pool; the backfill's day tasks take at most
    `BACKFILL_MAX_ACTIVE_DAYS` slots at once, and the incremental's go first when a slot frees
    (priority weight), so a big backfill never starves any team's freshness.
    """
    if kind == "backfill":
        fairness: dict[str, Any] = {"max_active_tis_per_dagrun": settings.BACKFILL_MAX_ACTIVE_DAYS}
    else:
        fairness = {"priority_weight": settings.INCREMENTAL_PRIORITY_WEIGHT}

    @task(task_id="plan_days", trigger_rule="all_done")
    def plan_days(**context: Any) -> list[dict]:
        from dropbox_team_log.tasks import sync_tasks  # heavy imports at run time, not parse time

        return sync_tasks.plan_days(kind, context["params"], context)

    @task(task_id="tail_teams")
    def tail_teams(**context: Any) -> list[str]:
        from dropbox_team_log.tasks import sync_tasks

        return sync_tasks.tail_teams(context["params"])

    # one quick retry: the plan waits for it (a poll that fails for good leaves its time to
    # the day tasks, by the normal due logic)
    @task(
        task_id="tail",
        pool=settings.API_POOL,
        retries=1,
        retry_delay=timedelta(seconds=20),
        multiple_outputs=False,
        map_index_template="{{ tail_label }}",  # the grid shows the team, not 0..n
        on_success_callback=on_success,  # a team alerted as failing: "recovered"
        **fairness,
    )
    def tail(conn_id: str, **context: Any) -> dict:
        from airflow.sdk import get_current_context

        from dropbox_team_log.tasks import sync_tasks

        get_current_context()["tail_label"] = conn_id  # type: ignore[typeddict-unknown-key]
        return sync_tasks.tail_poll(conn_id, context["params"], context)

    @task(
        task_id="sync_day",
        pool=settings.API_POOL,
        outlets=[EVENTS_ASSET],
        multiple_outputs=False,
        map_index_template="{{ sync_label }}",  # the grid shows team and day, not 0..60
        on_success_callback=on_success,
        **fairness,
    )
    def sync_day(job: dict) -> dict:
        from airflow.sdk import get_current_context

        from dropbox_team_log.tasks import sync_tasks

        get_current_context()["sync_label"] = job_label(job)  # type: ignore[typeddict-unknown-key]
        return sync_tasks.sync_day(job)

    plan = plan_days()
    if kind == "incremental":
        tail.expand(conn_id=tail_teams()) >> plan
    return sync_day.expand(job=plan)


def start_backfills() -> None:
    """The incremental DAG's branch that starts the first backfill of each newly registered
    team (tasks/team_tasks.py): plan, trigger one backfill run per team, record it."""

    @task(task_id="plan_backfills")
    def plan_backfills(**context: Any) -> list[dict]:
        from dropbox_team_log.tasks import team_tasks

        return team_tasks.plan_backfills(context["params"])

    @task(task_id="record_backfills", trigger_rule=TriggerRule.NONE_FAILED)
    def record_backfills(starts: list[dict], **context: Any) -> list[str]:
        from dropbox_team_log.sync.planning import as_of_from_context
        from dropbox_team_log.tasks import team_tasks

        return team_tasks.record_backfills(starts, as_of_from_context(context))

    starts = plan_backfills()
    started = TriggerDagRunOperator.partial(
        task_id="start_backfill",
        trigger_dag_id=settings.BACKFILL_DAG_ID,
        logical_date=None,  # runs without one may share a moment; run_after is the trigger's
        skip_when_already_exists=True,  # the run id is the registration's: one backfill each
        wait_for_completion=False,
        openlineage_inject_parent_info=False,  # the conf stays the backfill's params
        map_index_template="{{ task.conf['conn_id'] }}",
    ).expand_kwargs(starts)
    started >> record_backfills(starts)


def job_label(job: dict) -> str:
    """A sync task's name in the grid: its connection and UTC day."""
    return f"{job.get('conn_id', '')} {job.get('day', '?')}".strip()


def render_report() -> XComArg:
    """The report DAG's one task: render the report of the run's period."""

    @task(task_id="render_report", multiple_outputs=False)
    def render(**context: Any) -> dict:
        from dropbox_team_log.tasks import report_task  # heavy imports at run time

        return report_task.render(context["params"], context)

    return render()
