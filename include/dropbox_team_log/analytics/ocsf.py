"""Every event as an OCSF record: the `ocsf_events` DuckDB view and the record as OCSF JSON.

The records are built in SQL (DuckDB, vectorised: the export's speed) from the dataset's flat
columns and its JSON text. What the event type decides (class, activity, status, profiles) comes
from `ocsf_map.kind`, registered as a DuckDB function and called once per distinct type, not per
row. One row of `ocsf_events` holds the attributes of every class (NULL where its class has no
such attribute); `CLASS_COLUMNS` says which belong to which class, and `record_json` turns a row
into the OCSF JSON object a validator or an HTTP collector expects. `raw_data` is the API's own
bytes of the event; the event's parts OCSF has no attribute for are under `unmapped`, a struct
with one member per Dropbox field holding its value as JSON text (the shapes vary by event type;
`record_json` turns them back into JSON values). The mapping and its reasons: docs/ocsf.md.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import duckdb

from dropbox_team_log.analytics import ocsf_map
from dropbox_team_log.schema import PARTITION_KEY

VIEW_NAME = "ocsf_events"
_KIND_FUNCTION = "dropbox_team_log_ocsf_kind"
PRODUCT_NAME = "Dropbox Business team activity log"
VENDOR_NAME = "Dropbox"
#: Set where OCSF requires a value that the event does not carry (a name, an endpoint).
UNKNOWN = "Unknown"
#: OCSF 1.1's `email_t` and a strict IPv4 / plain IPv6 shape: a value of another shape (e.g. a
#: pseudonymised `hmac:` token) goes to a `uid` or stays in `raw_data`, never into a typed field.
EMAIL_PATTERN = r"[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9.-]+"
IP_PATTERN = (
    r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"|[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}"
)

COMMON_COLUMNS = (
    "class_uid", "class_name", "category_uid", "category_name", "activity_id", "activity_name",
    "type_uid", "type_name", "severity_id", "severity", "status_id", "status", "status_detail",
    "time", "timezone_offset", "message", "metadata", "cloud", "actor", "raw_data", "unmapped",
)  # fmt: skip
#: The attributes each class's records have (OCSF 1.1: the IAM management classes have no
#: `src_endpoint`; their origin stays in `unmapped.geo_location`).
CLASS_COLUMNS: dict[int, tuple[str, ...]] = {
    ocsf_map.FILE_HOSTING: (*COMMON_COLUMNS, "src_endpoint", "file"),
    ocsf_map.AUTHENTICATION: (
        *COMMON_COLUMNS,
        "src_endpoint",
        "user",
        "service",
        "auth_protocol_id",
        "auth_protocol",
        "is_mfa",
    ),
    ocsf_map.ACCOUNT_CHANGE: (*COMMON_COLUMNS, "src_endpoint", "user"),
    ocsf_map.ENTITY_MANAGEMENT: (*COMMON_COLUMNS, "entity"),
    ocsf_map.USER_ACCESS: (*COMMON_COLUMNS, "user", "privileges"),
    ocsf_map.GROUP_MANAGEMENT: (*COMMON_COLUMNS, "group", "user", "privileges"),
    ocsf_map.API_ACTIVITY: (*COMMON_COLUMNS, "src_endpoint", "api", "resources"),
}
_WITHOUT_ENDPOINT = tuple(c for c, cols in CLASS_COLUMNS.items() if "src_endpoint" not in cols)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(values: tuple[str, ...] | tuple[int, ...]) -> str:
    return "(" + ", ".join(_quote(v) if isinstance(v, str) else str(v) for v in values) + ")"


def _struct(**fields: str) -> str:
    return "struct_pack(" + ", ".join(f'"{k}" := {v}' for k, v in fields.items()) + ")"


def _email(expr: str) -> str:
    return f"CASE WHEN regexp_full_match({expr}, {_quote(EMAIL_PATTERN)}) THEN {expr} END"


def _user(uid: str, name: str, email: str, type_id: str = "NULL", type_: str = "NULL") -> str:
    return _struct(
        uid=f"{uid}::VARCHAR",
        name=f"{name}::VARCHAR",
        email_addr=_email(f"{email}::VARCHAR"),
        type_id=f"{type_id}::INTEGER",
        type=f"{type_}::VARCHAR",
    )


# Paths read once per row with a list-of-paths extraction (one JSON parse per column).
_RAW_PATHS = ("$.context", "$.origin.access_method", "$.origin.geo_location")
_ASSET_PATHS = (
    '$[0].".tag"', "$[0].display_name", "$[0].doc_title", "$[0].showcase_title",
    "$[0].folder_name", "$[0].path.contextual", "$[0].path.namespace_relative.relative_path",
    "$[0].file_id", "$[0].doc_id", "$[0].showcase_id", "$[0].folder_id", "$[0].file_size",
)  # fmt: skip
_DETAIL_PATHS = (
    "$.shared_link_owner.account_id", "$.shared_link_owner.display_name",
    "$.shared_link_owner.email", "$.shared_content_owner.account_id",
    "$.shared_content_owner.display_name", "$.shared_content_owner.email",
    '$.login_method.".tag"', "$.error_details.user_friendly_message",
    "$.error_details.technical_error_message", "$.app_info.app_id", "$.app_info.display_name",
    "$.is_group_owner", '$.previous_value.".tag"', "$.domain_name",
)  # fmt: skip


def _at(name: str, paths: tuple[str, ...], path: str) -> str:
    return f"{name}[{paths.index(path) + 1}]"


def _raw(path: str) -> str:
    """A part of the raw event, as JSON."""
    return _at("_raw", _RAW_PATHS, path)


def _context(field: str) -> str:
    """A field of the event's context (read only in the branches of the classes that use it)."""
    return f"({_raw('$.context')} ->> {_quote(field)})"


