"""The spec fixture's events as templates: each event type's fixed parts, with the synthetic
team's identities in place of the spec's, and the assembly of a TeamEvent in the wire's order.

Dropbox's published examples (the bundled fixture, one event per type) give every type's
category, description and details; `builders.py` fills in who, where and what.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from .team import Json, Team

FIXTURE_NAME = "dropbox_spec_team_events.ndjson"

# Identities used by the spec examples -> replaced by the synthetic team in template details.
_SPEC_JOHN = ("dbid:AAHgR8xsQP48a5DQUGPo-Vxsrjd0OByVmho", "John Smith", "john_smith@acmecorp.com")
_SPEC_JANE = ("dbid:AAGx4oiLtHdvRdNxUpvvJBXYgR4BS19c9kw", "Jane Smith", "jane_smith@acmecorp.com")
_SPEC_MEMBER_ID = "dbmid:AAFoi-tmvRuQR0jU-3fN4B-9nZo6nHcDO9Q"


@dataclass(frozen=True)
class Template:
    """One event type's fixed parts, from the fixture."""

    tag: str
    category: Json
    event_type: Json
    details: Json
    two_assets: bool


def load_fixture_lines() -> list[bytes]:
    """The bundled fixture (package data), one compact JSON event per line."""
    data = resources.files(__package__).joinpath(FIXTURE_NAME).read_bytes()
    return [line for line in data.splitlines() if line.strip()]


def _patch_details(node: Any) -> Any:
    """Make spec example details decodable and self-consistent.

    - `client_type: {".tag": "other"}` (the catch-all, which stone rejects) -> `windows`;
    - asset indices point into the event's own (1 or 2) assets.
    """
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "client_type" and isinstance(value, dict) and value.get(".tag") == "other":
                out[key] = {".tag": "windows"}
            elif key.endswith("asset_index") and isinstance(value, int):
                out[key] = 1 if key == "dest_asset_index" else 0
            else:
                out[key] = _patch_details(value)
        return out
    if isinstance(node, list):
        return [_patch_details(v) for v in node]
    return node


def load_templates(team: Team) -> dict[str, Template]:
    """Fixture events -> templates with the team's identities in place of the spec's."""
    john, jane = team.members[0], team.members[1]
    replacements = [
        (_SPEC_JOHN[0], john.account_id),
        (_SPEC_JANE[0], jane.account_id),
        (_SPEC_JOHN[2], john.email),
        (_SPEC_JANE[2], jane.email),
        (_SPEC_JOHN[1], john.display_name),
        (_SPEC_JANE[1], jane.display_name),
        (_SPEC_MEMBER_ID, john.team_member_id or ""),
        ("acmecorp.com", team.domain),
        ('"A Team"', orjson.dumps(team.name).decode()),
    ]
    templates: dict[str, Template] = {}
    for line in load_fixture_lines():
        text = line.decode()
        for old, new in replacements:
            text = text.replace(old, new)
        event = orjson.loads(text)
        tag = event["event_type"][".tag"]
        if tag in templates:
            continue  # the extra anonymous-actor lines repeat a type
        details = _patch_details(event["details"])
        two = "dest_asset_index" in orjson.dumps(details).decode()
        templates[tag] = Template(
            tag=tag,
            category={".tag": event["event_category"][".tag"]},
            event_type={".tag": tag, "description": event["event_type"]["description"]},
            details=details,
            two_assets=two,
        )
    return templates


def team_event(
    ts: str,
    tpl: Template,
    details: Json,
    actor: Json | None,
    origin: Json | None,
    involve: bool,
    context: Json | None,
    participants: list[Json] | None = None,
    assets: list[Json] | None = None,
) -> Json:
    """A TeamEvent in the wire's field order, optional parts left out when absent."""
    ev: Json = {
        "timestamp": ts,
        "event_category": tpl.category,
        "event_type": tpl.event_type,
        "details": details,
    }
    if actor is not None:
        ev["actor"] = actor
    if origin is not None:
        ev["origin"] = origin
    ev["involve_non_team_member"] = involve
    if context is not None:
        ev["context"] = context
    if participants:
        ev["participants"] = participants
    if assets:
        ev["assets"] = assets
    return ev
