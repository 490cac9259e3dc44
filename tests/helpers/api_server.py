"""A real `airflow api-server` on this test session's SQLite metadata DB, with the project's
plugins folder: what serves the teams page. Lighter than tests/e2e/stack.py (no scheduler, no
broker): the page's work happens in the api-server itself.

The server shares the session's AIRFLOW_HOME and DB, so a test reads what the page wrote with
the same helpers as the CLI tests. SimpleAuthManager users: `admin` (admin) and `viewer`
(viewer), passwords random. `close()` stops its process group; its log stays for a failure.
`sibling()` is a second api-server of the same deployment (same DB, same keys and users), as
another worker or host would be.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.helpers.airflow_env import VENV_BIN
from tests.helpers.paths import REPO

USERS = {"admin": "admin", "viewer": "viewer"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ApiServer:
    home: Path
    port: int = field(default_factory=free_port)
    passwords: dict[str, str] = field(
        default_factory=lambda: {u: secrets.token_urlsafe(12) for u in USERS}
    )
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: `airflow dags reserialize` first (a sibling finds the DAGs serialized already).
    reserialize: bool = True
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / f"api-server-{self.port}.log"

    def env(self) -> dict[str, str]:
        passwords = self.home / f"passwords-{self.port}.json"
        passwords.write_text(json.dumps(self.passwords))
        users = ",".join(f"{user}:{role}" for user, role in USERS.items())
        return {
            **os.environ,
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__SECRET_KEY": self.secret_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def start(self, timeout: float = 120) -> ApiServer:
        env = self.env()
        if self.reserialize:
            subprocess.run(
                [str(VENV_BIN / "airflow"), "dags", "reserialize"],
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *(str(VENV_BIN / "airflow"), "api-server", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--workers", "1"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"api-server exited:\n{self.log_tail()}")
            try:
                if self._get("/api/v2/monitor/health").status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"api-server not up after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def sibling(self) -> ApiServer:
        """Another api-server (not started) sharing this one's DB, keys and users."""
        return ApiServer(
            self.home,
            passwords=self.passwords,
            secret_key=self.secret_key,
            jwt_secret=self.jwt_secret,
            reserialize=False,
        )

    def _get(self, path: str) -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            return session.get(self.url + path, timeout=10)

    def token(self, user: str) -> str:
        """A JWT for `user`, as the UI's `_token` cookie carries it."""
        with requests.Session() as session:
            session.trust_env = False
            resp = session.post(
                f"{self.url}/auth/token",
                json={"username": user, "password": self.passwords[user]},
                timeout=30,
            )
        resp.raise_for_status()
        return resp.json()["access_token"]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
