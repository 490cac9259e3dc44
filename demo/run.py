"""The `make demo` driver: the whole job on the embedded default, as a user would run it.

A dev tool outside the production package (`dropbox_team_log` does not ship it, nor the
emulator it drives): `make demo` runs `.venv/bin/python demo/run.py`, from any directory.

Starts the emulator serving two teams, connects both with `dropbox-team-log connect` (the
admin's "Allow" click is scripted over HTTP, the code typed into the command's prompt through a
pseudo-terminal; the second with `--conn-id`, which registers it), runs incremental runs over
simulated hours with `airflow dags test` on Airflow's SQLite metadata DB (the first one starts
each registered team's 60-day backfill, which the demo then runs: `dags test` has no scheduler),
and prints a summary read back from the Parquet with DuckDB, per team too.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from dropbox_emulator import DEMO_APP_KEY, DEMO_APP_SECRET, EmulatorClient, approve
from dropbox_emulator.process import EmulatorStartError, emulator_process
from dropbox_team_log.analytics import report, views
from dropbox_team_log.display import visible
from dropbox_team_log.schema import DAY_FILES_GLOB

#: The repository root (this file is demo/run.py), whatever the working directory.
PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO_DIR = PROJECT / "data" / "demo"
OUTPUT = DEMO_DIR / "dropbox_team_log"
LOGS = DEMO_DIR / "logs"
#: The second team's connection (the first is the default one); its emulated team is smaller.
SECOND_CONN_ID = "dropbox_team_second"
TEAMS = '[{}, {"events_per_day": 120}]'
#: Incremental runs, as offsets from the connection time (the first starts the backfills).
INCREMENTAL_AT = [
    timedelta(minutes=15),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(hours=26),
]


def main() -> int:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(OUTPUT, ignore_errors=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    env = demo_environment()
    env["AIRFLOW_VAR_DROPBOX_TEAM_LOG_DETECTIONS"] = detection_knobs()
    connected_at = datetime.now(UTC).replace(microsecond=0)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    step("Airflow metadata DB (SQLite)", env["AIRFLOW_HOME"])
    run(["airflow", "db", "migrate"], env, "db-migrate")
    run(
        ["airflow", "pools", "set", "dropbox_api", "4", "Dropbox team API concurrency"], env, "pool"
    )
    # the DAGs in the metadata DB, so the incremental run can trigger the backfill DAG
    run(["airflow", "dags", "reserialize"], env, "reserialize")
    with emulator(port, connected_at, env) as control:
        step("Emulator (local Dropbox API, two teams)", base_url)
        connect(base_url, env)
        connect(base_url, env, conn_id=SECOND_CONN_ID, team=1)
        step("Registered teams", "dropbox-team-log teams")
        print(indent(capture([str(BIN / "dropbox-team-log"), "teams"], env)), flush=True)
        inject_incidents(control, connected_at)
        for n, offset in enumerate(INCREMENTAL_AT):
            at = connected_at + offset
            control.set_clock(at)
            step(f"Incremental run at connection + {offset}", at.isoformat())
            run(
                ["airflow", "dags", "test", "dropbox_team_log_incremental", at.isoformat()],
                env,
                f"incremental-{int(offset.total_seconds())}",
            )
            if n == 0:
                run_started_backfills(at, env, f"incremental-{int(offset.total_seconds())}")
        detections_at = connected_at + INCREMENTAL_AT[-1] + timedelta(minutes=1)
        step("Detections over what changed", "dropbox_team_log_detections")
        run(
            ["airflow", "dags", "test", "dropbox_team_log_detections", detections_at.isoformat()],
            env,
            "detections",
        )
        step("OCSF export of what changed (an optional DAG)", "dropbox_team_log_ocsf_export")
        run(
            ["airflow", "dags", "test", "dropbox_team_log_ocsf_export", detections_at.isoformat()],
            env,
            "ocsf-export",
        )
    summarize(OUTPUT)
    summarize_teams(OUTPUT)
    summarize_findings(OUTPUT)
    summarize_ocsf(OUTPUT)
    print(f"\nHTML report (charts, last 30 days): {report.write_report(str(OUTPUT))}")
    print(teams_page_note(env))
    return 0


def teams_page_note(env: dict[str, str]) -> str:
    """Where the Dropbox teams page is, if an api-server of this Airflow answers with it (one
    quick request each: the health check, then the page, which answers 401 when signed out);
    else how to start one."""
    base = env.get("AIRFLOW__API__BASE_URL", "http://localhost:8080").rstrip("/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    statuses = []
    for path in ("/api/v2/monitor/health", "/dropbox-teams/"):
        try:
            with opener.open(base + path, timeout=1) as resp:
                statuses.append(resp.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
        except (OSError, ValueError):
            break
    if statuses in ([200, 200], [200, 401]):
        return f"Dropbox teams page (connect, test, pause teams): {base}/plugin/dropbox-teams"
    if statuses[:1] == [200]:
        return (
            f"The api-server at {base} has no Dropbox teams page: start it with "
            f"AIRFLOW__CORE__PLUGINS_FOLDER={PROJECT / 'plugins'}"
        )
    return (
        f"Dropbox teams page: start the api-server (AIRFLOW_HOME={env['AIRFLOW_HOME']} "
        f"AIRFLOW__CORE__PLUGINS_FOLDER={PROJECT / 'plugins'} airflow api-server), then open "
        f"{base}/plugin/dropbox-teams (docs/connect.md)"
    )


def demo_environment() -> dict[str, str]:
    env = os.environ.copy()
    env.setdefault("AIRFLOW_HOME", str(PROJECT / ".airflow"))
    env.update(
        {
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
            "AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT": str(OUTPUT),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.pop("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", None)  # the demo saves its own, in the DB
    return env


def step(title: str, detail: str = "") -> None:
    print(f"==> {title}" + (f": {detail}" if detail else ""), flush=True)


def run(argv: Sequence[str], env: dict[str, str], name: str) -> None:
    """Run a command, its output to a log file; on failure show the log's tail and stop."""
    log_path = LOGS / f"{name}.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        result = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    failed = result.returncode != 0 or ("DagRun Finished" in text and "state=failed" in text)
    if failed:
        print(text[-4000:], file=sys.stderr)
        raise SystemExit(f"demo step '{name}' failed (full log: {log_path})")
    print(f"    ok in {took:.1f} s (log: {log_path.relative_to(PROJECT)})", flush=True)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def emulator(
    port: int, clock: datetime, env: dict[str, str]
) -> Generator[EmulatorClient, None, None]:
    """The emulator in its own process; yields its control client (which holds the run's
    control token: the Airflow processes never get it)."""
    args = ["--seed", "7", "--clock", clock.isoformat(), "--events-per-day", "400"]
    args += ["--teams", TEAMS]
    with (LOGS / "emulator.log").open("w") as log:
        try:
            with emulator_process(port, args, log=log, env=env) as (_proc, client):
                yield client
        except EmulatorStartError as exc:
            raise SystemExit(f"{exc} (log: {LOGS / 'emulator.log'})") from None


