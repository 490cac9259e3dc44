"""The provider entry point: Airflow sees `dropbox_team`, its hook, its form and its secrets."""

from __future__ import annotations

import json
import os
import subprocess
import warnings

import pytest

from dropbox_team_log import get_provider_info as provider
from dropbox_team_log.cli.connect_options import ConnectOptions
from dropbox_team_log.cli.oauth_flow import start_flow
from dropbox_team_log.hooks import dropbox_team as hook

EXTRA_FIELDS = {"refresh_token", "connected_at", "team_id", "team_name", "timeout"}


@pytest.fixture(scope="module")
def pm():
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_provider_info_passes_airflows_schema():
    from airflow.providers_manager import _create_provider_info_schema_validator

    info = provider.get_provider_info()
    _create_provider_info_schema_validator().validate(info)
    assert info["package-name"] == "dropbox-team-log"  # must equal the distribution name
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == hook.DropboxTeamHook.conn_type
    assert conn_type["hook-name"] == hook.DropboxTeamHook.hook_name


def test_provider_is_discovered_through_the_entry_point(pm):
    info = pm.providers["dropbox-team-log"]
    assert info.version == "0.1.0"
    assert info.data["connection-types"][0]["hook-class-name"] == (
        "dropbox_team_log.hooks.dropbox_team.DropboxTeamHook"
    )


def test_hook_is_registered_for_the_connection_type():
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    info = ProvidersManagerTaskRuntime().hooks["dropbox_team"]
    assert info.hook_class_name == "dropbox_team_log.hooks.dropbox_team.DropboxTeamHook"
    assert info.connection_id_attribute_name == "dropbox_team_conn_id"
    assert info.hook_name == "Dropbox Team"
    assert info.connection_testable  # the UI shows the Test button


def test_form_fields_and_sensitivity(pm):
    widgets = {
        w.field_name: w
        for key, w in pm.connection_form_widgets.items()
        if key.startswith("extra__dropbox_team__")
    }
    assert set(widgets) == EXTRA_FIELDS
    assert {name for name, w in widgets.items() if w.is_sensitive} == {"refresh_token"}
    behaviour = pm.field_behaviours["dropbox_team"]
    assert set(behaviour["hidden_fields"]) == {"schema", "port"}
    assert behaviour["relabeling"] == {
        "login": "App key",
        "password": "App secret",
        "host": "API base URL (optional)",
    }
    # Placeholders of extra fields get Airflow's internal prefix.
    assert "extra__dropbox_team__connected_at" in behaviour["placeholders"]


def test_ui_form_metadata_served_by_the_api():
    """What the React UI receives for the connection form (`/ui/connections/hook_meta`)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    ours = meta["dropbox_team"]
    assert ours.hook_name == "Dropbox Team"
    assert ours.standard_fields.login.title == "App key"
    assert ours.standard_fields.password.title == "App secret"
    assert ours.standard_fields.host.title == "API base URL (optional)"
    assert ours.standard_fields.port.hidden and ours.standard_fields.url_schema.hidden
    assert set(ours.extra_fields) == EXTRA_FIELDS
    assert ours.extra_fields["refresh_token"]["schema"]["format"] == "password"
    assert ours.extra_fields["timeout"]["value"] == 60


def test_connect_asks_for_the_scopes_the_hook_refreshes_with():
    """The grant an admin allows must cover what the hook's token refresh asks for."""
    from urllib.parse import parse_qs, urlsplit

    _flow, url = start_flow(ConnectOptions(app_key="k", app_secret="s"))
    asked = parse_qs(urlsplit(url).query)["scope"][0].split()
    conn = type("Conn", (), {"conn_id": "c", "login": "k", "password": "s", "host": None})
    conn.extra_dejson = {"refresh_token": "r"}
    probe = hook.DropboxTeamHook(dropbox_team_conn_id="c")
    probe.get_connection = lambda _conn_id: conn  # the hook reads this object, not a backend
    assert sorted(asked) == sorted(probe.api.scopes)


def test_extra_secrets_are_masked_by_airflow():
    """Airflow hides extra keys containing "token"/"secret" wherever it shows a connection."""
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse
    from airflow.sdk.log import redact

    secret_extra = {
        "refresh_token": "rt-0123456789abcdef",
        "connected_at": "2026-11-28T09:00:00Z",
        "team_id": "dbtid:AAAAAAAA",
        "team_name": "Northwind",
    }
    redacted = redact(secret_extra)
    assert redacted["refresh_token"] == "***"
    assert redacted["team_id"] == "dbtid:AAAAAAAA"  # not a secret: stays readable
    response = ConnectionResponse(
        connection_id="dropbox_team_default",
        conn_type="dropbox_team",
        description=None,
        host=None,
        login="app-key",
        schema=None,
        port=None,
        password="app-secret-0123456789",
        extra=json.dumps(secret_extra),
        team_name=None,
    )
    assert "rt-0123456789abcdef" not in response.model_dump_json()
    assert "app-secret-0123456789" not in response.model_dump_json()
    assert json.loads(response.extra)["connected_at"] == "2026-11-28T09:00:00Z"


def test_hook_registers_connection_secrets_with_the_masker(monkeypatch):
    """Values, not only keys: a token echoed inside any log text is replaced by ***."""
    from airflow.sdk.log import redact

    refresh, secret = "rt-mask-me-0123456789", "sec-mask-me-0123456789"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MASK_PROBE",
        json.dumps(
            {
                "conn_type": "dropbox_team",
                "login": "app-key",
                "password": secret,
                "extra": {"refresh_token": refresh},
            }
        ),
    )
    settings = hook.DropboxTeamHook(dropbox_team_conn_id="mask_probe").settings
    assert refresh not in repr(settings) and secret not in repr(settings)
    text = redact(f"token={refresh} secret={secret}")
    assert refresh not in text and secret not in text


def test_airflow_providers_list_shows_the_package():
    """The CLI view (hooks and form fields are checked in-process above)."""
    listed = subprocess.run(
        ["airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert listed.returncode == 0, listed.stderr
    packages = {p["package_name"]: p for p in json.loads(listed.stdout[listed.stdout.index("[") :])}
    assert packages["dropbox-team-log"]["version"] == "0.1.0"
