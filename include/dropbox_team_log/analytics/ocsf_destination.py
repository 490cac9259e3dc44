"""Where the OCSF export writes, and keeping it current: the days that changed, exported again.

A destination is a folder or URL and the layouts written there (hive, Security Lake's, both),
checked alike for the CLI's options and the OCSF export DAG's Variable. `export_changed` is what
the DAG runs on each dataset update: the days written since its last run (every day, the first
time) are exported to the destination, and the versions of the day files it exported are kept
beside the dataset (`<root>/_ocsf_state/<destination key>.json`). A day written again (late
events, a healed file) is exported again; its files are replaced whole, so each event has one
record. A new destination (another place, layout or Security Lake target) starts over.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from dropbox_team_log import settings
from dropbox_team_log.analytics.ocsf_export import SecurityLakeTarget, default_out, export
from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.files import lock_if_local, read_text, write_text
from dropbox_team_log.dataset.versions import day_file_versions

_ACCOUNT_ID = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_VERSION = re.compile(r"[0-9A-Za-z._-]{1,32}")
_SETTINGS = frozenset({"out", "layout", "region", "account_id", "source_version"})


class DestinationError(ValueError):
    """A destination's settings are wrong; the message says which and how to fix it."""


def lake_target(
    layout: str,
    region: str | None,
    account_id: str | None,
    source_version: str | None,
    *,
    label: Callable[[str], str] = str,
) -> SecurityLakeTarget | None:
    """The Security Lake target of these settings (None for the hive layout alone); each
    setting is named by `label` in the error (the CLI's `--account-id`, the Variable's key)."""
    if layout not in settings.OCSF_LAYOUTS:
        raise DestinationError(
            f"{label('layout')} {layout!r} is not one of {', '.join(settings.OCSF_LAYOUTS)}"
        )
    if layout == "hive":
        return None
    if not region or not _REGION.fullmatch(region):
        raise DestinationError(
            f"the Security Lake layout needs {label('region')}, an AWS region such as us-east-1"
        )
    if not account_id or not _ACCOUNT_ID.fullmatch(account_id):
        raise DestinationError(
            f"the Security Lake layout needs {label('account_id')}, the 12-digit AWS account id"
        )
    if source_version and not _VERSION.fullmatch(source_version):
        raise DestinationError(
            f"{label('source_version')} {source_version!r} is not a version such as 1.0"
        )
    return SecurityLakeTarget(region, account_id, source_version or None)


@dataclass(frozen=True)
class OcsfDestination:
    """A place the OCSF records are written to, in one or both layouts."""

    out: str
    hive: bool = True
    lake: SecurityLakeTarget | None = None

    @classmethod
    def from_setting(cls, text: str | None, root: str) -> OcsfDestination:
        """The destination the Variable `settings.OCSF_EXPORT_VARIABLE` describes: a JSON object
        with `out`, `layout`, `region`, `account_id`, `source_version`; unset or `{}`: hive
        partitions under `<root>/_ocsf`."""
        name = settings.OCSF_EXPORT_VARIABLE
        try:
            values = json.loads(text) if text and text.strip() else {}
        except ValueError:
            raise DestinationError(f"Variable {name} is not JSON: {_EXAMPLE}") from None
        if not isinstance(values, dict):
            raise DestinationError(f"Variable {name} must be a JSON object: {_EXAMPLE}")
        unknown = sorted(set(values) - _SETTINGS)
        if unknown:
            raise DestinationError(
                f"Variable {name} has unknown key(s) {', '.join(map(repr, unknown))}: the keys "
                f"are {', '.join(sorted(_SETTINGS))}"
            )
        wrong = sorted(k for k, v in values.items() if v is not None and not isinstance(v, str))
        if wrong:
            raise DestinationError(f"Variable {name}: {', '.join(wrong)} must be text")
        layout = values.get("layout") or "hive"
        lake = lake_target(
            layout,
            values.get("region"),
            values.get("account_id"),
            values.get("source_version"),
            label=lambda key: f"{name}.{key}",
        )
        out = values.get("out") or default_out(root)
        return cls(out=out, hive=layout in ("hive", "both"), lake=lake)

    def key(self) -> str:
        """A name for this destination's export state (any change of it starts over)."""
        text = json.dumps([self.out.rstrip("/"), self.hive, self.lake and vars(self.lake)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        layouts = (["hive"] if self.hive else []) + (["security-lake"] if self.lake else [])
        return f"{self.out} ({' + '.join(layouts)})"


_EXAMPLE = (
    'e.g. {"out": "s3://<lake bucket>/", "layout": "security-lake", "region": "us-east-1", '
    '"account_id": "123456789012"}'
)


@dataclass
class ChangedExport:
    """What one `export_changed` did (the DAG task's XCom: no secret, no event text)."""

    destination: str
    changed_days: list[str] = field(default_factory=list)
    records: int = 0
    files: int = 0
    removed: int = 0
    seconds: float = 0.0

    def to_xcom(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def state_path(root: str, destination: OcsfDestination) -> str:
    return f"{str(root).rstrip('/')}/{settings.OCSF_STATE_DIR}/{destination.key()}.json"


def export_changed(root: str, destination: OcsfDestination) -> ChangedExport:
    """Export the days written since the last export to `destination`, then record them.

    The versions are listed before the export: a day written while it runs has another version
    by the next run, which exports it again. A failed export records nothing: the next run
    exports the same days (their files are replaced whole)."""
    started = time.perf_counter()
    result = ChangedExport(destination=destination.describe())
    path = state_path(root, destination)
    fs, local_path = object_store.filesystem(path)
    with lock_if_local(fs, f"{local_path}.lock"):
        text = read_text(path)
        exported = json.loads(text).get("day_files", {}) if text is not None else {}
        versions = day_file_versions(root)
        changed = sorted(day for day, version in versions.items() if exported.get(day) != version)
        if changed:
            done = export(
                root,
                destination.out,
                days=[date.fromisoformat(day) for day in changed],
                hive=destination.hive,
                security_lake=destination.lake,
            )
            result.records, result.files = done.records, len(done.written)
            result.removed = len(done.removed)
            state = {"destination": result.destination, "day_files": versions}
            write_text(path, json.dumps(state, indent=1, sort_keys=True))
        result.changed_days = changed
    result.seconds = time.perf_counter() - started
    return result