def connect(base_url: str, env: dict[str, str], conn_id: str | None = None, team: int = 0) -> None:
    """`dropbox-team-log connect` at a real prompt: read the link, click Allow (as the admin of
    the emulator's team `team`), type the code."""
    command = "dropbox-team-log connect" + (f" --conn-id {conn_id}" if conn_id else "")
    step(f"Connect team {team + 1}", f"{command} (the admin's Allow is scripted)")
    argv = [
        str(BIN / "dropbox-team-log"),
        "connect",
        "--app-key",
        DEMO_APP_KEY,
        "--api-base-url",
        base_url,
        "--reset-connected-at",
    ]
    if conn_id:
        argv += ["--conn-id", conn_id]
    # The emulator's well-known demo secret, given the way a user should: by env, not argv.
    child_env = {**env, "DROPBOX_APP_SECRET": DEMO_APP_SECRET}
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        argv, env=child_env, stdin=follower, stdout=follower, stderr=follower, close_fds=True
    )
    os.close(follower)
    transcript = ""
    answered = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
                transcript += chunk
                link = re.search(r"(http://\S+/oauth2/authorize\S+)", transcript)
                if link and not answered and "code" in transcript.lower().split(link.group(1))[-1]:
                    code = approve(link.group(1), base_url, team=team)
                    os.write(leader, (code + "\n").encode())
                    answered = True
            elif proc.poll() is not None:
                break
        returncode = proc.wait(timeout=30)
    finally:
        os.close(leader)
    (LOGS / f"connect-{conn_id or 'default'}.log").write_text(transcript)
    if returncode != 0:
        print(transcript, file=sys.stderr)
        raise SystemExit("dropbox-team-log connect failed")
    for line in transcript.splitlines():
        if line.startswith(("Connected", "Created", "Updated", "connected_at", "Registered")):
            print(f"    {line.strip()}")


