"""Which OCSF class and activity a Dropbox event type is: the mapping's rules, in plain Python.

The class follows the event's category (`CATEGORY_CLASS`), with a few event types moved to a
better-fitting class (`TYPE_CLASS`); anything else, including categories Dropbox adds later, falls
back to API Activity (6003). The activity follows the verb in the event type's name
(`ACTIVITY_RULES`, first match wins), and for a handful of types the new value in `details`
(`VALUE_TYPES`: 2FA turned off or on, a lock set or cleared, a role granted or taken).

`kind()` is the one entry point: `ocsf.py` calls it once per distinct (type, category, value) of
the rows, never per row. docs/ocsf.md has the resulting table and the reasons.
"""

from __future__ import annotations

import re
from typing import Any

from dropbox_team_log import settings

FILE_HOSTING, AUTHENTICATION, ACCOUNT_CHANGE = 6006, 3002, 3001
ENTITY_MANAGEMENT, USER_ACCESS, GROUP_MANAGEMENT, API_ACTIVITY = 3004, 3005, 3006, 6003
#: The documented fallback: keeps actor, source and the assets as OCSF attributes.
FALLBACK_CLASS = API_ACTIVITY
OTHER = 99

#: class_uid -> (class name, {activity_id: activity name}) as OCSF names them.
CLASSES: dict[int, tuple[str, dict[int, str]]] = {
    FILE_HOSTING: (
        "File Hosting Activity",
        {
            1: "Upload",
            2: "Download",
            3: "Update",
            4: "Delete",
            5: "Rename",
            6: "Copy",
            7: "Move",
            8: "Restore",
            9: "Preview",
            10: "Lock",
            11: "Unlock",
            12: "Share",
            13: "Unshare",
            14: "Open",
            15: "Sync",
            16: "Unsync",
        },
    ),
    AUTHENTICATION: ("Authentication", {1: "Logon", 2: "Logoff"}),
    ACCOUNT_CHANGE: (
        "Account Change",
        {
            3: "Password Change",
            4: "Password Reset",
            9: "Lock",
            10: "MFA Factor Enable",
            11: "MFA Factor Disable",
        },
    ),
    ENTITY_MANAGEMENT: ("Entity Management", {1: "Create", 2: "Read", 3: "Update", 4: "Delete"}),
    USER_ACCESS: ("User Access Management", {1: "Assign Privileges", 2: "Revoke Privileges"}),
    GROUP_MANAGEMENT: (
        "Group Management",
        {1: "Assign Privileges", 2: "Revoke Privileges", 3: "Add User", 4: "Remove User"},
    ),
    API_ACTIVITY: ("API Activity", {1: "Create", 2: "Read", 3: "Update", 4: "Delete"}),
}
CATEGORIES = {3: "Identity & Access Management", 6: "Application Activity"}
#: OCSF profiles each class's records use (`metadata.profiles`): `cloud` for the `cloud` object;
#: in OCSF 1.1 the IAM management classes carry `actor` only under the `host` profile.
PROFILES = {
    ENTITY_MANAGEMENT: ("cloud", "host"),
    USER_ACCESS: ("cloud", "host"),
    GROUP_MANAGEMENT: ("cloud", "host"),
}
DEFAULT_PROFILES = ("cloud",)

CATEGORY_CLASS = {
    "file_operations": FILE_HOSTING,
    "sharing": FILE_HOSTING,
    "file_requests": FILE_HOSTING,
    "comments": FILE_HOSTING,
    "paper": FILE_HOSTING,
    "showcase": FILE_HOSTING,
    "team_folders": FILE_HOSTING,
    "logins": AUTHENTICATION,
    "passwords": ACCOUNT_CHANGE,
    "tfa": ACCOUNT_CHANGE,
    "members": ENTITY_MANAGEMENT,
    "groups": ENTITY_MANAGEMENT,
    "apps": ENTITY_MANAGEMENT,
    "team_policies": ENTITY_MANAGEMENT,
    "sso": ENTITY_MANAGEMENT,
    "team_profile": ENTITY_MANAGEMENT,
    "domains": ENTITY_MANAGEMENT,
}
TYPE_CLASS = {
    "group_add_member": GROUP_MANAGEMENT,
    "group_remove_member": GROUP_MANAGEMENT,
    "group_change_member_role": GROUP_MANAGEMENT,
    "member_change_admin_role": USER_ACCESS,
    "member_change_reseller_role": USER_ACCESS,
    "changed_enterprise_admin_role": USER_ACCESS,
    "account_lock_or_unlocked": ACCOUNT_CHANGE,
    "started_enterprise_admin_session": AUTHENTICATION,
    "ended_enterprise_admin_session": AUTHENTICATION,
    "ended_enterprise_admin_session_deprecated": AUTHENTICATION,
    "risc_security_event": FALLBACK_CLASS,
}
#: What an Entity Management record's `entity` is, by the event's category.
ENTITY_TYPES = {
    "members": "User",
    "groups": "Group",
    "apps": "App",
    "team_policies": "Policy",
    "sso": "SSO configuration",
    "team_profile": "Team",
    "domains": "Domain",
}
#: Event types whose activity depends on `details.new_value.".tag"` (read only for these).
VALUE_TYPES = (
    "tfa_change_status",
    "account_lock_or_unlocked",
    "file_locking_lock_status_changed",
    "member_change_admin_role",
    "member_change_reseller_role",
    "changed_enterprise_admin_role",
)
#: New role values that take a privilege away rather than grant one.
NO_PRIVILEGE_VALUES = frozenset({"member_only", "not_reseller", "not_enterprise_admin", "none"})
#: Event types that record a failure (status Failure); every other event records a done action.
FAILURE = re.compile(r"_(fail|failed|error)$")
LOGOFF = re.compile(r"logout|signed_out|_end$|^ended_")

