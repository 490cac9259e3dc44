"""Every event becomes an OCSF 1.1 record that validates against the published OCSF schema.

The schema is OCSF's own export (schema.ocsf.io) as the `ocsf-json-schema` package ships it,
turned into JSON Schema per class and profile and checked with `jsonschema`: every attribute's
type, enum, pattern and requirement, and no attribute the class does not define. The data: the
emulator dataset synced through the real sync layer, holding Dropbox's spec example of each of
the 631 event types and event types the SDK does not know (tests/helpers/analyst_data.py), plus
hand-made edge cases written through the real transform and store (no actor, no origin, no
asset, tokens where addresses were, an unknown category).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import cache

import jsonschema
import pytest
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from dropbox_team_log import settings
from dropbox_team_log.analytics import ocsf, ocsf_map, views
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.transform.events import events_to_batch
from tests.helpers.analyst_data import SPEC_FIXTURE, emulator_dataset, raw_rows

EDGE_DAY = date(2026, 3, 1)


@cache
def _validator(class_uid: int, profiles: tuple[str, ...]) -> jsonschema.Draft202012Validator:
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(settings.OCSF_VERSION))
    name = schema.lookup_class_name_from_uid(class_uid)
    return jsonschema.Draft202012Validator(schema.get_class_schema(name, list(profiles)))


def schema_errors(record: dict) -> list[str]:
    """What the OCSF schema of the record's class (with the profiles it declares) rejects."""
    validator = _validator(record["class_uid"], tuple(record["metadata"]["profiles"]))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(record)
    ]


def invalid_records(rows: list[dict]) -> Counter:
    """(event type, error) of every schema error of the rows' records."""
    found: Counter = Counter()
    for row in rows:
        record = ocsf.record_json(row)
        for error in schema_errors(record):
            found[record["metadata"]["event_code"], error[:300]] += 1
    return found


def ocsf_rows(root) -> list[dict]:
    con = views.connect(str(root))
    try:
        ocsf.register_view(con, views.SOURCE_VIEW)
        return con.sql("SELECT * FROM ocsf_events").to_arrow_table().to_pylist()
    finally:
        con.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    with emulator_dataset(tmp_path_factory.mktemp("ocsf") / "dataset") as path:
        yield path


@pytest.fixture(scope="module")
def rows(root) -> list[dict]:
    return ocsf_rows(root)


def spec_types() -> set[str]:
    lines = SPEC_FIXTURE.read_text().splitlines()
    return {json.loads(line)["event_type"][".tag"] for line in lines if line.strip()}


# --- validation ---------------------------------------------------------------------------------


def test_every_record_of_every_event_type_validates(root, rows):
    types = Counter(row["metadata"]["event_code"] for row in rows)
    assert len(spec_types()) == 631
    assert spec_types() <= set(types), "some spec event types have no record"
    unknown = set(types) - spec_types()
    assert unknown, "the dataset holds no event type unknown to the spec: nothing tested there"
    assert len(rows) == len(raw_rows(root))
    assert invalid_records(rows) == Counter()


def test_the_validation_rejects_what_ocsf_forbids(rows):
    """The check can fail: a record missing a required attribute, with an attribute its class
    does not define, or with a value outside an enum, is rejected."""
    record = ocsf.record_json(next(r for r in rows if r["class_uid"] == ocsf_map.FILE_HOSTING))
    assert schema_errors(record) == []
    assert schema_errors({k: v for k, v in record.items() if k != "file"})
    assert schema_errors({**record, "entity": {"name": "x"}})
    assert schema_errors({**record, "activity_id": 42})
    assert schema_errors({**record, "src_endpoint": {"ip": "not an address"}})


def test_raw_data_is_the_event_exactly(root, rows):
    dataset = Counter(json.dumps(event, sort_keys=True) for _, event in raw_rows(root))
    exported = Counter(json.dumps(json.loads(row["raw_data"]), sort_keys=True) for row in rows)
    assert exported == dataset
    con = views.connect(str(root))
    try:
        raw_bytes = Counter(r for (r,) in con.execute("SELECT raw_event FROM events").fetchall())
    finally:
        con.close()
    assert Counter(row["raw_data"] for row in rows) == raw_bytes  # the API's own bytes


def test_unmapped_holds_the_fields_ocsf_has_no_attribute_for(rows):
    for row in rows:
        record = ocsf.record_json(row)
        event = json.loads(row["raw_data"])
        unmapped = record["unmapped"]
        for field in ("details", "assets", "participants", "context", "involve_non_team_member"):
            assert unmapped.get(field) == event.get(field), field
        assert unmapped.get("event_category") == (event.get("event_category") or {}).get(".tag")
        assert unmapped.get("access_method") == (event.get("origin") or {}).get("access_method")


# --- the mapping --------------------------------------------------------------------------------


