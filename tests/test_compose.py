"""docker-compose.yaml and the Dockerfile, checked statically (no Docker engine here).

The compose file must keep the official Airflow 3 shape (CeleryExecutor on PostgreSQL + Redis,
every component with a healthcheck), run the image this repo builds with exactly the pinned
lock, mount the project folders, and keep the emulator demo loopback-only.

The image installs the runtime lock (requirements.txt) only: no test tool, every module the
production code imports is in it, and the test lock agrees with it on every shared pin.

The Dockerfile has two stages: `airflow` (the production image: the lock, the dropbox_team_log
package and the DAG files, nothing else) and `emulator` (that plus the emulator, a dev tool).
Airflow's services build `airflow`; only the demo profile's services build `emulator`.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions

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
#: Every service that runs Airflow itself (the production image).
AIRFLOW_IMAGE_SERVICES = (*AIRFLOW, "airflow-init", "airflow-cli", "flower")
#: The demo profile's services, the only ones that may run the emulator image.
DEMO = ("dropbox-emulator", "demo-connect")
PRODUCTION_IMAGE = "${AIRFLOW_IMAGE_NAME:-dropbox-team-log-airflow:0.1.0}"
EMULATOR_IMAGE = "dropbox-team-log-emulator:0.1.0"
#: What the production stage copies from the build context, and nothing more.
PRODUCTION_SOURCES = {
    "requirements.txt",
    "pyproject.toml",
    "README.md",
    "include/dropbox_team_log",
    "dags",
}
#: Tools only tests, lint and benchmarks use: in the test lock, never in the image's.
TEST_ONLY = {
    "pytest",
    "pytest-timeout",
    "playwright",
    "moto",
    "ruff",
    "hypothesis",
    "ocsf-json-schema",
}
#: The code the images run: the package and the DAG files (production), the emulator (demo).
RUNTIME_CODE = ("include/dropbox_team_log", "dags", "plugins", "emulator/dropbox_emulator")
FIRST_PARTY = {"dropbox_team_log", "dropbox_emulator"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    """A lock's `name==version` lines, names normalised."""
    text = (REPO / lock).read_text()
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", text, re.M)
    return {normalized(name): version for name, version in found}