_CRUD = (
    (re.compile(r"(^|_)(create|created)($|_)|^app_link_|_connected$|_add_exception$"), 1),
    (re.compile(r"(^|_)(delete|deleted)($|_)|^app_unlink_|_disconnected$|_remove_exception$"), 4),
    (re.compile(r"export|_accessed$|(^|_)report"), 2),
)
#: File Hosting activities by the verb of the event type, first match wins. Settings of a share
#: (expiry, password, audience, roles, download policy) and comments are "Other".
_FILE_RULES = (
    (
        re.compile(
            r"polic|setting|expir|password|audience|visibility|_role|downloads|(^|_)allow|"
            r"permission|acl|external_view|comment|subscription|request_access"
        ),
        OTHER,
    ),
    (re.compile(r"label|tags|pinned|overview"), 3),
    (
        re.compile(
            r"unshare|uninvite|remove_member|remove_invitees|relinquish|revoked|"
            r"link_disable|_disabled$|link_deleted|remove_visitor|team_delete|decline"
        ),
        13,
    ),
    (re.compile(r"download"), 2),
    (re.compile(r"preview"), 9),
    (re.compile(r"(^|_)(view|viewed|opened)($|_)|^open_"), 14),
    (re.compile(r"unmount"), 16),
    (re.compile(r"(^|_)mount"), 15),
    (re.compile(r"rename"), 5),
    (re.compile(r"copy"), 6),
    (re.compile(r"(^|_)move"), 7),
    (
        re.compile(
            r"invite|add_member|add_invitees|(^|_)share($|_)|_shared$|link_create|"
            r"link_created|team_add|grant|add_group|transfer_send|restore_member|"
            r"restore_invitees|shared_folder_create|_join"
        ),
        12,
    ),
    (re.compile(r"restore|revert|rollback|untrash|undo_|rewind"), 8),
    (re.compile(r"delete|trashed|removed|archive"), 4),
    (re.compile(r"receive_file|(^|_)add($|_)|added|upload|(^|_)create|created"), 1),
    (re.compile(r"edit|update|change|modif"), 3),
)


def _first(rules: tuple[tuple[re.Pattern[str], int], ...], event_type: str, default: int) -> int:
    return next((activity for pattern, activity in rules if pattern.search(event_type)), default)


def class_of(event_type: str, category: str | None) -> int:
    """The OCSF class of an event type (TYPE_CLASS, else its category's, else the fallback)."""
    return TYPE_CLASS.get(event_type) or CATEGORY_CLASS.get(category or "", FALLBACK_CLASS)


def activity_of(class_uid: int, event_type: str, new_value: str | None) -> int:
    """The activity_id of an event of `class_uid` (OTHER when no OCSF activity fits)."""
    if class_uid == FILE_HOSTING:
        if event_type == "file_locking_lock_status_changed":
            return 11 if new_value == "unlocked" else 10
        return _first(_FILE_RULES, event_type, OTHER)
    if class_uid == AUTHENTICATION:
        return 2 if LOGOFF.search(event_type) else 1
    if class_uid == ACCOUNT_CHANGE:
        if event_type == "tfa_change_status":
            return 11 if new_value == "disabled" else 10
        if event_type == "account_lock_or_unlocked":
            return 9 if new_value == "locked" else OTHER
        if event_type == "password_change":
            return 3
        if event_type.startswith("password_reset"):
            return 4
        if re.search(r"remove|reset", event_type):
            return 11
        return 10 if re.search(r"(^|_)add($|_)", event_type) else OTHER
    if class_uid == USER_ACCESS:
        return 2 if new_value is None or new_value in NO_PRIVILEGE_VALUES else 1
    if class_uid == GROUP_MANAGEMENT:
        return {"group_add_member": 3, "group_remove_member": 4}.get(event_type, OTHER)
    default = 3 if class_uid == ENTITY_MANAGEMENT else OTHER
    return _first(_CRUD, event_type, default)


def kind(event_type: str, category: str | None, new_value: str | None) -> dict[str, Any]:
    """Everything about an event's OCSF record that its type decides: class, category, activity
    (ids and names), type_uid, status, profiles, and the entity type of Entity Management."""
    class_uid = class_of(event_type, category)
    activity_id = activity_of(class_uid, event_type, new_value)
    class_name, activities = CLASSES[class_uid]
    category_uid = class_uid // 1000
    # OCSF: for "Other" the activity_name carries the source's own name for the activity.
    activity_name = activities.get(activity_id, event_type)
    failed = bool(FAILURE.search(event_type))
    return {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": CATEGORIES[category_uid],
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activities.get(activity_id, 'Other')}",
        "status_id": 2 if failed else 1,
        "status": "Failure" if failed else "Success",
        "profiles": list(PROFILES.get(class_uid, DEFAULT_PROFILES)),
        "entity_type": (
            ENTITY_TYPES.get(category or "", "Setting") if class_uid == ENTITY_MANAGEMENT else None
        ),
    }


#: The DuckDB type of `kind()`'s result (ocsf.py registers `kind` as a function returning it).
KIND_FIELDS = {
    "class_uid": "INTEGER",
    "class_name": "VARCHAR",
    "category_uid": "INTEGER",
    "category_name": "VARCHAR",
    "activity_id": "INTEGER",
    "activity_name": "VARCHAR",
    "type_uid": "BIGINT",
    "type_name": "VARCHAR",
    "status_id": "INTEGER",
    "status": "VARCHAR",
    "profiles": "VARCHAR[]",
    "entity_type": "VARCHAR",
}

#: The OCSF version every record states (`metadata.version`) and is validated against.
VERSION = settings.OCSF_VERSION