def test_the_class_follows_the_category(rows):
    by_category: dict[str, set[int]] = {}
    for row in rows:
        category = json.loads(row["raw_data"])["event_category"][".tag"]
        by_category.setdefault(category, set()).add(row["class_uid"])
    assert by_category["file_operations"] == by_category["sharing"] == {6006}
    assert by_category["logins"] == {3002, 3001}  # account_lock_or_unlocked: Account Change
    assert by_category["passwords"] == by_category["tfa"] == {3001}
    assert by_category["groups"] == {3004, 3006}
    assert by_category["members"] == {3004, 3005}
    assert by_category["apps"] == by_category["team_policies"] == {3004}
    assert by_category["devices"] == by_category["reports"] == {ocsf_map.FALLBACK_CLASS}


@pytest.mark.parametrize(
    ("event_type", "category", "new_value", "class_uid", "activity"),
    [
        ("file_download", "file_operations", None, 6006, "Download"),
        ("shared_link_view", "sharing", None, 6006, "Open"),
        ("shared_link_create", "sharing", None, 6006, "Share"),
        ("shared_content_remove_member", "sharing", None, 6006, "Unshare"),
        ("shared_link_settings_allow_download_enabled", "sharing", None, 6006, "Other"),
        ("file_add", "file_operations", None, 6006, "Upload"),
        ("file_permanently_delete", "file_operations", None, 6006, "Delete"),
        ("showcase_file_removed", "showcase", None, 6006, "Delete"),
        ("file_move", "file_operations", None, 6006, "Move"),
        ("paper_doc_untrashed", "paper", None, 6006, "Restore"),
        ("login_success", "logins", None, 3002, "Logon"),
        ("sign_in_as_session_end", "logins", None, 3002, "Logoff"),
        ("tfa_change_status", "tfa", "disabled", 3001, "MFA Factor Disable"),
        ("tfa_change_status", "tfa", "authenticator", 3001, "MFA Factor Enable"),
        ("password_reset", "passwords", None, 3001, "Password Reset"),
        ("member_change_admin_role", "members", "team_admin", 3005, "Assign Privileges"),
        ("member_change_admin_role", "members", "member_only", 3005, "Revoke Privileges"),
        ("group_remove_member", "groups", None, 3006, "Remove User"),
        ("app_link_team", "apps", None, 3004, "Create"),
        ("group_delete", "groups", None, 3004, "Delete"),
        ("a_type_from_next_year", "a_category_from_next_year", None, 6003, "Other"),
    ],
)
def test_activities(event_type, category, new_value, class_uid, activity):
    kind = ocsf_map.kind(event_type, category, new_value)
    assert (kind["class_uid"], kind["type_name"].split(": ")[1]) == (class_uid, activity)
    assert kind["type_uid"] == class_uid * 100 + kind["activity_id"]


def test_failed_sign_ins_are_failures(rows):
    for row in rows:
        code = row["metadata"]["event_code"]
        if code in ("login_fail", "sso_error", "emm_error"):
            assert (row["class_uid"], row["status"]) == (3002, "Failure")
            assert row["status_detail"] == json.loads(row["raw_data"])["details"].get(
                "error_details", {}
            ).get("user_friendly_message")
        elif code == "login_success":
            assert row["status"] == "Success"
            record = ocsf.record_json(row)
            assert record["user"]["uid"] == json.loads(row["raw_data"])["context"]["account_id"]


def not_signed_in(event: dict) -> bool:
    """The dataset's auth_status rule (docs/data_dictionary.md): who did not sign in."""
    actor = event.get("actor")
    if actor is not None:
        return actor.get(".tag") == "anonymous"
    return (event.get("context") or {}).get(".tag") == "anonymous"


def test_link_visitors_who_did_not_sign_in_are_an_unauthenticated_actor(rows):
    anonymous = [r for r in rows if not_signed_in(json.loads(r["raw_data"]))]
    assert len(anonymous) > 12  # the hostile opens, the spec's and the emulator's visits
    for row in anonymous:
        assert row["actor"]["user"]["type"] == "Unauthenticated"
        assert row["actor"]["user"]["type_id"] == 99
        assert row["actor"]["user"]["uid"] is None
    unauthenticated = [
        r for r in rows if r["actor"]["user"] and r["actor"]["user"]["type"] == "Unauthenticated"
    ]
    assert len(unauthenticated) == len(anonymous)
    opens = [r for r in anonymous if r["metadata"]["event_code"] == "shared_link_view"]
    assert opens and {(r["class_uid"], r["activity_name"]) for r in opens} == {(6006, "Open")}


# --- edge cases, written through the real transform and store ------------------------------------


def _event(event_type: str, category: str, **fields) -> dict:
    return {
        "timestamp": "",
        "event_category": {".tag": category},
        "event_type": {".tag": event_type, "description": f"({category}) {event_type}"},
        "details": {".tag": f"{event_type}_details"},
        **fields,
    }