def summarize(root: Path) -> None:
    glob = f"{root}/{DAY_FILES_GLOB}"
    db = duckdb.connect()
    db.execute(
        "CREATE TABLE events AS SELECT * FROM read_parquet($glob, hive_partitioning = true)",
        {"glob": glob},
    )
    total, days, first, last = db.execute(
        "SELECT count(*), count(DISTINCT event_date), min(timestamp), max(timestamp) FROM events"
    ).fetchone()
    print()
    print(f"Dataset: {root}")
    print(f"  {total} events over {days} days, {first} .. {last}")
    print("\nEvents per day (last 7 days), by auth_status:")
    table(
        db,
        """
        SELECT event_date,
               count(*) AS events,
               count(*) FILTER (auth_status = 'authenticated') AS authenticated,
               count(*) FILTER (auth_status = 'unauthenticated') AS unauthenticated,
               count(*) FILTER (auth_status = 'unknown') AS unknown
        FROM events GROUP BY event_date ORDER BY event_date DESC LIMIT 7""",
    )
    print("\nauth_status split:")
    table(
        db,
        """
        SELECT auth_status, count(*) AS events,
               round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
        FROM events GROUP BY auth_status ORDER BY events DESC""",
    )
    print("\nTop shared links opened without signing in:")
    table(
        db,
        """
        SELECT coalesce(json_extract_string(details, '$.shared_content_link'),
                        json_extract_string(assets, '$[0].display_name')) AS link_or_file,
               count(*) AS views, count(DISTINCT ip_address) AS ips,
               string_agg(DISTINCT country, ',') AS countries
        FROM events WHERE auth_status = 'unauthenticated'
        GROUP BY 1 ORDER BY views DESC, link_or_file LIMIT 5""",
    )
    print("\nQuery it yourself, with the analyst views (docs/querying.md):")
    example = (
        '"SELECT timestamp, shared_link, asset_name, country, ip_address '
        'FROM unauthenticated_access ORDER BY timestamp DESC LIMIT 10"'
    )
    print(f"  .venv/bin/dropbox-team-log query --root {root} " + example)
    print(f"  or any Parquet reader over {glob} (hive partition event_date)")
    print("  Columns: docs/data_dictionary.md. Logs of this demo: data/demo/logs/.")


def run_started_backfills(at: datetime, env: dict[str, str], log_name: str) -> None:
    """Run the backfills the incremental run started for the newly registered teams.

    The run triggered one backfill run per team (the registry's way: no one triggers a DAG);
    under a scheduler they would start by themselves. `airflow dags test` has no scheduler, so
    the demo runs each one itself, with the conf the incremental run gave it."""
    text = (LOGS / f"{log_name}.log").read_text()
    started = list(
        dict.fromkeys(re.findall(r"starting the first backfill of team '([^']+)'", text))
    )
    if not started:
        raise SystemExit("the first incremental run started no backfill (see its log)")
    step(
        "The incremental run started the first backfill of each new team",
        f"{', '.join(started)}; `airflow dags test` has no scheduler to run them, so the demo "
        "runs each now",
    )
    for n, conn_id in enumerate(started):
        conf = json.dumps({"conn_id": conn_id})
        step(f"Backfill of '{conn_id}': 60 days before its connection", f"--conf '{conf}'")
        logical = (at + timedelta(seconds=n + 1)).isoformat()
        argv = ["airflow", "dags", "test", "dropbox_team_log_backfill", logical, "--conf", conf]
        run(argv, env, f"backfill-{conn_id}")