@dataclass
class Stage:
    base: str
    name: str | None
    #: (INSTRUCTION, arguments) in order, comments and continuations resolved.
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]

    def copy_sources(self) -> list[str]:
        """COPY's source paths (flags dropped, destination dropped), as written."""
        sources = []
        for args in self.args("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            sources += words[:-1]
        return sources

    def pip_installs(self) -> list[str]:
        return [m for a in self.args("RUN") for m in re.findall(r"pip install[^&;|]*", a)]


def dockerfile_stages(text: str) -> list[Stage]:
    """The Dockerfile's build stages, in order (instructions before the first FROM are ARGs)."""
    logical, pending = [], ""
    for line in text.splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append((pending + line).strip())
        pending = ""
    stages: list[Stage] = []
    for line in filter(None, logical):
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert m, line
            stages.append(Stage(base=m.group(1), name=m.group(2)))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


STAGES = dockerfile_stages(DOCKERFILE)


def stage(name: str) -> Stage:
    [found] = [s for s in STAGES if s.name == name]
    return found


def build_target(service: str) -> str | None:
    build = SERVICES[service].get("build")
    return build.get("target") if isinstance(build, dict) else None


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


def test_airflow_services_build_the_production_target_with_the_project_mounted():
    mounts = {
        "./dags:/opt/airflow/dags",
        "./plugins:/opt/airflow/plugins",
        "./include:/opt/airflow/include",
        "./data:/opt/airflow/data",
        "./logs:/opt/airflow/logs",
        "./config:/opt/airflow/config",
    }
    for name in AIRFLOW_IMAGE_SERVICES:
        service = SERVICES[name]
        assert service["build"] == {"context": ".", "target": "airflow"}, name
        assert service["image"] == PRODUCTION_IMAGE, name
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


def test_only_the_demo_profile_runs_the_emulator_image():
    targets = {name: build_target(name) for name in SERVICES if "build" in SERVICES[name]}
    # Every service built here names a stage of the Dockerfile.
    assert set(targets.values()) <= {s.name for s in STAGES}, targets
    assert {name for name, target in targets.items() if target == "emulator"} == set(DEMO)
    assert {name for name, target in targets.items() if target == "airflow"} == set(
        AIRFLOW_IMAGE_SERVICES
    )
    for name in DEMO:
        service = SERVICES[name]
        assert service["build"] == {"context": ".", "target": "emulator"}, name
        assert service.get("profiles") == ["demo"], name
        # Its own tag: building the demo never overwrites the production image's tag.
        assert service["image"] == EMULATOR_IMAGE != PRODUCTION_IMAGE, name
    # No other service runs the emulator image (e.g. by `image:` without `build:`).
    others = set(SERVICES) - set(DEMO)
    assert not any("emulator" in SERVICES[name].get("image", "") for name in others)


def test_dockerfile_production_stage_installs_exactly_the_lock_and_the_package():
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.3\.2$", DOCKERFILE, re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", DOCKERFILE, re.M)
    production = stage("airflow")
    assert production is STAGES[0]
    assert production.base == "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}"
    assert production.pip_installs() == [
        "pip install --no-cache-dir -r /opt/project/requirements.txt",
        "pip install --no-cache-dir --no-deps /opt/project",
    ]
    assert "--chown=airflow:0 requirements.txt /opt/project/requirements.txt" in production.args(
        "COPY"
    )
    assert ("ENV", "ARROW_DEFAULT_MEMORY_POOL=system") in production.instructions
    assert "--chown=airflow:0 dags /opt/airflow/dags" in production.args("COPY")
    # The base image's Airflow is the one the lock pins.
    lock = (REPO / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2$", lock, re.M)


def test_the_image_installs_the_runtime_lock_which_holds_no_test_tool():
    runtime, test = pins("requirements.txt"), pins("requirements-test.txt")
    assert "apache-airflow" in runtime and "dropbox" in runtime
    assert not TEST_ONLY & set(runtime), TEST_ONLY & set(runtime)
    assert set(test) >= TEST_ONLY
    # The test lock is the runtime lock plus the tools: same versions for everything shared.
    assert set(runtime) <= set(test)
    differ = {n: (v, test[n]) for n, v in runtime.items() if test[n] != v}
    assert not differ, f"the test lock disagrees with the runtime lock: {differ}"
    # ... because its input is constrained by the runtime lock, and every pin is exact.
    test_in = (REPO / "requirements-test.in").read_text().splitlines()
    assert "-c requirements.txt" in test_in and "-r requirements.in" in test_in
    for lock in ("requirements.txt", "requirements-test.txt"):
        requirement_lines = [
            line
            for line in (REPO / lock).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert all("==" in line for line in requirement_lines), lock
    # Only the runtime lock reaches the image (the build context lets nothing else in).
    assert all("requirements-test" not in args for s in STAGES for _, args in s.instructions)


def imported_top_level_modules(folder: str) -> set[str]:
    """Every module name (its top level) imported anywhere in `folder`, lazily or not."""
    names: set[str] = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names


def test_every_module_the_images_run_imports_is_in_the_runtime_lock():
    runtime = set(pins("requirements.txt"))
    owners = packages_distributions()  # the venv: module name -> the distributions providing it
    missing = {}
    for folder in RUNTIME_CODE:
        for module in imported_top_level_modules(folder):
            if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
                continue
            dists = {normalized(d) for d in owners.get(module, [])}
            if not dists & runtime:
                missing[module] = sorted(dists) or "installed by no distribution"
    assert not missing, f"imported at runtime but not in requirements.txt: {missing}"
    # The check sees lazy imports too (this one is inside a function).
    assert "fsspec" in imported_top_level_modules("include/dropbox_team_log")


def test_production_stage_ships_no_emulator_code():
    production = stage("airflow")
    # It copies the production package's source and nothing else from the repo ...
    sources = production.copy_sources()
    assert len(sources) == len(set(sources)) and set(sources) == PRODUCTION_SOURCES, sources
    assert not any("emulator" in args.lower() for _, args in production.instructions)
    # ... the /opt/project it pip-installs packages dropbox_team_log alone ...
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"
    ]
    assert find == {"where": ["include"], "include": ["dropbox_team_log*"]}
    # (that none of its modules imports the emulator: tests/test_architecture.py)
    # A plain `docker build .` (no --target) ends on the production image, unchanged.
    assert STAGES[-1].base == "airflow" and STAGES[-1].instructions == []


def test_emulator_stage_adds_only_the_emulator_to_the_production_image():
    demo = stage("emulator")
    assert demo.base == "airflow"
    assert demo.copy_sources() == ["emulator"]
    # Its one dependency (orjson) is in the lock already: nothing new is resolved.
    assert demo.pip_installs() == ["pip install --no-cache-dir --no-deps /opt/project/emulator"]
    assert re.search(r"^orjson==", (REPO / "requirements.txt").read_text(), re.M)
    assert tomllib.loads((REPO / "emulator" / "pyproject.toml").read_text())["project"][
        "dependencies"
    ] == ["orjson"]


def test_build_context_is_what_the_stages_copy():
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    # Everything is excluded, then exactly the copied paths are let back in: no venv, data,
    # logs, config (airflow.cfg holds the secrets) or .env.
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {source.rstrip("/") for s in STAGES for source in s.copy_sources()}
    assert allowed == copied == PRODUCTION_SOURCES | {"emulator"}
    assert "**/*.egg-info" in ignore  # a local editable install's metadata stays out


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
    # As compose resolves it (merge keys included): the demo's services build the emulator
    # target, every other service the production one.
    result = subprocess.run(
        [*cli, "-f", str(REPO / "docker-compose.yaml"), "--profile", "demo", "config"],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW_UID": "1000"},
        check=True,
    )
    resolved = yaml.safe_load(result.stdout)["services"]
    built = {name: s["build"]["target"] for name, s in resolved.items() if "build" in s}
    expected = {
        **dict.fromkeys(AIRFLOW_IMAGE_SERVICES, "airflow"),
        **dict.fromkeys(DEMO, "emulator"),
    }
    # Compose v2 leaves out services of inactive profiles (flower, airflow-cli); v1 lists them.
    assert {*AIRFLOW, *DEMO} <= set(built)
    assert built == {name: target for name, target in expected.items() if name in built}
