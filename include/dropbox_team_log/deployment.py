"""What this deployment is set to: the Airflow Variables of `settings`, read with their defaults.

Used by the tasks and by the CLI alike, so both find the same dataset, report and connection.
Airflow is imported inside the functions: importing this module costs nothing.

Paths are resolved where they are read, the same way in every process: `~` expanded, a relative
path taken from AIRFLOW_HOME (which every process of a deployment shares; a working directory
is each process's own), so the plan, the sync, the report and the CLI name one folder. The plan
task hands its resolved root to the day tasks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dropbox_team_log import settings, team_registry
from dropbox_team_log.errors import ConnectionConfigError
from dropbox_team_log.team_registry import Team

#: URL schemes that name a local path: resolved like one.
_LOCAL_PROTOCOLS = ("file", "local")


def _variable(name: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


def airflow_home() -> Path:
    """AIRFLOW_HOME as Airflow reads it (default `~/airflow`)."""
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()


def default_output_root() -> str:
    """`<project>/data/dropbox_team_log` in a checkout (beside `dags/`), else in AIRFLOW_HOME."""
    project = Path(__file__).resolve().parents[2]
    if (project / "dags").is_dir():
        return str(project / "data" / "dropbox_team_log")
    return str(airflow_home() / "data" / "dropbox_team_log")


def resolve_path(raw: str) -> str:
    """A root or file path as every process reads it: a URL (`s3://...`) as given; a local path
    (or `file://` URL) absolute: `~` expanded, a relative one taken from AIRFLOW_HOME, never from
    the working directory. A blank value is returned as it is (the root check refuses it)."""
    from fsspec.core import split_protocol

    protocol, path = split_protocol(raw)
    if not raw.strip() or (protocol and protocol not in _LOCAL_PROTOCOLS):
        return raw
    return os.path.abspath(os.path.join(airflow_home(), os.path.expanduser(path)))


def output_root() -> str:
    """The dataset root, absolute: Variable `dropbox_team_log_output` (see `resolve_path`), else
    `default_output_root()`."""
    raw = _variable(settings.OUTPUT_VARIABLE)
    return resolve_path(raw) if raw else default_output_root()


def default_report_path(root: str) -> str:
    """`<root>/_reports/dropbox_team_log_report.html`: beside the data, outside its glob."""
    return f"{str(root).rstrip('/')}/{settings.REPORTS_DIR}/{settings.REPORT_FILE}"


def report_path(root: str) -> str:
    """Where the report goes: Variable `dropbox_team_log_report_path` (see `resolve_path`), else
    beside the data."""
    raw = _variable(settings.REPORT_PATH_VARIABLE)
    return resolve_path(raw) if raw else default_report_path(root)


def default_conn_id() -> str:
    """The deployment's default team: Variable `dropbox_team_log_conn_id`, else
    `dropbox_team_default`."""
    return _variable(settings.CONN_ID_VARIABLE) or settings.DEFAULT_CONN_ID


def conn_id(params: dict[str, Any]) -> str:
    """The team's connection: the run's `conn_id` param, the Variable, else the default."""
    return params.get("conn_id") or default_conn_id()


def registered_teams() -> list[Team]:
    """The registry (Variable `dropbox_team_log_teams`); absent or empty: the default team,
    marked implicit. Raises team_registry.RegistryError when the Variable is malformed."""
    return team_registry.parse(_variable(settings.TEAMS_VARIABLE), default_conn_id())


def save_teams(teams: list[Team]) -> None:
    """Write the registry from a task (through the Task SDK, like every Variable it reads)."""
    from airflow.sdk import Variable

    Variable.set(settings.TEAMS_VARIABLE, team_registry.dump(teams))


def team_key(conn_id: str, default: str) -> str | None:
    """The key team `conn_id`'s files carry in the dataset (dataset/layout.py): None for the
    default team `default` (its files keep their unprefixed names, as before the registry),
    else the connection id itself (checked: it prefixes file names; RegistryError if not)."""
    if conn_id == default:
        return None
    return team_registry.check_conn_id(conn_id)


def pseudonymise_key_setting() -> str | None:
    """The raw value of the pseudonymisation Variable (a key, `conn:<id>`, or None: off)."""
    return _variable(settings.PSEUDONYMISE_KEY_VARIABLE)


def detections_setting() -> str | None:
    """The raw JSON of the detections Variable (knob overrides), or None: the defaults."""
    return _variable(settings.DETECTIONS_VARIABLE)


def ocsf_export_setting() -> str | None:
    """The raw JSON of the OCSF export DAG's destination Variable, or None: the default."""
    return _variable(settings.OCSF_EXPORT_VARIABLE)


