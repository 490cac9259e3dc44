"""The synthetic team behind the generated events: members, admins, outsiders, apps, files.

Everything is derived from the seed, and every piece that events reuse (actor, context,
origin, asset objects) is built once here as a JSON-able dict, so per-event generation only
assembles references. Identifiers keep the exact shapes the SDK validates (account ids are
40 characters, `dbid:AA...`). IP addresses come from the documentation ranges (RFC 5737 /
RFC 3849) so nothing points at a real host.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .config import EmulatorConfig

Json = dict[str, Any]
T = TypeVar("T")

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

FIRST_NAMES = (
    "Amara",
    "Bjorn",
    "Chen",
    "Dalia",
    "Emeka",
    "Farah",
    "Gustavo",
    "Hana",
    "Ivan",
    "Jamila",
    "Kenji",
    "Lucia",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sipho",
    "Tariq",
    "Ulla",
    "Vikram",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zofia",
    "Aiden",
    "Beatriz",
    "Cormac",
    "Dmitri",
    "Elif",
    "Fatima",
    "Giulia",
    "Hiroshi",
    "Ingrid",
    "Joao",
    "Kwame",
    "Leila",
    "Marek",
    "Noor",
)
LAST_NAMES = (
    "Okafor",
    "Lindqvist",
    "Wang",
    "Haddad",
    "Nwosu",
    "Rahman",
    "Pereira",
    "Sato",
    "Petrov",
    "Diallo",
    "Tanaka",
    "Fernandez",
    "Rossi",
    "Kowalski",
    "Berg",
    "Sharma",
    "Dubois",
    "Moreno",
    "Dlamini",
    "Aziz",
    "Virtanen",
    "Iyer",
    "Zhou",
    "Castillo",
    "Demir",
    "Nowak",
    "Murphy",
    "Souza",
    "Byrne",
    "Volkov",
    "Yilmaz",
    "Bakr",
    "Conti",
    "Kimura",
    "Larsen",
    "Silva",
    "Mensah",
    "Karimi",
    "Horvat",
    "Ali",
)
OUTSIDER_DOMAINS = (
    "clientco.example",
    "designstudio.example",
    "auditors.example",
    "mail.example",
    "lawfirm.example",
    "supplier.example",
)
# (city, region, country): offices, home towns and the places visitors come from.
GEOS = (
    ("San Francisco", "California", "US"),
    ("New York", "New York", "US"),
    ("Austin", "Texas", "US"),
    ("Toronto", "Ontario", "CA"),
    ("London", "England", "GB"),
    ("Dublin", "Leinster", "IE"),
    ("Berlin", "Berlin", "DE"),
    ("Paris", "Ile-de-France", "FR"),
    ("Amsterdam", "North Holland", "NL"),
    ("Warsaw", "Mazovia", "PL"),
    ("Stockholm", "Stockholm", "SE"),
    ("Madrid", "Madrid", "ES"),
    ("Lagos", "Lagos", "NG"),
    ("Nairobi", "Nairobi County", "KE"),
    ("Johannesburg", "Gauteng", "ZA"),
    ("Mumbai", "Maharashtra", "IN"),
    ("Bengaluru", "Karnataka", "IN"),
    ("Singapore", "Singapore", "SG"),
    ("Tokyo", "Tokyo", "JP"),
    ("Seoul", "Seoul", "KR"),
    ("Sydney", "New South Wales", "AU"),
    ("Sao Paulo", "Sao Paulo", "BR"),
    ("Mexico City", "Mexico City", "MX"),
    ("Istanbul", "Istanbul", "TR"),
)
OFFICE_GEOS = (0, 4, 6)  # members mostly live near these offices
DATACENTER_GEO = ("Ashburn", "Virginia", "US")
_V4_BLOCKS = ("192.0.2", "198.51.100", "203.0.113")

APPS = (
    ("Northwind Backup Vault", "team_linked_app"),
    ("Compliance Archiver", "team_linked_app"),
    ("Team Activity Log Collector", "team_linked_app"),
    ("QuickSign Docs", "user_linked_app"),
    ("Slidekit Sync", "user_linked_app"),
    ("PhotoFlow Mobile", "user_linked_app"),
    ("TaskBridge", "user_or_team_linked_app"),
)
FOLDERS = (
    "Projects",
    "Finance",
    "Marketing",
    "Design",
    "Legal",
    "HR",
    "Engineering",
    "Sales",
    "Research",
    "Operations",
)
SUBFOLDERS = ("2025", "2026", "Q1", "Q2", "Q3", "Q4", "Drafts", "Final", "Archive", "Shared")
FILE_STEMS = (
    "Budget",
    "Roadmap",
    "Contract",
    "Invoice",
    "Meeting notes",
    "Brand guide",
    "Pitch deck",
    "Survey results",
    "Onboarding",
    "Release plan",
    "Spec",
    "Forecast",
    "Report",
    "Photo",
    "Mockup",
    "Timesheet",
    "Policy",
    "Proposal",
    "Dataset",
    "Minutes",
)
FILE_EXTS = (
    (".xlsx", 40_000, 2_000_000),
    (".docx", 15_000, 900_000),
    (".pdf", 50_000, 8_000_000),
    (".pptx", 500_000, 40_000_000),
    (".png", 20_000, 5_000_000),
    (".jpg", 80_000, 9_000_000),
    (".csv", 1_000, 60_000_000),
    (".mp4", 5_000_000, 900_000_000),
    (".zip", 10_000, 2_000_000_000),
    (".txt", 100, 50_000),
)
GROUPS = ("All staff", "Engineering", "Finance team", "Design guild", "Leadership", "Contractors")
ADMIN_ROLES = ("team_admin", "user_management_admin", "support_admin", "security_admin")


def rand_id(rng: random.Random, prefix: str, n: int, alphabet: str = _ID_CHARS) -> str:
    return prefix + "".join(rng.choices(alphabet, k=n))


def rand_digits(rng: random.Random, n: int) -> str:
    return str(rng.randrange(10 ** (n - 1), 10**n))


def pick(rng: random.Random, seq: Sequence[T]) -> T:
    """rng.choice, about twice as fast (one random() call); hot paths only."""
    return seq[int(rng.random() * len(seq))]


def ip_for(rng: random.Random, geo_index: int, v6: bool) -> str:
    if v6:
        a, b = rng.randrange(1, 0xFFFF), rng.randrange(1, 0xFFFF)
        return f"2001:db8:{geo_index + 16:x}:{a:x}::{b:x}"
    return f"{_V4_BLOCKS[geo_index % 3]}.{rng.randrange(1, 255)}"


def geo_dict(rng: random.Random, geo_index: int, v6: bool, with_city: bool = True) -> Json:
    city, region, country = GEOS[geo_index]
    geo: Json = {"ip_address": ip_for(rng, geo_index, v6)}
    if with_city:
        geo["city"] = city
        geo["region"] = region
    geo["country"] = country
    return geo


def web_session(rng: random.Random) -> str:
    return "dbwsid:" + rand_digits(rng, 39)


@dataclass
class Person:
    """A member (team_member_id set) or a signed-in outsider."""

    account_id: str
    display_name: str
    email: str
    team_member_id: str | None = None
    external_id: str | None = None
    admin_role: str | None = None
    home_geo: int = 0
    user_info: Json = field(default_factory=dict)  # UserLogInfo (tagged)
    actor: Json = field(default_factory=dict)  # ActorLogInfo .user
    admin_actor: Json | None = None  # ActorLogInfo .admin (admins only)
    context: Json = field(default_factory=dict)  # ContextLogInfo
    participant: Json = field(default_factory=dict)  # ParticipantLogInfo .user
    origins: list[Json] = field(default_factory=list)  # member's usual devices/places
    admin_origin: Json | None = None


@dataclass
class App:
    app_id: str
    name: str
    kind: str
    info: Json
    actor: Json
    origin: Json


@dataclass
class Asset:
    obj: Json  # AssetLogInfo (tagged file/folder)
    name: str
    owner: int  # member index
    shared_link: str | None = None


class Team:
    """The synthetic team, built deterministically from the config."""

    def __init__(self, config: EmulatorConfig) -> None:
        rng = random.Random(f"{config.seed}/team")
        self.config = config
        self.team_id = config.resolved_team_id
        self.name = config.team_name
        self.domain = config.team_domain
        self.team_info = {"display_name": self.name}
        names = self._unique_names(rng, config.members_count + 40)
        self.members = [
            self._member(rng, first, last, i)
            for i, (first, last) in enumerate(names[: config.members_count])
        ]
        self.admins = [m for m in self.members if m.admin_role]
        self.outsiders = [
            self._outsider(rng, first, last, i)
            for i, (first, last) in enumerate(names[config.members_count :])
        ]
        self.apps = [self._app(rng, name, kind) for name, kind in APPS]
        self.groups = [
            {
                ".tag": "group",
                "group_id": rand_id(rng, "g:", 30, "0123456789abcdef"),
                "display_name": g,
            }
            for g in GROUPS
        ]
        self.assets = self._assets(rng)
        self.shared_assets = [a for a in self.assets if a.shared_link]
        self.folders = [a for a in self.assets if a.obj[".tag"] == "folder"]
        self.files = [a for a in self.assets if a.obj[".tag"] == "file"]
        self.account_ids = {m.account_id for m in self.members}

    # Builders -----------------------------------------------------------------------------

    @staticmethod
    def _unique_names(rng: random.Random, n: int) -> list[tuple[str, str]]:
        pairs = [(f, ln) for f in FIRST_NAMES for ln in LAST_NAMES]
        rng.shuffle(pairs)
        return pairs[:n]

    def _member(self, rng: random.Random, first: str, last: str, index: int) -> Person:
        n_admins = 3 if self.config.members_count < 10 else 4
        role = ADMIN_ROLES[index] if index < n_admins else None
        person = Person(
            account_id=rand_id(rng, "dbid:AA", 33),
            display_name=f"{first} {last}",
            email=f"{first.lower()}.{last.lower()}@{self.domain}",
            team_member_id=rand_id(rng, "dbmid:AA", 33),
            external_id=(
                f"ADSYNC S-1-5-21-{rng.randrange(10**9, 10**10)}-{1000 + index}"
                if rng.random() < 0.7
                else None
            ),
            admin_role=role,
            home_geo=rng.choice(OFFICE_GEOS) if rng.random() < 0.75 else rng.randrange(len(GEOS)),
        )
        info: Json = {
            ".tag": "team_member",
            "account_id": person.account_id,
            "display_name": person.display_name,
            "email": person.email,
            "team_member_id": person.team_member_id,
        }
        if person.external_id:
            info["member_external_id"] = person.external_id
        person.user_info = info
        person.actor = {".tag": "user", "user": info}
        if role:
            person.admin_actor = {".tag": "admin", "admin": info}
        person.context = {k: v for k, v in info.items()}
        person.participant = {".tag": "user", "user": info}
        # Usual places/devices: desktop at home/office, a phone, browsers.
        home = person.home_geo
        desktop = {
            "access_method": {
                ".tag": "end_user",
                "end_user": {".tag": "desktop", "session_id": "dbdsid:" + rand_digits(rng, 39)},
            },
            "geo_location": geo_dict(rng, home, v6=rng.random() < 0.3),
        }
        mobile = {
            "access_method": {
                ".tag": "end_user",
                "end_user": {".tag": "mobile", "session_id": "dbmsid:" + rand_digits(rng, 39)},
            },
            "geo_location": geo_dict(rng, home, v6=rng.random() < 0.6),
        }
        webs = [
            {
                "access_method": {
                    ".tag": "end_user",
                    "end_user": {".tag": "web", "session_id": web_session(rng)},
                },
                "geo_location": geo_dict(
                    rng, home, v6=rng.random() < 0.25, with_city=rng.random() < 0.9
                ),
            }
            for _ in range(2)
        ]
        person.origins = [desktop, desktop, webs[0], webs[1], mobile]
        if role:
            person.admin_origin = {
                "access_method": {".tag": "admin_console", "session_id": web_session(rng)},
                "geo_location": geo_dict(rng, home, v6=False),
            }
        return person

    def _outsider(self, rng: random.Random, first: str, last: str, index: int) -> Person:
        domain = OUTSIDER_DOMAINS[index % len(OUTSIDER_DOMAINS)]
        person = Person(
            account_id=rand_id(rng, "dbid:AA", 33),
            display_name=f"{first} {last}",
            email=f"{first.lower()}{rng.randrange(1, 99)}@{domain}",
            home_geo=rng.randrange(len(GEOS)),
        )
        info: Json = {
            ".tag": "non_team_member",
            "account_id": person.account_id,
            "display_name": person.display_name,
            "email": person.email,
        }
        person.user_info = info
        person.actor = {".tag": "user", "user": info}
        person.context = dict(info)
        person.participant = {".tag": "user", "user": info}
        person.origins = [
            {
                "access_method": {
                    ".tag": "end_user",
                    "end_user": {".tag": "web", "session_id": web_session(rng)},
                },
                "geo_location": geo_dict(rng, person.home_geo, v6=rng.random() < 0.35),
            }
        ]
        return person

    @staticmethod
    def _app(rng: random.Random, name: str, kind: str) -> App:
        app_id = rand_id(rng, "dbaid:AA", 33)
        info = {".tag": kind, "app_id": app_id, "display_name": name}
        origin = {
            "access_method": {
                ".tag": "api",
                "request_id": "dbarod:" + rand_id(rng, "", 30, _ALNUM),
            },
            "geo_location": {
                "ip_address": f"{_V4_BLOCKS[1]}.{rng.randrange(1, 255)}",
                "city": DATACENTER_GEO[0],
                "region": DATACENTER_GEO[1],
                "country": DATACENTER_GEO[2],
            },
        }
        return App(app_id, name, kind, info, {".tag": "app", "app": info}, origin)

    def _assets(self, rng: random.Random) -> list[Asset]:
        out: list[Asset] = []
        n_members = len(self.members)
        shared_ns = {f: rand_digits(rng, 10) for f in FOLDERS}
        for i in range(max(200, n_members * 12)):
            owner = rng.randrange(n_members)
            top = rng.choice(FOLDERS)
            sub = rng.choice(SUBFOLDERS)
            shared = rng.random() < 0.5
            ns = shared_ns[top] if shared else rand_digits(rng, 10)
            if i % 10 == 0:
                name = f"{top} {sub}"
                rel = f"/{top}/{name}"
                obj = _asset_log_info("folder", rel, name, ns, shared, rng)
            else:
                ext, lo, hi = rng.choice(FILE_EXTS)
                name = f"{rng.choice(FILE_STEMS)} {rng.randrange(1, 400)}{ext}"
                rel = f"/{top}/{sub}/{name}"
                obj = _asset_log_info("file", rel, name, ns, shared, rng)
                obj["file_size"] = rng.randrange(lo, hi)
            link = None
            if rng.random() < 0.3:
                kind = "fo" if obj[".tag"] == "folder" else "fi"
                slug = name.replace(" ", "%20")
                link = (
                    f"https://www.dropbox.com/scl/{kind}/{rand_id(rng, '', 22, _ALNUM).lower()}"
                    f"/{slug}?rlkey={rand_id(rng, '', 25, _ALNUM).lower()}&dl=0"
                )
            out.append(Asset(obj, name, owner, link))
        return out


def _asset_log_info(
    tag: str, rel: str, name: str, ns: str, shared: bool, rng: random.Random
) -> Json:
    """A file or folder AssetLogInfo in Dropbox's wire shape (key order as the API sends it)."""
    return {
        ".tag": tag,
        "path": {
            "contextual": rel,
            "namespace_relative": {
                "ns_id": ns,
                "relative_path": rel,
                "is_shared_namespace": shared,
            },
        },
        "display_name": name,
        "file_id": "id:" + rand_id(rng, "", 22, _ALNUM),
    }