def _asset(path: str) -> str:
    return _at("_asset", _ASSET_PATHS, path)


def _detail(path: str) -> str:
    return _at("_detail", _DETAIL_PATHS, path)


def _participant(tag: str) -> str:
    """The first participant of a kind ('user' or 'group'), as JSON."""
    return (
        "list_filter(CAST(json_extract(participants, '$[*]') AS JSON[]), "
        f"lambda p: (p ->> '.tag') = {_quote(tag)})[1]"
    )


def _actor() -> str:
    known = _user(
        "actor_account_id",
        "coalesce(actor_display_name, actor_email)",
        "actor_email",
        "CASE actor_type WHEN 'admin' THEN 2 ELSE 1 END",
        "CASE actor_type WHEN 'admin' THEN 'Admin' ELSE 'User' END",
    )

    def only_user(user: str) -> str:
        return _struct(user=user, invoked_by="NULL::VARCHAR")

    unknown = _user("NULL", _quote(UNKNOWN), "NULL", "0", _quote(UNKNOWN))
    return f"""CASE
        WHEN actor_type IN ('user', 'admin') THEN {only_user(known)}
        WHEN actor_type = 'app' THEN {
        _struct(
            user=f"CAST(NULL AS {_USER_TYPE})",
            invoked_by="coalesce(actor_display_name, actor_app_id)",
        )
    }
        WHEN auth_status = 'unauthenticated' THEN {
        only_user(_user("NULL", "'Anonymous'", "NULL", "99", "'Unauthenticated'"))
    }
        WHEN actor_type = 'dropbox' THEN {
        only_user(_user("NULL", "'Dropbox'", "NULL", "3", "'System'"))
    }
        WHEN actor_type IS NOT NULL THEN {
        only_user(
            _user(
                "actor_account_id",
                "coalesce(actor_display_name, actor_email, actor_type)",
                "actor_email",
                "99",
                "actor_type",
            )
        )
    }
        ELSE {only_user(unknown)}
    END"""


_USER_TYPE = "STRUCT(uid VARCHAR, name VARCHAR, email_addr VARCHAR, type_id INTEGER, type VARCHAR)"