def aws_conn_id() -> str | None:
    """The Airflow AWS connection an S3 root is read and written with (Variable
    `dropbox_team_log_aws_conn_id`), or None: each process's standard AWS chain."""
    return _variable(settings.AWS_CONN_ID_VARIABLE) or None


def use_aws_connection(root: str, conn_id: str | None) -> None:
    """Make the AWS connection `conn_id` the credentials of every S3 filesystem this process
    opens from now on, when `root` is on S3 (else, or without a connection: nothing changes).

    Through fsspec's per-protocol defaults, so the dataset, the readers DuckDB is given, the
    report and the findings, which all open their files by URL, use it alike. Raises
    ConnectionConfigError saying what to fix when the connection is missing or gives no
    credentials. The secret key and session token are masked in every log.
    """
    from fsspec.core import split_protocol

    if not conn_id or split_protocol(str(root))[0] not in settings.S3_PROTOCOLS:
        return
    import fsspec.config

    options = s3_options(conn_id)
    for protocol in settings.S3_PROTOCOLS:
        fsspec.config.conf[protocol] = {**fsspec.config.conf.get(protocol, {}), **options}


def s3_options(conn_id: str) -> dict[str, Any]:
    """s3fs options (key, secret, token, endpoint_url, client_kwargs.region_name) from the
    Airflow AWS connection `conn_id`: through the Amazon provider's AwsBaseHook when it is
    installed (profiles and role assumption in the extra work then), else from the fields:
    login = access key id, password = secret access key, extra `aws_session_token`,
    `region_name`, `endpoint_url`."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.log import mask_secret

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConnectionConfigError(
            f"Variable {settings.AWS_CONN_ID_VARIABLE} names the AWS connection '{conn_id}', "
            "which does not exist: create it (type aws; login = access key id, password = "
            "secret access key, extra region_name / endpoint_url) or unset the Variable to use "
            "the workers' AWS environment"
        ) from None
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError:
        extra = conn.extra_dejson
        key, secret, token = conn.login, conn.password, extra.get("aws_session_token")
        endpoint_url, region = extra.get("endpoint_url"), extra.get("region_name")
    else:
        hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
        try:
            credentials = hook.get_credentials()
        except AttributeError:  # botocore found no credentials at all: said below
            key = secret = token = None
        except Exception as exc:  # botocore's errors carry no secret
            raise ConnectionConfigError(
                f"AWS connection '{conn_id}' gives no S3 credentials ({type(exc).__name__}: "
                f"{exc}): fix its login/password or the role in its extra"
            ) from None
        else:
            key, secret, token = credentials.access_key, credentials.secret_key, credentials.token
        endpoint_url = hook.conn_config.get_service_endpoint_url("s3")
        region = hook.conn_config.region_name
    if not key or not secret:
        raise ConnectionConfigError(
            f"AWS connection '{conn_id}' has no access key id (login) or no secret access key "
            "(password): fill both in, or unset the Variable "
            f"{settings.AWS_CONN_ID_VARIABLE} to use the workers' AWS environment"
        )
    for value in (secret, token):
        if value:
            mask_secret(value)
    return {
        "key": key,
        "secret": secret,
        "token": token,
        "endpoint_url": endpoint_url,
        "client_kwargs": {"region_name": region},
    }