def capture(argv: Sequence[str], env: dict[str, str]) -> str:
    """A command's output (it must succeed)."""
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip().splitlines())


def summarize_teams(root: Path) -> None:
    """Events per team, with the team's name from its card (the `teams` view)."""
    db = views.connect(str(root))
    rows = db.execute(
        "SELECT conn_id, team_name, team_id, events, first_event, last_event FROM teams"
    ).fetchall()
    print("\nEvents per team (the `teams` view):")
    cells = [("conn_id", "team", "team_id", "events", "first", "last")]
    cells += [tuple(visible("" if v is None else v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    query = f".venv/bin/dropbox-team-log query --root {root} --team {SECOND_CONN_ID}"
    print(f"  one team only: {query} ...")


def inject_incidents(client: EmulatorClient, connected_at: datetime) -> None:
    """A few incidents among the generated activity (scenarios.demo_incidents), so the
    detections have something to find: a leaver's mass download and delete, a leaked link..."""
    from dropbox_emulator.config import EmulatorConfig
    from dropbox_emulator.scenarios import demo_incidents

    events = demo_incidents(EmulatorConfig(seed=7), int(connected_at.timestamp()))
    client.add_events(events, team=0)
    step("Incidents injected for the detections", f"{len(events)} events")


def detection_knobs() -> str:
    """The demo team's detection knobs (its partners' domains and its own apps allowlisted),
    as the Variable `dropbox_team_log_detections` holds them."""
    from dropbox_emulator.config import EmulatorConfig
    from dropbox_emulator.scenarios import demo_knobs

    return json.dumps(demo_knobs(EmulatorConfig(seed=7)))


def summarize_findings(root: Path) -> None:
    """The findings the detections DAG raised: how many of each, and the most severe."""
    from dropbox_team_log.analytics.findings import FindingsStore

    store = FindingsStore(str(root))
    db = duckdb.connect()
    db.register("findings", store.read())
    total = db.execute("SELECT count(*) FROM findings").fetchone()[0]
    print(f"\nFindings raised by the detections ({total}, in {store.url}/):")
    table(
        db,
        """
        SELECT detection, severity, count(*) AS findings FROM findings
        GROUP BY ALL ORDER BY findings DESC, detection""",
    )
    print("\nMost severe, latest first:")
    table(
        db,
        """
        SELECT severity, detection, strftime(first_seen, '%Y-%m-%d %H:%M') AS first_seen,
               actor, asset, events
        FROM findings
        ORDER BY CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END,
                 first_seen DESC
        LIMIT 8""",
    )
    print(f"  .venv/bin/dropbox-team-log detect --root {root}   (docs/detections.md)")


def summarize_ocsf(root: Path) -> None:
    """The OCSF copy the export DAG wrote: records per class."""
    from dropbox_team_log.analytics.ocsf_export import default_out
    from dropbox_team_log.dataset.roots import glob_under

    out = default_out(str(root))  # where the DAG writes without its Variable
    db = duckdb.connect()
    files = glob_under(out, "class_uid=*/event_day=*/*.parquet")
    db.read_parquet(files, hive_partitioning=True, union_by_name=True).create_view("ocsf")
    total = db.execute("SELECT count(*) FROM ocsf").fetchone()[0]
    print(f"\nOCSF 1.1 records written by the OCSF export DAG ({total}, in {out}/):")
    table(
        db,
        "SELECT class_uid, class_name, count(*) AS records FROM ocsf GROUP BY ALL ORDER BY 3 DESC",
    )
    print("  docs/ocsf.md: the mapping, Security Lake's layout, the DAG's Variable")


def table(db: duckdb.DuckDBPyConnection, sql: str) -> None:
    result = db.execute(sql)
    names = [d[0] for d in result.description]
    rows = [[("" if v is None else str(v)) for v in row] for row in result.fetchall()]
    widths = [
        max(len(n), *(len(r[i]) for r in rows)) if rows else len(n) for i, n in enumerate(names)
    ]
    widths = [min(w, 90) for w in widths]
    print("  " + "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