def _subject_user() -> str:
    """Whose account the event is about: a Group Management record's member, else the context
    (login events name the user there, not in `actor`), else the actor."""
    ctx_id, ctx_name, ctx_email = (_context(f) for f in ("account_id", "display_name", "email"))
    member = f"({_participant('user')} -> 'user')"
    from_member = _user(
        f"{member} ->> 'account_id'",
        f"coalesce({member} ->> 'display_name', {member} ->> 'email', {_quote(UNKNOWN)})",
        f"{member} ->> 'email'",
    )
    from_context = _user(
        f"CASE WHEN {ctx_id} IS NOT NULL OR {ctx_email} IS NOT NULL THEN {ctx_id} "
        "ELSE actor_account_id END",
        f"coalesce({ctx_name}, {ctx_email}, actor_display_name, actor_email, {_quote(UNKNOWN)})",
        f"CASE WHEN {ctx_id} IS NOT NULL OR {ctx_email} IS NOT NULL THEN {ctx_email} "
        "ELSE actor_email END",
    )
    return f"""CASE
        WHEN k.class_uid = {ocsf_map.GROUP_MANAGEMENT}
        THEN CASE WHEN {member} IS NOT NULL THEN {from_member} ELSE {from_context} END
        WHEN k.class_uid IN {
        _in((ocsf_map.AUTHENTICATION, ocsf_map.ACCOUNT_CHANGE, ocsf_map.USER_ACCESS))
    }
        THEN {from_context}
    END"""


def _src_endpoint() -> str:
    ip_ok = f"regexp_full_match(ip_address, {_quote(IP_PATTERN)})"
    location = _struct(city="city", region="region", country="country")
    return _struct(
        ip=f"CASE WHEN {ip_ok} THEN ip_address END",
        uid=f"CASE WHEN NOT {ip_ok} THEN ip_address END",
        name=f"CASE WHEN ip_address IS NULL THEN {_quote(UNKNOWN)} END",
        location=f"CASE WHEN coalesce(city, region, country) IS NOT NULL THEN {location} END",
    )


def _file() -> str:
    path = f"coalesce({_asset('$[0].path.contextual')}, "
    path += f"{_asset('$[0].path.namespace_relative.relative_path')})"
    tag = _asset('$[0].".tag"')
    owner_id, owner_name, owner_email = (
        f"coalesce({_detail(f'$.shared_link_owner.{f}')}, {_detail(f'$.shared_content_owner.{f}')})"
        for f in ("account_id", "display_name", "email")
    )
    owner = _user(owner_id, f"coalesce({owner_name}, {owner_email})", owner_email)
    return _struct(
        name=f"coalesce({_asset('$[0].display_name')}, {_asset('$[0].doc_title')}, "
        f"{_asset('$[0].showcase_title')}, {_asset('$[0].folder_name')}, "
        f"nullif(regexp_extract({path}, '[^/]*$'), ''), {_quote(UNKNOWN)})",
        path=path,
        uid=f"coalesce({_asset('$[0].file_id')}, {_asset('$[0].doc_id')}, "
        f"{_asset('$[0].showcase_id')}, {_asset('$[0].folder_id')})",
        size=f"TRY_CAST({_asset('$[0].file_size')} AS BIGINT)",
        type_id=f"CASE WHEN {tag} IS NULL THEN 0 WHEN {tag} = 'file' THEN 1 "
        f"WHEN {tag} = 'folder' THEN 2 ELSE 99 END",
        type=f"CASE WHEN {tag} IS NULL THEN {_quote(UNKNOWN)} WHEN {tag} = 'file' "
        f"THEN 'Regular File' WHEN {tag} = 'folder' THEN 'Folder' ELSE {tag} END",
        owner=f"CASE WHEN coalesce({owner_id}, {owner_name}, {owner_email}) IS NOT NULL "
        f"THEN {owner} END",
    )


def _entity() -> str:
    group = _participant("group")
    uid = f"""CASE k.entity_type
        WHEN 'User' THEN {_context("account_id")}
        WHEN 'Group' THEN {group} ->> 'group_id'
        WHEN 'App' THEN {_detail("$.app_info.app_id")}
    END"""
    name = f"""coalesce(CASE k.entity_type
        WHEN 'User' THEN coalesce({_context("email")}, {_context("display_name")})
        WHEN 'Group' THEN {group} ->> 'display_name'
        WHEN 'App' THEN {_detail("$.app_info.display_name")}
        WHEN 'Domain' THEN {_detail("$.domain_name")}
    END, event_type)"""
    return _struct(uid=uid, name=name, type="k.entity_type")


def _privileges() -> str:
    previous = _detail('$.previous_value.".tag"')
    role = f"coalesce(k_new_value, {previous}, event_type)"
    owner = _detail("$.is_group_owner")
    return f"""CASE
        WHEN k.class_uid = {ocsf_map.USER_ACCESS} THEN [{role}]
        WHEN event_type = 'group_change_member_role'
        THEN [CASE WHEN {owner} = 'true' THEN 'group_owner' ELSE 'group_member' END]
    END"""


