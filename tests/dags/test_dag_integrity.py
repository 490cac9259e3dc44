"""The DAG files: import cleanly, carry tags and retries, and touch no DB or API at parse time."""

from __future__ import annotations

import ast

import pytest

from tests.helpers.paths import DAGS_FOLDER

DAGS = DAGS_FOLDER
SYNC_DAGS = {"dropbox_team_log_backfill", "dropbox_team_log_incremental"}
#: The DAGs that run whenever the dataset changes (scheduled on its Asset).
ASSET_DAGS = {"dropbox_team_log_report", "dropbox_team_log_detections"}
#: Scheduled on the Asset too, but created paused: a copy not every deployment wants.
OPTIONAL_ASSET_DAGS = {"dropbox_team_log_ocsf_export"}
EXPECTED = SYNC_DAGS | ASSET_DAGS | OPTIONAL_ASSET_DAGS


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


@pytest.mark.parametrize("dag_id", sorted(SYNC_DAGS))
def test_tags_retries_and_single_writer(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "dropbox" in dag.tags
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
    sync = dag.get_task("sync_day")
    assert sync.pool == "dropbox_api"
    assert [outlet.name for outlet in sync.outlets] == ["dropbox_team_log_events"]


def test_incremental_polls_each_team_s_tail_before_planning(dagbag):
    dag = dagbag.dags["dropbox_team_log_incremental"]
    plan = dag.get_task("plan_days")
    assert plan.upstream_task_ids == {"tail"}
    assert plan.trigger_rule == "all_done"  # a failed poll leaves its time to the day tasks
    tail = dag.get_task("tail")
    assert tail.pool == "dropbox_api"
    assert tail.upstream_task_ids == {"tail_teams"}  # mapped: one poll per registered team
    assert type(tail).__name__.endswith("MappedOperator")
    assert "tail" not in dagbag.dags["dropbox_team_log_backfill"].task_ids


@pytest.mark.parametrize("dag_id", sorted(ASSET_DAGS | OPTIONAL_ASSET_DAGS))
def test_asset_dags_run_after_every_dataset_update_from_the_start(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "dropbox" in dag.tags and dag.max_active_runs == 1 and dag.catchup is False
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == [
        "dropbox_team_log_events"
    ]
    # nobody has to find and unpause them; the optional ones wait for someone to want them
    assert dag.is_paused_upon_creation is (dag_id in OPTIONAL_ASSET_DAGS)
    for task in dag.tasks:
        assert task.retries >= 1 and task.on_failure_callback, task.task_id


def test_the_ocsf_export_is_one_task(dagbag):
    dag = dagbag.dags["dropbox_team_log_ocsf_export"]
    assert [t.task_id for t in dag.tasks] == ["export_ocsf"]
    assert "ocsf" in dag.tags


def test_detections_evaluate_then_notify(dagbag):
    dag = dagbag.dags["dropbox_team_log_detections"]
    assert [t.task_id for t in dag.tasks] == ["evaluate_detections", "notify_findings"]
    assert dag.get_task("notify_findings").upstream_task_ids == {"evaluate_detections"}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_every_param_has_a_title_and_says_its_range_or_format(dagbag, dag_id):
    for name, param in dagbag.dags[dag_id].params.items():
        schema, description = param.schema, param.description or ""
        assert schema.get("title") and description, (dag_id, name)
        if "maximum" in schema:  # the form clamps numbers silently: the range must be written
            assert f"from {schema['minimum']} to {schema['maximum']}" in description
        if "minimum" in schema and "maximum" not in schema:
            assert "at least" in description, (dag_id, name)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (None, True),
        ("2026-11-01", True),
        ("2026-11-01T06:30:00Z", True),
        ("yesterday", False),
        ("2026-11-01 06:30", False),
        ("2026-11-01T06:30:00+02:00", False),
    ],
)
def test_start_and_end_take_a_utc_day_or_second_only(dagbag, value, accepted):
    from airflow.sdk.exceptions import ParamValidationError

    for name in ("start", "end"):
        param = dagbag.dags["dropbox_team_log_backfill"].params.get_param(name)
        assert "YYYY-MM-DD" in param.description
        if accepted:
            assert param.resolve(value) == value
        else:
            with pytest.raises(ParamValidationError):
                param.resolve(value)


def test_incremental_schedule_and_backfill_is_manual(dagbag):
    assert type(dagbag.dags["dropbox_team_log_backfill"].timetable).__name__ == "NullTimetable"
    assert dagbag.dags["dropbox_team_log_incremental"].catchup is False


def test_a_backfill_cannot_starve_the_incremental_and_new_teams_get_one(dagbag):
    """Both sync DAGs share the pool: a backfill holds at most two of its slots, and the
    incremental's day tasks go first; the incremental starts new teams' backfills itself."""
    backfill = dagbag.dags["dropbox_team_log_backfill"]
    incremental = dagbag.dags["dropbox_team_log_incremental"]
    assert backfill.get_task("sync_day").max_active_tis_per_dagrun == 2
    assert backfill.is_paused_upon_creation is False  # a triggered run must not sit queued
    backfill_weight = backfill.get_task("sync_day").priority_weight
    assert incremental.get_task("sync_day").priority_weight > backfill_weight
    start = incremental.get_task("start_backfill")
    assert start.partial_kwargs["trigger_dag_id"] == "dropbox_team_log_backfill"
    assert start.upstream_task_ids == {"plan_backfills"}
    assert incremental.get_task("record_backfills").upstream_task_ids == {
        "plan_backfills",
        "start_backfill",
    }
    assert incremental.get_task("record_backfills").trigger_rule == "none_failed"


FORBIDDEN_AT_TOP_LEVEL = {
    "Variable",
    "Connection",
    "DropboxTeamHook",
    "EventDataset",
    "requests",
    "dropbox",
}


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_no_db_or_api_access_at_parse_time(path):
    """Only declarations at module level: heavy imports and I/O live inside the tasks."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = {alias.name.split(".")[0] for alias in node.names}
            module = getattr(node, "module", "") or ""
            assert not names & FORBIDDEN_AT_TOP_LEVEL, f"{path.name}: imports {names}"
            assert module in (
                "__future__",
                "datetime",
                "airflow.sdk",
                "dropbox_team_log",
                "dropbox_team_log.tasks",
            ), module
    source = path.read_text()
    for call in ("Variable.get", "get_connection", ".get_team_info", "read_coverage"):
        assert call not in source, f"{path.name} calls {call} at parse time"