MEMBER = {
    ".tag": "team_member",
    "account_id": "dbid:AAA",
    "display_name": "Ann",
    "email": "ann@example.com",
}
EDGE_EVENTS = {
    "unknown category": _event(
        "quantum_sync_enabled", "quantum", actor={".tag": "user", "user": MEMBER}, context=MEMBER
    ),
    "unknown type in a known category": _event(
        "shared_link_teleport",
        "sharing",
        actor={".tag": "user", "user": MEMBER},
        assets=[{".tag": "folder", "path": {"contextual": "/Team/Plans"}, "display_name": "Plans"}],
    ),
    "no actor, anonymous context": _event(
        "shared_link_view", "sharing", context={".tag": "anonymous"}, assets=[]
    ),
    "nothing but the type": _event("file_delete", "file_operations"),
    "pseudonymised addresses": _event(
        "file_download",
        "file_operations",
        actor={".tag": "user", "user": {**MEMBER, "email": "hmac:0123456789abcdef"}},
        origin={"geo_location": {"ip_address": "hmac:fedcba9876543210"}},
        assets=[{".tag": "file", "path": {"contextual": "/a/b.txt"}}],
    ),
    "IPv6": _event(
        "login_success",
        "logins",
        actor={".tag": "user", "user": MEMBER},
        origin={"geo_location": {"ip_address": "2001:db8::1", "country": "DE"}},
        details={".tag": "login_success_details", "login_method": {".tag": "saml"}},
    ),
    "failed sign-in, no actor": _event(
        "login_fail",
        "logins",
        context={".tag": "non_team_member", "email": "mallory@evil.example"},
        details={".tag": "login_fail_details", "error_details": {"user_friendly_message": "no"}},
    ),
    "group member added": _event(
        "group_add_member",
        "groups",
        actor={".tag": "admin", "admin": MEMBER},
        participants=[
            {".tag": "group", "group_id": "g:1", "display_name": "Finance"},
            {
                ".tag": "user",
                "user": {**MEMBER, "account_id": "dbid:BBB", "email": "bob@example.com"},
            },
        ],
    ),
    "group created": _event(
        "group_create",
        "groups",
        actor={".tag": "admin", "admin": MEMBER},
        participants=[{".tag": "group", "group_id": "g:2", "display_name": "Legal"}],
    ),
    "2FA turned on": _event(
        "tfa_change_status",
        "tfa",
        actor={".tag": "user", "user": MEMBER},
        details={".tag": "tfa_change_status_details", "new_value": {".tag": "enabled"}},
    ),
}


@pytest.fixture(scope="module")
def edge_rows(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("ocsf-edge") / "dataset"
    start = datetime(EDGE_DAY.year, EDGE_DAY.month, EDGE_DAY.day, tzinfo=UTC)
    events = []
    for i, event in enumerate(EDGE_EVENTS.values()):
        events.append(
            {**event, "timestamp": (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        )
    batch = events_to_batch(events, team_id="dbtid:edge", ingested_at=datetime.now(UTC))
    first = int(start.timestamp())
    EventDataset(str(root)).write_day(
        EDGE_DAY, [(first, first + 86400)], [batch], first + 2 * 86400
    )
    by_time = sorted(ocsf_rows(root), key=lambda r: r["time"])
    return dict(zip(EDGE_EVENTS, by_time, strict=True))


def test_edge_cases_validate(edge_rows):
    assert invalid_records(list(edge_rows.values())) == Counter()


def test_edge_cases_map_as_documented(edge_rows):
    record = {name: ocsf.record_json(row) for name, row in edge_rows.items()}
    unknown = record["unknown category"]
    assert (unknown["class_uid"], unknown["activity_id"]) == (ocsf_map.FALLBACK_CLASS, 99)
    assert unknown["activity_name"] == unknown["api"]["operation"] == "quantum_sync_enabled"
    teleport = record["unknown type in a known category"]
    assert (teleport["class_uid"], teleport["activity_name"]) == (6006, "shared_link_teleport")
    assert teleport["file"] == {
        "name": "Plans",
        "path": "/Team/Plans",
        "type_id": 2,
        "type": "Folder",
    }
    assert record["no actor, anonymous context"]["actor"]["user"]["type"] == "Unauthenticated"
    bare = record["nothing but the type"]
    assert bare["file"]["name"] == bare["src_endpoint"]["name"] == ocsf.UNKNOWN
    assert bare["actor"]["user"]["type_id"] == 0
    tokens = record["pseudonymised addresses"]
    assert "email_addr" not in tokens["actor"]["user"]
    assert tokens["src_endpoint"] == {"uid": "hmac:fedcba9876543210"}
    assert tokens["file"]["name"] == "b.txt"
    ipv6 = record["IPv6"]
    assert ipv6["src_endpoint"] == {"ip": "2001:db8::1", "location": {"country": "DE"}}
    assert (ipv6["auth_protocol_id"], ipv6["is_mfa"]) == (5, False)
    failed = record["failed sign-in, no actor"]
    assert failed["user"] == {"name": "mallory@evil.example", "email_addr": "mallory@evil.example"}
    assert failed["status_detail"] == "no"
    added = record["group member added"]
    assert added["group"] == {"uid": "g:1", "name": "Finance"}
    assert added["user"]["email_addr"] == "bob@example.com"
    assert record["group created"]["entity"] == {"uid": "g:2", "name": "Legal", "type": "Group"}
    assert record["2FA turned on"]["activity_name"] == "MFA Factor Enable"
