"""A throwaway production-shaped Airflow: PostgreSQL metadata, Redis broker, CeleryExecutor.

Each stack owns a fresh PostgreSQL database (unique name), an empty Redis DB number, an
AIRFLOW_HOME in a temp dir and free loopback ports, and runs every component as its own process
group with its output in `<home>/logs/<component>.log`. `close()` stops the processes (SIGTERM,
then SIGKILL), drops the database and deletes the Redis keys; it is safe to call after any failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
import psycopg2
import redis

from tests.helpers.airflow_env import REPO, VENV_BIN

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

#: The components of a CeleryExecutor deployment, as `airflow` sub-commands.
COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{api_port}", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    # more task slots than the pool's (settings.API_POOL_SLOTS): the tasks outside the pool
    # (planning, starting backfills) never wait for one (docs/operations.md)
    "celery-worker": ["celery", "worker", "--concurrency", "6", "-H", "{worker_name}@%h"],
}


#: The dag-processor's settings of a stack whose DAG files do not change while it runs: parse
#: each file once, in one process (a re-parse every 10 s, in two, was a fifth of a test
#: stack's CPU). The stale-DAG check compares parses with each other, so no DAG goes stale.
PARSE_ONCE = {
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_sql(statement: str) -> None:
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _claim_redis_db(owner: str) -> int:
    """An empty Redis DB number, claimed with a marker key (SET NX) so that two test sessions
    never share one; cleanup deletes every key of it, the marker included."""
    for number in range(15, 0, -1):
        client = redis.Redis(REDIS_HOST, REDIS_PORT, db=number)
        if client.dbsize() == 0 and client.set("dtl-e2e-owner", owner, nx=True):
            if client.dbsize() == 1:
                return number
            client.delete("dtl-e2e-owner")  # someone else's keys arrived meanwhile
    raise RuntimeError("no empty Redis DB number (1..15) for the test broker")


@dataclass
class Component:
    name: str
    process: subprocess.Popen
    log_path: Path
    log_file: IO[bytes]


@dataclass
class AirflowStack:
    """One deployment under test; `start()` it, `close()` it (always)."""

    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"dtl_e2e_{uuid.uuid4().hex[:12]}")
    api_port: int = field(default_factory=free_port)
    username: str = "e2e-admin"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    components: dict[str, Component] = field(default_factory=dict)
    redis_db: int | None = None
    database_created: bool = False
    #: Parse the DAG files once (they do not change under a test) instead of every 10 s.
    parse_once: bool = True

    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def env(self) -> dict[str, str]:
        """The environment every component shares (what a deployment's config would say)."""
        db_url = f"{PG_URL}/{self.name}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__FERNET_KEY": os.environ["AIRFLOW__CORE__FERNET_KEY"],
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.home / "passwords.json"
                ),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{self.name}",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__SECRET_KEY": self._secret("api"),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port("worker_log")),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port("trigger_log")),
                # Quick to notice the DAG files and to schedule: a test, not a fleet.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                **(PARSE_ONCE if self.parse_once else {}),
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        return env

    _secrets: dict[str, str] = field(default_factory=dict)

    def _secret(self, key: str) -> str:
        return self._secrets.setdefault(key, secrets.token_urlsafe(32))

    _ports: dict[str, int] = field(default_factory=dict)

    def _port(self, key: str) -> int:
        return self._ports.setdefault(key, free_port())

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an `airflow` CLI command against this stack; its output, or a failure with it."""
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def start(self) -> None:
        """Create the DB and broker, migrate, then start every component."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({self.username: self.password}))
        self.redis_db = _claim_redis_db(self.name)
        _admin_sql(f'CREATE DATABASE "{self.name}"')
        self.database_created = True
        self.airflow("db", "migrate", timeout=600)
        for name, args in COMPONENTS.items():
            self._spawn(
                name, [a.format(api_port=self.api_port, worker_name=self.name) for a in args]
            )

    def _spawn(self, name: str, args: list[str]) -> None:
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [str(VENV_BIN / "airflow"), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.env(),
            start_new_session=True,  # its own process group: stopped with all its children
        )
        self.components[name] = Component(name, process, log_path, log_file)

    def check_alive(self) -> None:
        """Fail fast (with the logs) when a component died instead of timing out later."""
        dead = {
            n: c.process.returncode
            for n, c in self.components.items()
            if c.process.poll() is not None
        }
        if dead:
            raise RuntimeError(f"components exited: {dead}\n{self.log_tails()}")

    def wait_for(self, what: str, probe: Callable[[], object], timeout: float, every: float = 2.0):
        """Poll `probe` until it returns something truthy; bounded, and aware of dead components."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                value = probe()
            except (OSError, RuntimeError, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(every)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each component's process tree (the stack's own cost; the
        PostgreSQL and Redis servers it uses are not in it)."""
        return {name: tree_cpu_seconds(c.process.pid) for name, c in self.components.items()}

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of every component log and task log: what on-call would read first."""
        parts = []
        paths = [c.log_path for c in self.components.values()]
        paths += sorted(self.log_dir.glob("dag_id=*/**/*.log"))[-6:]
        for path in paths:
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"===== {path.relative_to(self.home)} (last {lines} lines) =====")
            parts.extend(text)
        return "\n".join(parts)

    def close(self) -> None:
        """Stop everything and remove the DB and the broker keys, whatever state we are in."""
        self._stop_components()
        if self.database_created:
            _admin_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.database_created = False
        if self.redis_db is not None:
            client = redis.Redis(REDIS_HOST, REDIS_PORT, db=self.redis_db)
            keys = list(client.scan_iter(count=1000))
            if keys:
                client.delete(*keys)
            self.redis_db = None

    def _stop_components(self, grace: float = 20.0) -> None:
        for component in self.components.values():
            _signal_group(component.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for component in self.components.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(component.process, signal.SIGKILL)  # stragglers, children included
            component.process.wait()
            component.log_file.close()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its living and reaped descendants.

    `children_*` counts only children that were waited for: a component's task processes that
    ended are in it, those still running are added one by one.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
