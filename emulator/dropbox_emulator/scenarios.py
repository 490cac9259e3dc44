"""Crafted activity for the detections: the patterns they look for, and the near misses.

Each method returns TeamEvent dicts in Dropbox's shapes (type names, descriptions and categories
from the spec fixture) to hand to the control API (`EmulatorClient.add_events`). The people are
made here (`member`, `admin`, `outsider`): crafted activity never mixes with the generated
background, so a test can tell exactly which findings its events should raise. Times are epoch
seconds; IP addresses come from the documentation ranges (RFC 5737, RFC 3849).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .clock import format_ts
from .config import EmulatorConfig
from .team import GEOS, OUTSIDER_DOMAINS, Json, Person, Team
from .templates import Template, load_templates

#: Country code -> (city, region) of the emulator's places.
PLACES = {country: (city, region) for city, region, country in GEOS}


def _digest(*parts: object, n: int = 33) -> str:
    text = "/".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def ip(i: int) -> str:
    """The i-th address of a documentation range: IPv4 first, then IPv6."""
    blocks = ("192.0.2", "198.51.100", "203.0.113")
    if i < 3 * 254:
        return f"{blocks[i // 254]}.{i % 254 + 1}"
    return f"2001:db8::{i:x}"


def origin(country: str = "US", address: str | None = None, method: str = "web") -> Json:
    """Where an action came from: an end-user session in `country` (one of GEOS)."""
    city, region = PLACES.get(country, ("", ""))
    geo: Json = {"ip_address": address or ip(0)}
    if city:
        geo["city"], geo["region"] = city, region
    geo["country"] = country
    session = "dbwsid:" + str(int(_digest(country, address, n=12), 16)).zfill(39)[:39]
    access = {".tag": "end_user", "end_user": {".tag": method, "session_id": session}}
    return {"access_method": access, "geo_location": geo}


def app_id(name: str) -> str:
    """The app id `Scenarios.app_link_team` gives the app called `name`."""
    return "dbaid:AA" + _digest("app", name)


def file_asset(path: str) -> Json:
    """A file AssetLogInfo for `path` (its file id derived from the path: stable)."""
    name = path.rsplit("/", 1)[-1]
    return {
        ".tag": "file",
        "path": {
            "contextual": path,
            "namespace_relative": {
                "ns_id": str(int(_digest(path, n=8), 16)),
                "relative_path": path,
                "is_shared_namespace": True,
            },
        },
        "display_name": name,
        "file_id": "id:" + _digest("file", path, n=22),
    }


class Scenarios:
    """Builds crafted events for the team an emulator config describes."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.team = Team(config)
        self.templates: dict[str, Template] = load_templates(self.team)

    # People ---------------------------------------------------------------------------------

    def member(self, name: str, *, admin: bool = False) -> Person:
        """A team member who is not in the generated team (no background activity)."""
        first, _, last = name.partition(" ")
        email = f"{first.lower()}.{(last or 'crafted').lower()}@{self.team.domain}"
        info: Json = {
            ".tag": "team_member",
            "account_id": "dbid:AA" + _digest("member", email),
            "display_name": name,
            "email": email,
            "team_member_id": "dbmid:AA" + _digest("tmid", email),
        }
        person = Person(info["account_id"], name, email, info["team_member_id"])
        person.user_info = info
        person.actor = {".tag": "user", "user": info}
        person.admin_actor = {".tag": "admin", "admin": info} if admin else None
        person.context = dict(info)
        person.participant = {".tag": "user", "user": info}
        return person

    def outsider(self, email: str, *, trusted: bool = False) -> Person:
        """Someone outside the team (`trusted`: a member of a trusted team)."""
        tag = "trusted_non_team_member" if trusted else "non_team_member"
        info: Json = {
            ".tag": tag,
            "account_id": "dbid:AA" + _digest("outsider", email),
            "display_name": email.split("@")[0].title(),
            "email": email,
        }
        person = Person(info["account_id"], info["display_name"], email)
        person.user_info = info
        person.actor = {".tag": "user", "user": info}
        person.context = dict(info)
        person.participant = {".tag": "user", "user": info}
        return person

    # Events ---------------------------------------------------------------------------------

    def event(self, tag: str, at: int, **parts: Any) -> Json:
        """A TeamEvent of type `tag` at `at`: `details` fields, actor, origin, context, ...

        `parts`: details (dict of the type's fields), actor, origin, context, participants,
        assets, involve_non_team_member (default False).
        """
        tpl = self.templates[tag]
        ev: Json = {
            "timestamp": format_ts(at),
            "event_category": tpl.category,
            "event_type": tpl.event_type,
            "details": {".tag": f"{tag}_details", **parts.get("details", {})},
        }
        for key in ("actor", "origin"):
            if parts.get(key) is not None:
                ev[key] = parts[key]
        ev["involve_non_team_member"] = bool(parts.get("involve_non_team_member"))
        for key in ("context", "participants", "assets"):
            if parts.get(key) is not None:
                ev[key] = parts[key]
        return ev

    def sign_in_as(self, at: int, admin: Person, member: Person) -> list[Json]:
        access = {".tag": "sign_in_as", "session_id": "dbwsid:" + "4" * 39}
        where = {"access_method": access, "geo_location": origin("US")["geo_location"]}
        return [
            self.event(
                "sign_in_as_session_start",
                at,
                actor=admin.admin_actor,
                origin=where,
                context=member.context,
            )
        ]

    def tfa_change(
        self, at: int, member: Person, previous: str, new: str, *, by: Person | None = None
    ) -> list[Json]:
        """`tfa_change_status` from `previous` to `new` (`disabled`, `authenticator`, `sms`)."""
        actor = (by.admin_actor or by.actor) if by else member.actor
        details = {"new_value": {".tag": new}, "previous_value": {".tag": previous}}
        details["used_rescue_code"] = False
        return [
            self.event(
                "tfa_change_status",
                at,
                details=details,
                actor=actor,
                origin=origin("US"),
                context=member.context,
            )
        ]

    def app_link_team(
        self, at: int, admin: Person, app_name: str, *, involve_non_team_member: bool = False
    ) -> list[Json]:
        info = {".tag": "team_linked_app", "app_id": app_id(app_name), "display_name": app_name}
        return [
            self.event(
                "app_link_team",
                at,
                details={"app_info": info},
                actor=admin.admin_actor,
                origin=origin("US"),
                context={".tag": "team"},
                involve_non_team_member=involve_non_team_member,
            )
        ]

    def ownership_transfer(
        self, at: int, actor: Person, path: str, previous_owner: str, new_owner: str
    ) -> list[Json]:
        """`shared_folder_transfer_ownership` of the folder at `path`."""
        details = {"new_owner_email": new_owner, "previous_owner_email": previous_owner}
        return [
            self.event(
                "shared_folder_transfer_ownership",
                at,
                details=details,
                actor=actor.actor,
                origin=origin("US"),
                context=actor.context,
                assets=[file_asset(path)],
            )
        ]

    def share(self, at: int, member: Person, path: str, recipients: list[Person]) -> list[Json]:
        """`shared_content_add_member`: `member` adds `recipients` to the file at `path`."""
        outside = any(r.user_info.get(".tag") != "team_member" for r in recipients)
        return [
            self.event(
                "shared_content_add_member",
                at,
                details={"shared_content_access_level": {".tag": "viewer"}},
                actor=member.actor,
                origin=origin("US"),
                context=member.context,
                participants=[r.participant for r in recipients],
                assets=[file_asset(path)],
                involve_non_team_member=outside,
            )
        ]

    def file_burst(
        self, at: int, actor: Person, tag: str, files: int, *, folder: str = "/Projects/Burst"
    ) -> list[Json]:
        """`files` events of type `tag` on distinct files, one every 5 seconds from `at`."""
        return [
            self.event(
                tag,
                at + 5 * i,
                actor=actor.actor,
                origin=origin("US", ip(1)),
                context=actor.context,
                assets=[file_asset(f"{folder}/file {i:04d}.pdf")],
            )
            for i in range(files)
        ]

    def anonymous_views(
        self, at: int, path: str, owner: Person, visitors: list[tuple[str, str]]
    ) -> list[Json]:
        """`shared_link_view` of the file at `path`, without signing in, once per (country, ip)."""
        details = {"shared_link_owner": owner.user_info}
        return [
            self.event(
                "shared_link_view",
                at + 60 * i,
                details=details,
                actor={".tag": "anonymous"},
                origin=origin(country, address),
                context={".tag": "anonymous"},
                assets=[file_asset(path)],
                involve_non_team_member=True,
            )
            for i, (country, address) in enumerate(visitors)
        ]

    def sign_ins(
        self, at: int, member: Person, countries: list[str], *, failed: bool = False, step: int = 30
    ) -> list[Json]:
        """One sign-in per entry of `countries` (its n-th from ip(n)), `step` seconds apart."""
        tag = "login_fail" if failed else "login_success"
        details: Json = {"login_method": {".tag": "password"}, "is_emm_managed": False}
        if failed:
            details["error_details"] = {
                "user_friendly_message": "Invalid password",
                "technical_error_message": "invalid_password",
            }
        return [
            self.event(
                tag,
                at + step * i,
                details=details,
                actor=member.actor,
                origin=origin(country, ip(10 + i)),
                context=member.context,
            )
            for i, country in enumerate(countries)
        ]