def _resources() -> str:
    def field(*names: str) -> str:
        return "coalesce(" + ", ".join(f"a ->> {_quote(n)}" for n in names) + ")"

    resource = _struct(
        uid=field("file_id", "doc_id", "showcase_id", "folder_id"),
        name=field("display_name", "doc_title", "showcase_title", "folder_name"),
        type="a ->> '.tag'",
    )
    return (
        f"list_filter(list_transform(CAST(json_extract(assets, '$[*]') AS JSON[]), "
        f"lambda a: {resource}), lambda r: r.uid IS NOT NULL OR r.name IS NOT NULL)"
    )


def _unmapped() -> str:
    """The event's fields OCSF has no attribute for: a struct of their JSON text (the API's own
    bytes for details, assets and participants), one member per Dropbox field.

    Every top-level field of Dropbox's TeamEvent is either mapped (timestamp, event_category,
    event_type, actor, origin) or here; a field Dropbox may add later is in `raw_data` only
    (finding it would cost a second parse of every event)."""
    return _struct(
        event_category="to_json(event_category)::VARCHAR",
        details="details",
        assets="assets",
        participants="participants",
        context=f"{_raw('$.context')}::VARCHAR",
        involve_non_team_member="to_json(involve_non_team_member)::VARCHAR",
        access_method=f"{_raw('$.origin.access_method')}::VARCHAR",
        geo_location=f"CASE WHEN k.class_uid IN {_in(_WITHOUT_ENDPOINT)} "
        f"THEN {_raw('$.origin.geo_location')}::VARCHAR END",
        actor_user_type="to_json(actor_user_type)::VARCHAR",
        actor_app_id="to_json(actor_app_id)::VARCHAR",
    )


def _metadata() -> str:
    return _struct(
        version=_quote(ocsf_map.VERSION),
        product=_struct(vendor_name=_quote(VENDOR_NAME), name=_quote(PRODUCT_NAME)),
        profiles="k.profiles",
        log_name="'team_log'",
        log_provider="'dropbox-team-log'",
        event_code="event_type",
        original_time="strftime(timestamp, '%Y-%m-%dT%H:%M:%SZ')",
        tenant_uid="team_id",
    )


