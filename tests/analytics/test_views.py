"""The analyst views answer from the data: each view's rows are recomputed here in plain Python
from `raw_event` (read with pyarrow, not DuckDB) and compared as multisets, duplicates counted.

The dataset is emulator data synced through the real sync layer, plus Dropbox's spec examples
(one event per type) and hostile names (tests/analyst_data.py).
"""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter

import fsspec
import pytest

from dropbox_team_log.analytics import views as query
from dropbox_team_log.cli import main as cli
from tests.helpers.analyst_data import emulator_dataset, raw_rows, ts_text

OUTSIDERS = {"non_team_member", "trusted_non_team_member"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    with emulator_dataset(tmp_path_factory.mktemp("query") / "dataset") as path:
        yield path


@pytest.fixture(scope="module")
def rows(root):
    return raw_rows(root)


@pytest.fixture(scope="module")
def con(root):
    con = query.connect(str(root))
    yield con
    con.close()


def view(con, sql: str) -> Counter:
    return Counter(
        tuple(
            ts_text(v) if hasattr(v, "astimezone") else tuple(v) if isinstance(v, list) else v
            for v in row
        )
        for row in con.execute(sql).fetchall()
    )


# --- the rules, restated in Python over the raw events -----------------------------------------


def actor_parts(e: dict) -> tuple[str | None, str | None, str | None]:
    """(actor tag, user type, email) of the event's actor."""
    actor = e.get("actor") or {}
    tag = actor.get(".tag")
    if tag in ("user", "admin"):
        user = actor.get(tag) or {}
        return tag, user.get(".tag"), user.get("email")
    if tag == "reseller":
        return tag, None, actor.get("reseller_email")
    return tag, None, None


def unauthenticated(e: dict) -> bool:
    tag = (e.get("actor") or {}).get(".tag")
    return tag == "anonymous" or (
        tag is None and (e.get("context") or {}).get(".tag") == "anonymous"
    )


def first_asset(e: dict) -> dict:
    return (e.get("assets") or [{}])[0]


def asset_name(e: dict) -> str | None:
    a = first_asset(e)
    return (
        a.get("display_name")
        or a.get("doc_title")
        or a.get("showcase_title")
        or a.get("folder_name")
    )


def asset_path(e: dict) -> str | None:
    path = first_asset(e).get("path") or {}
    return path.get("contextual") or (path.get("namespace_relative") or {}).get("relative_path")


def outsiders(e: dict) -> list[str]:
    _, user_type, email = actor_parts(e)
    found = {email} if user_type in OUTSIDERS and email else set()
    for p in e.get("participants") or []:
        user = p.get("user") or {}
        if user.get(".tag") in OUTSIDERS and user.get("email"):
            found.add(user["email"])
    for u in (e.get("details") or {}).get("external_users") or []:
        if u.get("user_identifier"):
            found.add(u["user_identifier"])
    return sorted(found)


def details(e: dict) -> dict:
    return e.get("details") or {}


# --- tests --------------------------------------------------------------------------------------


def test_every_view_has_rows_to_compare(con):
    for name in query.VIEW_NAMES:
        sql = f"SELECT count(*) FROM {name}"  # ruff: ignore[hardcoded-sql-expression]
        assert con.execute(sql).fetchall()[0][0] > 0, name


def test_events_holds_every_row_and_the_extracted_fields(con, rows):
    got = view(
        con,
        "SELECT raw_event, CAST(event_date AS VARCHAR), asset_name, asset_path, shared_link, "
        "content_owner_email, login_method, error_message, context_email, external_parties "
        "FROM events",
    )
    got = Counter((json.dumps(json.loads(r[0]), sort_keys=True), *r[1:]) for r in got.elements())
    want = Counter()
    for day, e in rows:
        d = details(e)
        owner = (d.get("shared_link_owner") or {}).get("email") or (
            d.get("shared_content_owner") or {}
        ).get("email")
        key = (
            json.dumps(e, sort_keys=True),
            day,
            asset_name(e),
            asset_path(e),
            d.get("shared_content_link"),
            owner,
            (d.get("login_method") or {}).get(".tag"),
            (d.get("error_details") or {}).get("user_friendly_message"),
            (e.get("context") or {}).get("email"),
            tuple(outsiders(e)),
        )
        want[key] += 1
    assert sum(got.values()) == sum(want.values()) == len(rows)
    assert got == want


def test_unauthenticated_access(con, rows):
    got = view(
        con,
        "SELECT timestamp, event_type, shared_link, asset_name, asset_path, ip_address, "
        "country, city FROM unauthenticated_access",
    )
    want = Counter()
    for _, e in rows:
        if unauthenticated(e):
            geo = (e.get("origin") or {}).get("geo_location") or {}
            key = (
                e["timestamp"],
                e["event_type"][".tag"],
                details(e).get("shared_content_link"),
                asset_name(e),
                asset_path(e),
                geo.get("ip_address"),
                geo.get("country"),
                geo.get("city"),
            )
            want[key] += 1
    assert got == want
    assert any(k[2] for k in want), "no shared link URL among the anonymous opens"
    assert len({k[6] for k in want}) > 5, "too few countries to mean anything"


def test_external_sharing(con, rows):
    got = view(
        con,
        "SELECT timestamp, event_type, direction, actor_email, external_parties FROM "
        "external_sharing",
    )
    want = Counter()
    for _, e in rows:
        _, user_type, email = actor_parts(e)
        parties = outsiders(e)
        if unauthenticated(e):
            continue
        if e.get("involve_non_team_member") is True or user_type in OUTSIDERS or parties:
            direction = "outsider_access" if user_type in OUTSIDERS else "team_share"
            want[e["timestamp"], e["event_type"][".tag"], direction, email, tuple(parties)] += 1
    assert got == want
    assert {k[2] for k in want} == {"outsider_access", "team_share"}


def test_sign_ins(con, rows):
    got = view(
        con,
        "SELECT timestamp, event_type, outcome, user_email, login_method, error_message, "
        "country FROM sign_ins",
    )
    want = Counter()
    for _, e in rows:
        kind = e["event_type"][".tag"]
        if kind not in ("login_success", "login_fail", "sso_error", "emm_error"):
            continue
        _, _, email = actor_parts(e)
        d = details(e)
        key = (
            e["timestamp"],
            kind,
            "success" if kind == "login_success" else "failure",
            email or (e.get("context") or {}).get("email"),
            (d.get("login_method") or {}).get(".tag"),
            (d.get("error_details") or {}).get("user_friendly_message"),
            ((e.get("origin") or {}).get("geo_location") or {}).get("country"),
        )
        want[key] += 1
    assert got == want
    assert {k[2] for k in want} == {"success", "failure"}


def test_admin_actions(con, rows):
    got = view(
        con,
        "SELECT timestamp, event_type, admin_email, target_email, target_group FROM admin_actions",
    )
    want = Counter()
    for _, e in rows:
        tag, _, email = actor_parts(e)
        method = ((e.get("origin") or {}).get("access_method") or {}).get(".tag")
        if tag != "admin" and method not in ("admin_console", "enterprise_console", "sign_in_as"):
            continue
        groups = [p for p in e.get("participants") or [] if p.get(".tag") == "group"]
        key = (
            e["timestamp"],
            e["event_type"][".tag"],
            email if tag == "admin" else None,
            (e.get("context") or {}).get("email"),
            groups[0].get("display_name") if groups else None,
        )
        want[key] += 1
    assert got == want
    assert any(k[4] for k in want), "no group target among the admin actions"


def test_an_empty_dataset_gives_empty_views_with_their_columns(tmp_path):
    con = query.connect(str(tmp_path / "nothing-yet"))
    columns = query.view_columns(con)
    assert set(columns) == set(query.VIEW_NAMES)
    assert ("external_parties", "VARCHAR[]") in columns["events"]
    for name in query.VIEW_NAMES:
        sql = f"SELECT count(*) FROM {name}"  # ruff: ignore[hardcoded-sql-expression]
        assert con.execute(sql).fetchall() == [(0,)], name


def test_an_object_store_root_answers_like_the_local_one(root, con):
    """A non-local fsspec root goes through DuckDB's registered filesystem (here: memory://)."""
    fs = fsspec.filesystem("memory")
    for path in root.rglob("*.parquet"):
        fs.pipe(f"/analyst/{path.relative_to(root).as_posix()}", path.read_bytes())
    remote = query.connect("memory://analyst")
    sql = "SELECT event_date, auth_status, count(*) FROM events GROUP BY ALL ORDER BY ALL"
    assert remote.execute(sql).fetchall() == con.execute(sql).fetchall()
    remote.close()


def test_reports_folder_in_the_root_is_not_read(root, con, tmp_path):
    copy = tmp_path / "with-reports"
    shutil.copytree(root, copy)
    (copy / "_reports").mkdir()
    (copy / "_reports" / "stray.parquet").write_bytes(b"not parquet")
    other = query.connect(str(copy))
    sql = "SELECT count(*) FROM events"
    assert other.execute(sql).fetchall() == con.execute(sql).fetchall()


def test_query_command_runs_sql_with_the_views(root, con, capsys, monkeypatch):
    sql = "SELECT country, count(*) AS n FROM unauthenticated_access GROUP BY 1 ORDER BY 2 DESC, 1"
    assert cli.main(["query", "--root", str(root), "--format", "csv", sql]) == 0
    out = capsys.readouterr().out.splitlines()
    want = con.execute(sql).fetchall()
    assert out[0] == "country,n"
    assert out[1:] == [f"{c},{n}" for c, n in want]
    # No --root: the DAGs' dataset (the Variable, here through its environment variable).
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT count(*) AS n FROM sign_ins;"))
    assert cli.main(["query", "--format", "json"]) == 0
    n = con.execute("SELECT count(*) FROM sign_ins").fetchall()[0][0]
    assert json.loads(capsys.readouterr().out) == {"n": n}


def test_query_command_reports_bad_sql(root, capsys):
    assert cli.main(["query", "--root", str(root), "SELECT nope FROM events"]) == 1
    assert "nope" in capsys.readouterr().err
