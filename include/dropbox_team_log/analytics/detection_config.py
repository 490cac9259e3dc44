"""The detections' knobs: thresholds, windows and allowlists, checked once, in one place.

Defaults are `settings.DETECTION_DEFAULTS`; the Airflow Variable `dropbox_team_log_detections`
(a JSON object) and the CLI's `--set KEY=VALUE` override them key by key. A knob that is unknown
or out of range fails with its name, before any detection runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from dropbox_team_log import settings
from dropbox_team_log.errors import PermanentError


class DetectionConfigError(PermanentError):
    """A detection knob is unknown or has a value it cannot take."""


@dataclass(frozen=True)
class DetectionConfig:
    """The detections' knobs (settings.DETECTION_DEFAULTS says what each one does)."""

    mass_window_minutes: int = settings.DETECTION_DEFAULTS["mass_window_minutes"]
    mass_download_files: int = settings.DETECTION_DEFAULTS["mass_download_files"]
    mass_delete_files: int = settings.DETECTION_DEFAULTS["mass_delete_files"]
    brute_force_window_minutes: int = settings.DETECTION_DEFAULTS["brute_force_window_minutes"]
    brute_force_failures: int = settings.DETECTION_DEFAULTS["brute_force_failures"]
    link_burst_window_hours: int = settings.DETECTION_DEFAULTS["link_burst_window_hours"]
    link_burst_ips: int = settings.DETECTION_DEFAULTS["link_burst_ips"]
    link_burst_countries: int = settings.DETECTION_DEFAULTS["link_burst_countries"]
    new_country_lookback_days: int = settings.DETECTION_DEFAULTS["new_country_lookback_days"]
    new_country_min_history: int = settings.DETECTION_DEFAULTS["new_country_min_history"]
    allowed_share_domains: tuple[str, ...] = settings.DETECTION_DEFAULTS["allowed_share_domains"]
    allowed_countries: tuple[str, ...] = settings.DETECTION_DEFAULTS["allowed_countries"]
    allowed_app_ids: tuple[str, ...] = settings.DETECTION_DEFAULTS["allowed_app_ids"]
    trusted_owner_domains: tuple[str, ...] = settings.DETECTION_DEFAULTS["trusted_owner_domains"]

    @classmethod
    def from_json(
        cls, text: str | None, source: str = settings.DETECTIONS_VARIABLE
    ) -> DetectionConfig:
        """The defaults overridden by a JSON object (None or blank: the defaults)."""
        if text is None or not text.strip():
            return cls()
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DetectionConfigError(f"{source} is not JSON ({exc}): fix its value") from None
        if not isinstance(overrides, dict):
            raise DetectionConfigError(f'{source} must be a JSON object like {{"knob": value}}')
        return cls().override(overrides, source)

    def override(self, overrides: Mapping[str, Any], source: str = "override") -> DetectionConfig:
        """A copy with `overrides` applied, each checked (positive whole numbers, string lists)."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise DetectionConfigError(
                    f"{source}: unknown detection setting {key!r}; known: {', '.join(known)}"
                )
            if isinstance(getattr(self, key), tuple):
                if isinstance(value, str):
                    value = [v for v in value.split(",") if v.strip()]
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise DetectionConfigError(f"{source}: {key} must be a list of strings")
                changes[key] = tuple(_normalise(key, v.strip()) for v in value)
            else:
                number = _whole_number(value)
                if number is None or number < 1:
                    raise DetectionConfigError(
                        f"{source}: {key} must be a whole number >= 1, not {value!r}"
                    )
                changes[key] = number
        return replace(self, **changes)

    @property
    def history_days(self) -> int:
        """Days before a changed day that a detection may read (the longest look back)."""
        longest_window_minutes = max(
            self.mass_window_minutes,
            self.brute_force_window_minutes,
            self.link_burst_window_hours * 60,
        )
        return max(self.new_country_lookback_days, -(-longest_window_minutes // 1440)) + 1


def _normalise(key: str, value: str) -> str:
    """Domains compare in lower case, country codes in upper case, app ids as they are."""
    if key.endswith("_domains"):
        return value.lower()
    if key.endswith("_countries"):
        return value.upper()
    return value


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