def demo_incidents(config: EmulatorConfig, now: int) -> list[Json]:
    """A few incidents in the days before `now`, one per kind the detections find first: what
    `make demo` injects so its summary ends with findings."""
    s = Scenarios(config)
    day = now - now % 86_400
    admin, quinn = s.member("Morgan Admin", admin=True), s.member("Quinn Leaver")
    events = s.sign_in_as(day - 5 * 86_400 + 10 * 3600, admin, quinn)
    events += s.file_burst(day - 4 * 86_400 + 16 * 3600, quinn, "file_download", 80)
    events += s.file_burst(day - 3 * 86_400 + 17 * 3600, quinn, "file_delete", 60)
    events += s.share(
        day - 3 * 86_400 + 18 * 3600,
        quinn,
        "/Finance/Payroll 2026.xlsx",
        [s.outsider("quinn.personal@mail.example")],
    )
    visitors = [(("US", "BR", "IN", "DE", "JP", "NG")[i % 6], ip(40 + i)) for i in range(14)]
    events += s.anonymous_views(day - 2 * 86_400 + 9 * 3600, "/Public/Roadmap.pdf", quinn, visitors)
    target = s.member("Rob Target")
    events += s.sign_ins(day - 2 * 86_400 + 8 * 3600, target, ["GB"] * 3)
    events += s.sign_ins(day - 86_400 + 2 * 3600, target, ["RU"] * 12, failed=True, step=15)
    events += s.sign_ins(day - 86_400 + 2 * 3600 + 600, target, ["RU"])
    events += s.tfa_change(day - 86_400 + 2 * 3600 + 900, target, "authenticator", "disabled")
    events += s.app_link_team(
        day - 86_400 + 4 * 3600, admin, "FileShuttle Pro", involve_non_team_member=True
    )
    return events


def demo_knobs(config: EmulatorConfig) -> dict[str, Any]:
    """The detection knobs of a team that knows its partners and its apps: the business
    domains it shares with, and the team-linked apps IT installed (personal webmail stays
    external)."""
    team = Team(config)
    return {
        "allowed_share_domains": [d for d in OUTSIDER_DOMAINS if d != "mail.example"],
        "allowed_app_ids": [a.app_id for a in team.apps if a.kind == "team_linked_app"],
    }