def select_sql(source: str) -> str:
    """SELECT of one OCSF record per row of `source` (a relation with the dataset's columns,
    `event_date` included); needs `register_function` on the connection."""
    # The source is named twice, not shared: a CTE read twice would be materialised whole.
    new_value = (
        f"CASE WHEN event_type IN {_in(ocsf_map.VALUE_TYPES)} "
        """THEN json_extract_string(details, '$.new_value.".tag"') END"""
    )
    paths = ", ".join
    is_class = "k.class_uid = {}".format
    auth = ocsf_map.AUTHENTICATION
    login = _detail('$.login_method.".tag"')
    # Built from constants and the caller's relation: no value reaches the text.
    # ruff: disable[hardcoded-sql-expression]
    return f"""
WITH kinds AS (
    SELECT event_type AS k_type, event_category AS k_category, k_new_value AS k_value,
           {_KIND_FUNCTION}(event_type, event_category, k_new_value) AS k
    FROM (SELECT DISTINCT event_type, event_category, {new_value} AS k_new_value FROM {source})
),
src AS (SELECT *, {new_value} AS k_new_value FROM {source}),
parts AS (
    SELECT s.*, kinds.k,
        json_extract(s.raw_event, [{paths(map(_quote, _RAW_PATHS))}]) AS _raw,
        json_extract_string(s.assets, [{paths(map(_quote, _ASSET_PATHS))}]) AS _asset,
        json_extract_string(s.details, [{paths(map(_quote, _DETAIL_PATHS))}]) AS _detail
    FROM src AS s JOIN kinds
      ON s.event_type = kinds.k_type
     AND s.event_category IS NOT DISTINCT FROM kinds.k_category
     AND s.k_new_value IS NOT DISTINCT FROM kinds.k_value
)
SELECT
    k.class_uid, k.class_name, k.category_uid, k.category_name, k.activity_id,
    k.activity_name, k.type_uid, k.type_name,
    1 AS severity_id, 'Informational' AS severity,
    k.status_id, k.status,
    CASE WHEN k.status_id = 2 THEN coalesce(
        {_detail("$.error_details.user_friendly_message")},
        {_detail("$.error_details.technical_error_message")}) END AS status_detail,
    epoch_ms(timestamp) AS time, 0 AS timezone_offset,
    event_type_description AS message,
    {_metadata()} AS metadata,
    {_struct(provider=_quote(VENDOR_NAME))} AS cloud,
    {_actor()} AS actor,
    CASE WHEN k.class_uid NOT IN {_in(_WITHOUT_ENDPOINT)} THEN {_src_endpoint()} END
        AS src_endpoint,
    CASE WHEN {is_class(ocsf_map.FILE_HOSTING)} THEN {_file()} END AS file,
    {_subject_user()} AS "user",
    CASE WHEN {is_class(auth)} THEN {_struct(name=_quote(VENDOR_NAME))} END AS service,
    CASE WHEN {is_class(auth)} AND {login} IS NOT NULL THEN CASE
        WHEN {login} = 'saml' THEN 5
        WHEN {login} IN ('google_oauth', 'apple_oauth', 'microsoft_oauth') THEN 6
        ELSE 99 END END AS auth_protocol_id,
    CASE WHEN {is_class(auth)} AND {login} IS NOT NULL THEN CASE
        WHEN {login} = 'saml' THEN 'SAML'
        WHEN {login} IN ('google_oauth', 'apple_oauth', 'microsoft_oauth') THEN 'OAUTH 2.0'
        ELSE {login} END END AS auth_protocol,
    CASE WHEN {is_class(auth)} THEN {login} = 'two_factor_authentication' END AS is_mfa,
    CASE WHEN {is_class(ocsf_map.ENTITY_MANAGEMENT)} THEN {_entity()} END AS entity,
    {_privileges()} AS privileges,
    CASE WHEN {is_class(ocsf_map.GROUP_MANAGEMENT)} THEN {
        _struct(
            uid=f"{_participant('group')} ->> 'group_id'",
            name=f"coalesce({_participant('group')} ->> 'display_name', {_quote(UNKNOWN)})",
        )
    } END AS "group",
    CASE WHEN {is_class(ocsf_map.API_ACTIVITY)} THEN {
        _struct(operation="event_type", service=_struct(name=_quote(VENDOR_NAME)))
    } END AS api,
    CASE WHEN {is_class(ocsf_map.API_ACTIVITY)} THEN {_resources()} END AS resources,
    raw_event AS raw_data,
    {_unmapped()} AS unmapped,
    {PARTITION_KEY}
FROM parts
"""
    # ruff: enable[hardcoded-sql-expression]


def register_function(con: duckdb.DuckDBPyConnection) -> None:
    """Make `ocsf_map.kind` callable from SQL on `con` (replacing an earlier registration)."""
    with contextlib.suppress(duckdb.InvalidInputException):
        con.remove_function(_KIND_FUNCTION)
    con.create_function(
        _KIND_FUNCTION,
        ocsf_map.kind,
        ["VARCHAR", "VARCHAR", "VARCHAR"],
        duckdb.struct_type(ocsf_map.KIND_FIELDS),
        null_handling="special",
        side_effects=False,
    )


def register_view(con: duckdb.DuckDBPyConnection, rows_view: str) -> None:
    """Define `ocsf_events` over `rows_view`, the view of the dataset's rows that
    `views.connect` defines (`views.SOURCE_VIEW`; passed in: views imports this module)."""
    register_function(con)
    con.execute(f"CREATE OR REPLACE VIEW {VIEW_NAME} AS {select_sql(rows_view)}")


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def record_json(row: dict[str, Any]) -> dict[str, Any]:
    """An `ocsf_events` row (as pyarrow or DuckDB give it) as its OCSF JSON object: only its
    class's attributes, no nulls, and `unmapped` as an object of the Dropbox fields' values."""
    record = {name: row[name] for name in CLASS_COLUMNS[row["class_uid"]] if name in row}
    unmapped = record.get("unmapped") or {}
    record["unmapped"] = {k: json.loads(v) for k, v in unmapped.items() if v is not None}
    return _prune(record)
