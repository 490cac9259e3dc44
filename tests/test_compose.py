"""docker-compose.yaml and the Dockerfile, checked statically (no Docker engine here).

The compose file must keep the official Airflow 3 shape (CeleryExecutor on PostgreSQL + Redis,
every component with a healthcheck), run the image this repo builds with exactly the pinned
lock, mount the project folders, and keep the emulator demo loopback-only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import paths

REPO = paths.REPO
COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
AIRFLOW = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}


def env(service: str) -> dict[str, str]:
    return SERVICES[service]["environment"]


def test_official_shape_services_and_commands():
    assert {"postgres", "redis", "airflow-init", "flower", *AIRFLOW} <= set(SERVICES)
    for name, command in AIRFLOW.items():
        assert SERVICES[name]["command"] == command, name
    assert SERVICES["flower"]["command"] == "celery flower"
    assert SERVICES["flower"]["profiles"] == ["flower"]  # optional, as in the official file
    # Always-on services belong to no profile.
    assert not any(
        "profiles" in SERVICES[s] for s in ("postgres", "redis", "airflow-init", *AIRFLOW)
    )


def test_every_long_running_service_has_a_healthcheck():
    for name in ("postgres", "redis", "flower", "dropbox-emulator", *AIRFLOW):
        check = SERVICES[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 5, name
    assert "/api/v2/version" in " ".join(SERVICES["airflow-apiserver"]["healthcheck"]["test"])
    assert ":8974/health" in " ".join(SERVICES["airflow-scheduler"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(SERVICES["airflow-worker"]["healthcheck"]["test"])


def test_celery_executor_on_postgres_and_redis_everywhere():
    for name in (*AIRFLOW, "airflow-init", "flower", "demo-connect"):
        e = env(name)
        assert e["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres/" in e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert e["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        assert (
            e["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
            and "@redis:" in e["AIRFLOW__CELERY__BROKER_URL"]
        )
        assert e["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
            "http://airflow-apiserver:8080/execution/"
        )
        assert e["AIRFLOW_CONFIG"] == "/opt/airflow/config/airflow.cfg"  # shared secrets
        assert e["AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT"].endswith(
            "/opt/airflow/data/dropbox_team_log}"
        )
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in e or e["_PIP_ADDITIONAL_REQUIREMENTS"] == ""
    airflow_deps = SERVICES["airflow-scheduler"]["depends_on"]
    assert airflow_deps["postgres"]["condition"] == "service_healthy"
    assert airflow_deps["redis"]["condition"] == "service_healthy"
    assert airflow_deps["airflow-init"]["condition"] == "service_completed_successfully"


def test_one_image_built_here_with_the_project_mounted():
    mounts = {
        "./dags:/opt/airflow/dags",
        "./plugins:/opt/airflow/plugins",
        "./include:/opt/airflow/include",
        "./data:/opt/airflow/data",
        "./logs:/opt/airflow/logs",
        "./config:/opt/airflow/config",
    }
    for name in (*AIRFLOW, "airflow-init", "flower", "dropbox-emulator", "demo-connect"):
        service = SERVICES[name]
        assert service["build"] == "." and "dropbox-team-log-airflow" in service["image"], name
    for name in (*AIRFLOW, "airflow-init", "flower"):
        service = SERVICES[name]
        got = {v.replace("${AIRFLOW_PROJ_DIR:-.}", ".") for v in service["volumes"]}
        assert got == mounts, name
        user = "0:0" if name == "airflow-init" else "${AIRFLOW_UID:-50000}:0"
        assert service["user"] == user, name


def test_init_migrates_creates_the_pool_and_owns_the_folders():
    init = SERVICES["airflow-init"]
    script = "\n".join(init["command"])
    assert env("airflow-init")["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "airflow pools set dropbox_api" in script
    assert 'chown -R "${AIRFLOW_UID:-50000}:0"' in script
    assert "airflow config list" in script  # generates airflow.cfg (secrets) on first run


def test_demo_profile_keeps_the_emulator_on_the_workers_loopback():
    emulator, connect = SERVICES["dropbox-emulator"], SERVICES["demo-connect"]
    assert emulator["profiles"] == connect["profiles"] == ["demo"]
    assert emulator["network_mode"] == connect["network_mode"] == "service:airflow-worker"
    assert "ports" not in emulator  # reachable from nowhere but the worker
    args = emulator["entrypoint"]
    assert args[0] == "dropbox-emulator" and args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--clock-rate") + 1] == "1"  # the scheduler's runs use real time
    script = "\n".join(connect["command"])
    assert "dropbox-team-log connect" in script and "--api-base-url http://127.0.0.1:8765" in script
    assert "airflow dags trigger dropbox_team_log_backfill" in script


def test_dollar_signs_meant_for_the_shell_are_escaped():
    # Compose interpolates ${VAR}; $$ reaches the shell. Anything else would be a compose error.
    text = (REPO / "docker-compose.yaml").read_text()
    for match in re.finditer(
        r"(?<!\$)\$(?!\$)(\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}|[A-Za-z_])", text
    ):
        assert match.group(1).startswith("{"), f"unescaped shell variable: {match.group(0)}"


def test_dockerfile_installs_exactly_the_lock_and_the_package():
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.3\.2$", DOCKERFILE, re.M)
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in DOCKERFILE
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", DOCKERFILE, re.M)
    installs = re.findall(r"pip install[^\n]*", DOCKERFILE)
    assert installs == [
        "pip install --no-cache-dir -r /opt/project/requirements.txt",
        "pip install --no-cache-dir --no-deps /opt/project",
    ]
    assert "COPY --chown=airflow:0 requirements.txt /opt/project/requirements.txt" in DOCKERFILE
    # The base image's Airflow is the one the lock pins.
    lock = (REPO / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2$", lock, re.M)
    ignore = [
        line for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] not in "#"
    ]
    assert ignore[0] == "*" and "!requirements.txt" in ignore and "!include/" in ignore


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (Debian's package), whichever works."""
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        probe = subprocess.run([*cli, "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return cli
    return None


def test_compose_implementation_accepts_the_file():
    cli = compose_cli()
    if cli is None:
        # CI installs Debian's docker-compose; a developer machine may have no compose at all.
        assert not os.environ.get("CI"), "no compose implementation in CI"
        pytest.skip("no compose implementation (apt-get install docker-compose)")
    for profiles in ([], ["--profile", "demo"], ["--profile", "flower"]):
        result = subprocess.run(
            [*cli, "-f", str(REPO / "docker-compose.yaml"), *profiles, "config", "--quiet"],
            capture_output=True,
            text=True,
            env={**os.environ, "AIRFLOW_UID": "1000"},
        )
        assert result.returncode == 0, result.stderr
