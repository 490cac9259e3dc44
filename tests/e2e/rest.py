"""Airflow 3's public REST API (/api/v2), authenticated the way a user or a CI job does it:
a JWT from the api-server's /auth/token (SimpleAuthManager user + password)."""

from __future__ import annotations

from typing import Any

import requests


class AirflowRest:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only, never through a proxy
        self._credentials = {"username": username, "password": password}

    def login(self) -> None:
        resp = self.session.post(f"{self.base_url}/auth/token", json=self._credentials, timeout=30)
        resp.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.session.request(method, f"{self.base_url}/api/v2/{path}", timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def healthy(self) -> bool:
        resp = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=10)
        return resp.status_code == 200

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self.call("GET", f"dags/{dag_id}")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"dags/{dag_id}", json={"is_paused": paused})

    def set_pool(self, name: str, slots: int, description: str) -> None:
        self.call("POST", "pools", json={"name": name, "slots": slots, "description": description})

    def trigger(
        self, dag_id: str, conf: dict[str, Any], logical_date: str | None
    ) -> dict[str, Any]:
        body = {"conf": conf, "logical_date": logical_date}
        return self.call("POST", f"dags/{dag_id}/dagRuns", json=body)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.call("GET", path, params={"limit": 500})["task_instances"]
