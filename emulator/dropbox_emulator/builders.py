"""What one event is: Dropbox's shapes, filled in with the synthetic team.

Shapes come from Dropbox's published examples (`templates.py`: the bundled fixture, one event
per type); the who/where/what is the synthetic team's. `EventBuilders` has one builder per kind of
activity (sign-ins, file operations, sharing, visits from outside, devices, apps, admin actions,
the long tail of other types, types newer than the SDK): each takes the day's RNG and a wire
timestamp and returns one TeamEvent dict. When events happen, and in what order, is `events.py`.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable
from typing import Any

from .config import EmulatorConfig
from .team import GEOS, Json, Person, Team, geo_dict, pick, web_session
from .templates import Template, load_templates, team_event

#: Admin actions the generator builds by hand (an admin acting on a member).
ADMIN_ACTION_TAGS = (
    "sign_in_as_session_start",
    "sign_in_as_session_end",
    "member_change_status",
    "member_change_admin_role",
    "group_add_member",
    "password_change",
    "tfa_change_status",
)
# Categories whose events are mostly admin actions (admin actor, admin console).
ADMIN_CATEGORIES = frozenset(
    {
        "team_policies",
        "members",
        "groups",
        "team_folders",
        "domains",
        "sso",
        "team_profile",
        "reports",
        "data_governance",
        "encryption",
        "trusted_teams",
        "protect",
        "admin_alerting",
    }
)
# Categories whose events carry a file/folder asset.
ASSET_CATEGORIES = frozenset(
    {
        "file_operations",
        "sharing",
        "comments",
        "file_requests",
        "showcase",
        "paper",
    }
)

# Event types the SDK (12.2.4) does not know: they must keep their name on the wire.
UNKNOWN_TYPES: tuple[tuple[str, str, str, bool], ...] = (
    ("ai_assistant_prompt_sent", "dash", "(dash) Sent a prompt to the AI assistant", False),
    (
        "file_ai_summary_generated",
        "file_operations",
        "(file_operations) Generated an AI summary",
        True,
    ),
    ("passkey_registered", "logins", "(logins) Registered a passkey", False),
)

LOGIN_METHODS = (
    ("password", 40),
    ("saml", 20),
    ("two_factor_authentication", 15),
    ("google_oauth", 8),
    ("web_session", 8),
    ("microsoft_oauth", 4),
    ("apple_oauth", 3),
    ("passkey", 2),
)
LOGIN_FAILURES = (
    ("password", "Invalid password", "invalid_password"),
    ("two_factor_authentication", "Incorrect two-step verification code", "tfa_code_invalid"),
    ("password", "Too many sign-in attempts. Try again later.", "rate_limited"),
    ("saml", "Single sign-on failed", "saml_assertion_rejected: signature mismatch"),
    ("password", "This account is suspended", "account_suspended"),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
)


class _Weighted:
    """Weighted choice via one random() + bisect (much cheaper than rng.choices)."""

    def __init__(self, items: list[tuple[Any, float]]) -> None:
        self.items = [it for it, _ in items]
        self.cum = list(itertools.accumulate(w for _, w in items))
        self.total = self.cum[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


Builder = Callable[[random.Random, str], Json]


class EventBuilders:
    """One builder per kind of activity, and how often each kind happens.

    The schedule (`events.EventGenerator`) uses `kinds` (a weighted pick of builders),
    `unknown_event` (types newer than the SDK) and, for bursts, `member` and `file_op`.
    """

    def __init__(self, config: EmulatorConfig, team: Team | None = None) -> None:
        self.config = config
        self.team = team or Team(config)
        self.templates = load_templates(self.team)
        rng = random.Random(f"{config.seed}/activity")
        weights = [1.0 / (i + 1) ** 0.7 for i in range(len(self.team.members))]
        rng.shuffle(weights)
        self._members = _Weighted(list(zip(self.team.members, weights, strict=True)))
        self._login_methods = _Weighted(list(LOGIN_METHODS))
        self._unknown = [
            Template(
                tag,
                {".tag": cat},
                {".tag": tag, "description": desc},
                {".tag": f"{tag}_details"},
                False,
            )
            for tag, cat, desc, _asset in UNKNOWN_TYPES
        ]
        self._unknown_assets = {tag: asset for tag, _c, _d, asset in UNKNOWN_TYPES}
        hand_built = self._hand_built()
        tail = [t for t in self.templates.values() if t.tag not in hand_built]
        self._tail = tail
        kinds: list[tuple[Builder, float]] = [
            (self._login_success, 9.0),
            (self._login_fail, 2.5),
            (self._logout, 1.0),
            (self.file_op, 40.0),
            (self._member_sharing, 12.0),
            (self._anonymous_visit, 5.0),
            (self._outsider_visit, 4.0),
            (self._device, 3.0),
            (self._app_event, 0.8),
            (self._admin_action, 3.0),
            (self._long_tail, 8.0),
        ]
        #: Which kind of activity the next event is: `kinds.pick(rng)(rng, ts)` builds it.
        self.kinds = _Weighted(kinds)
        self._file_ops = _Weighted(
            [
                ("file_add", 8),
                ("file_edit", 7),
                ("file_download", 6),
                ("file_preview", 6),
                ("file_delete", 3),
                ("file_move", 2.5),
                ("file_rename", 2),
                ("file_copy", 1.5),
                ("create_folder", 1.5),
                ("file_restore", 0.5),
                ("file_revert", 0.3),
                ("file_permanently_delete", 0.2),
            ]
        )
        self._sharing = _Weighted(
            [
                ("shared_link_create", 3),
                ("shared_content_add_member", 2),
                ("shared_link_share", 1),
                ("shared_content_add_invitees", 1),
                ("shared_folder_create", 1),
                ("shared_link_copy", 1),
                ("shared_content_view", 1.5),
                ("shared_content_download", 1.5),
                ("shared_link_view", 1.5),
            ]
        )
        self._visit_types = (
            "shared_link_view",
            "shared_content_view",
            "shared_content_download",
            "shared_link_download",
            "file_preview",
        )

    @staticmethod
    def _hand_built() -> set[str]:
        return {
            "login_success",
            "login_fail",
            "logout",
            "file_add",
            "file_edit",
            "file_download",
            "file_preview",
            "file_delete",
            "file_move",
            "file_rename",
            "file_copy",
            "create_folder",
            "file_restore",
            "file_revert",
            "file_permanently_delete",
            "shared_link_create",
            "shared_content_add_member",
            "shared_link_share",
            "shared_content_add_invitees",
            "shared_folder_create",
            "shared_link_copy",
            "shared_content_view",
            "shared_content_download",
            "shared_link_view",
            "shared_link_download",
            "device_change_ip_web",
            "device_change_ip_desktop",
            "device_change_ip_mobile",
            "device_link_success",
            "device_unlink",
            "app_link_user",
            "app_unlink_user",
            "app_link_team",
            *ADMIN_ACTION_TAGS,
        }

    # Pieces -------------------------------------------------------------------------------

    def member(self, rng: random.Random) -> Person:
        """A member of the team, the busier ones more often."""
        return self._members.pick(rng)

    def _admin(self, rng: random.Random) -> Person:
        return pick(rng, self.team.admins)

    @staticmethod
    def _member_origin(rng: random.Random, person: Person) -> Json:
        if rng.random() < 0.04:  # travelling / on another network
            geo = rng.randrange(len(GEOS))
            return {
                "access_method": {
                    ".tag": "end_user",
                    "end_user": {".tag": "web", "session_id": web_session(rng)},
                },
                "geo_location": geo_dict(rng, geo, v6=rng.random() < 0.3),
            }
        return pick(rng, person.origins)

    @staticmethod
    def _stranger_origin(rng: random.Random) -> Json:
        geo = rng.randrange(len(GEOS))
        return {
            "access_method": {
                ".tag": "end_user",
                "end_user": {".tag": "web", "session_id": web_session(rng)},
            },
            "geo_location": geo_dict(
                rng, geo, v6=rng.random() < 0.3, with_city=rng.random() < 0.85
            ),
        }

    def _details(self, tag: str, **fields: Any) -> Json:
        return {".tag": f"{tag}_details", **fields}

    @staticmethod
    def _moved(asset: Json, rng: random.Random) -> Json:
        """The destination asset of a move/rename/copy: same object, new path."""
        path = asset["path"]
        rel = path["contextual"]
        head, _, name = rel.rpartition("/")
        if rng.random() < 0.5:
            new_name, new_rel = name, f"{head}/Archive/{name}"
        else:
            stem, dot, ext = name.rpartition(".")
            new_name = f"{stem} (1).{ext}" if dot else f"{name} (1)"
            new_rel = f"{head}/{new_name}"
        return {
            **asset,
            "display_name": new_name,
            "path": {
                "contextual": new_rel,
                "namespace_relative": {**path["namespace_relative"], "relative_path": new_rel},
            },
        }

    # Builders: each returns one TeamEvent dict --------------------------------------------

    def _login_success(self, rng: random.Random, ts: str) -> Json:
        m = self.member(rng)
        tpl = self.templates["login_success"]
        details = self._details(
            "login_success",
            is_emm_managed=False,
            login_method={".tag": self._login_methods.pick(rng)},
        )
        return team_event(ts, tpl, details, m.actor, self._member_origin(rng, m), False, m.context)

    def _login_fail(self, rng: random.Random, ts: str) -> Json:
        m = self.member(rng)
        method, friendly, technical = pick(rng, LOGIN_FAILURES)
        origin = self._stranger_origin(rng) if rng.random() < 0.35 else self._member_origin(rng, m)
        details = self._details(
            "login_fail",
            is_emm_managed=False,
            login_method={".tag": method},
            error_details={"user_friendly_message": friendly, "technical_error_message": technical},
        )
        return team_event(
            ts, self.templates["login_fail"], details, m.actor, origin, False, m.context
        )

    def _logout(self, rng: random.Random, ts: str) -> Json:
        m = self.member(rng)
        return team_event(
            ts,
            self.templates["logout"],
            self._details("logout"),
            m.actor,
            self._member_origin(rng, m),
            False,
            m.context,
        )

    def file_op(
        self, rng: random.Random, ts: str, tag: str | None = None, who: Person | None = None
    ) -> Json:
        """A file operation: `tag` or a weighted pick; `who` (a burst's member) acts in person."""
        tag = tag or self._file_ops.pick(rng)
        tpl = self.templates[tag]
        team = self.team
        asset = pick(rng, team.folders if tag == "create_folder" else team.files).obj
        m = who or self.member(rng)
        roll = rng.random()
        actor, origin, context, involve = m.actor, None, m.context, False
        if who is None and roll < 0.08:  # a user-linked app acting for the member
            app = pick(rng, [a for a in team.apps if a.kind != "team_linked_app"])
            actor, origin = app.actor, app.origin
        elif who is None and roll < 0.10 and tag in ("file_edit", "file_add", "file_download"):
            o = pick(rng, team.outsiders)  # an outsider working in a shared folder
            actor, origin, context, involve = o.actor, o.origins[0], o.context, True
        if origin is None:
            origin = self._member_origin(rng, m)
        if tpl.two_assets:
            assets = [asset, self._moved(asset, rng)]
            details = self._details(
                tag, relocate_action_details=[{"src_asset_index": 0, "dest_asset_index": 1}]
            )
        else:
            assets = [asset]
            details = self._details(tag)
        return team_event(ts, tpl, details, actor, origin, involve, context, None, assets)

    def _member_sharing(self, rng: random.Random, ts: str) -> Json:
        tag = self._sharing.pick(rng)
        tpl = self.templates[tag]
        team = self.team
        m = self.member(rng)
        shared = pick(rng, team.shared_assets)
        owner = team.members[shared.owner]
        participants: list[Json] | None = None
        involve = False
        assets = [shared.obj]
        level = {".tag": pick(rng, ("viewer", "editor", "viewer", "viewer_no_comment"))}
        if tag == "shared_link_create":
            details = self._details(
                tag, shared_link_access_level={".tag": pick(rng, ("reader", "reader", "writer"))}
            )
        elif tag == "shared_content_add_member":
            roll = rng.random()
            if roll < 0.3:
                o = pick(rng, team.outsiders)
                participants, involve = [o.participant], True
            elif roll < 0.5:
                participants = [pick(rng, team.groups)]
            else:
                participants = [self.member(rng).participant]
            details = self._details(tag, shared_content_access_level=level)
        elif tag == "shared_content_add_invitees":
            o = pick(rng, team.outsiders)
            participants, involve = [o.participant], True
            details = self._details(tag, shared_content_access_level=level, invitees=[o.email])
        elif tag == "shared_link_share":
            o = pick(rng, team.outsiders)
            involve = True
            details = self._details(
                tag,
                shared_link_owner=owner.user_info,
                external_users=[{"user_identifier": o.email, "identifier_type": {".tag": "email"}}],
            )
        elif tag == "shared_folder_create":
            folder = pick(rng, team.folders).obj
            assets = [folder]
            details = self._details(tag, target_ns_id=folder["path"]["namespace_relative"]["ns_id"])
        elif tag in ("shared_content_view", "shared_content_download"):
            details = self._details(
                tag,
                shared_content_link=shared.shared_link,
                shared_content_owner=owner.user_info,
                shared_content_access_level=level,
            )
        else:  # shared_link_copy, shared_link_view
            details = self._details(tag, shared_link_owner=owner.user_info)
        return team_event(
            ts,
            tpl,
            details,
            m.actor,
            self._member_origin(rng, m),
            involve,
            m.context,
            participants,
            assets,
        )

    def _visit_details(self, tag: str, link: str, owner: Person) -> Json:
        if tag in ("shared_content_view", "shared_content_download"):
            return self._details(
                tag,
                shared_content_link=link,
                shared_content_owner=owner.user_info,
                shared_content_access_level={".tag": "viewer"},
            )
        if tag == "file_preview":
            return self._details(tag)
        return self._details(tag, shared_link_owner=owner.user_info)

    def _anonymous_visit(self, rng: random.Random, ts: str) -> Json:
        """Someone opened a shared link without signing in."""
        tag = pick(rng, self._visit_types)
        shared = pick(rng, self.team.shared_assets)
        owner = self.team.members[shared.owner]
        details = self._visit_details(tag, shared.shared_link or "", owner)
        return team_event(
            ts,
            self.templates[tag],
            details,
            {".tag": "anonymous"},
            self._stranger_origin(rng),
            True,
            {".tag": "anonymous"},
            None,
            [shared.obj],
        )

    def _outsider_visit(self, rng: random.Random, ts: str) -> Json:
        """A signed-in non-team account opened shared content."""
        tag = pick(rng, (*self._visit_types, "file_download"))
        o = pick(rng, self.team.outsiders)
        shared = pick(rng, self.team.shared_assets)
        owner = self.team.members[shared.owner]
        details = (
            self._details(tag)
            if tag == "file_download"
            else self._visit_details(tag, shared.shared_link or "", owner)
        )
        origin = o.origins[0] if rng.random() < 0.8 else self._stranger_origin(rng)
        return team_event(
            ts, self.templates[tag], details, o.actor, origin, True, o.context, None, [shared.obj]
        )

    def _device(self, rng: random.Random, ts: str) -> Json:
        tag = pick(
            rng,
            (
                "device_change_ip_web",
                "device_change_ip_web",
                "device_change_ip_desktop",
                "device_change_ip_mobile",
                "device_link_success",
                "device_unlink",
            ),
        )
        tpl = self.templates[tag]
        m = self.member(rng)
        if tag == "device_change_ip_web":
            details = self._details(tag, user_agent=pick(rng, USER_AGENTS))
        else:
            details = tpl.details
        return team_event(ts, tpl, details, m.actor, self._member_origin(rng, m), False, m.context)

    def _app_event(self, rng: random.Random, ts: str) -> Json:
        team = self.team
        if rng.random() < 0.25:
            admin = self._admin(rng)
            app = pick(rng, [a for a in team.apps if a.kind == "team_linked_app"])
            return team_event(
                ts,
                self.templates["app_link_team"],
                self._details("app_link_team", app_info=app.info),
                admin.admin_actor,
                admin.admin_origin,
                False,
                {".tag": "team"},
            )
        tag = "app_link_user" if rng.random() < 0.7 else "app_unlink_user"
        m = self.member(rng)
        app = pick(rng, [a for a in team.apps if a.kind != "team_linked_app"])
        return team_event(
            ts,
            self.templates[tag],
            self._details(tag, app_info=app.info),
            m.actor,
            self._member_origin(rng, m),
            False,
            m.context,
        )

    def _admin_action(self, rng: random.Random, ts: str) -> Json:
        admin = self._admin(rng)
        target = self.member(rng)
        tag = pick(rng, (*ADMIN_ACTION_TAGS, "group_add_member"))  # group changes twice as often
        tpl = self.templates[tag]
        if tag in ("password_change", "tfa_change_status"):  # the member does these
            return team_event(
                ts,
                tpl,
                tpl.details,
                target.actor,
                self._member_origin(rng, target),
                False,
                target.context,
            )
        origin = admin.admin_origin
        participants = None
        details = tpl.details
        if tag.startswith("sign_in_as"):
            origin = {
                "access_method": {".tag": "sign_in_as", "session_id": web_session(rng)},
                "geo_location": (admin.admin_origin or {}).get("geo_location"),
            }
        elif tag == "group_add_member":
            participants = [pick(rng, self.team.groups), target.participant]
            details = self._details(tag, is_group_owner=rng.random() < 0.1)
        elif tag == "member_change_status":
            details = self._details(
                tag,
                previous_value={".tag": "active"},
                new_value={".tag": pick(rng, ("suspended", "active"))},
            )
        return team_event(
            ts, tpl, details, admin.admin_actor, origin, False, target.context, participants
        )

    def _long_tail(self, rng: random.Random, ts: str) -> Json:
        """Any other type, with the spec's example details and a plausible actor."""
        tpl = pick(rng, self._tail)
        cat = tpl.category[".tag"]
        team = self.team
        assets = None
        if cat in ASSET_CATEGORIES:
            a = pick(rng, team.files).obj
            assets = [a, self._moved(a, rng)] if tpl.two_assets else [a]
        if cat in ADMIN_CATEGORIES:
            roll = rng.random()
            if roll < 0.08:
                return team_event(
                    ts,
                    tpl,
                    tpl.details,
                    {".tag": "dropbox"},
                    None,
                    False,
                    {".tag": "team"},
                    None,
                    assets,
                )
            if roll < 0.1:
                actor = {
                    ".tag": "reseller",
                    "reseller_name": "Example Reseller Ltd",
                    "reseller_email": "support@reseller.example",
                }
                return team_event(
                    ts, tpl, tpl.details, actor, None, False, {".tag": "team"}, None, assets
                )
            admin = self._admin(rng)
            context = {".tag": "team"} if cat != "members" else self.member(rng).context
            return team_event(
                ts,
                tpl,
                tpl.details,
                admin.admin_actor,
                admin.admin_origin,
                False,
                context,
                None,
                assets,
            )
        m = self.member(rng)
        return team_event(
            ts,
            tpl,
            tpl.details,
            m.actor,
            self._member_origin(rng, m),
            False,
            m.context,
            None,
            assets,
        )

    def unknown_event(self, rng: random.Random, ts: str) -> Json:
        """An event type newer than the SDK: it must reach the dataset under its own name."""
        tpl = pick(rng, self._unknown)
        m = self.member(rng)
        details: Json = dict(tpl.details)
        assets = None
        if tpl.tag == "ai_assistant_prompt_sent":
            details.update(
                surface={".tag": pick(rng, ("web", "desktop", "mobile"))},
                prompt_length=rng.randrange(8, 2000),
            )
        if self._unknown_assets[tpl.tag]:
            assets = [pick(rng, self.team.files).obj]
        return team_event(
            ts, tpl, details, m.actor, self._member_origin(rng, m), False, m.context, None, assets
        )
