"""`python -m dropbox_emulator` / `dropbox-emulator`: serve the emulator on loopback."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import (
    CONTROL_TOKEN_ENV,
    CONTROL_TOKEN_HEADER,
    DAY,
    DEMO_APP_KEY,
    DEMO_APP_SECRET,
    EmulatorConfig,
    TeamSpec,
)
from .server import EmulatorServer, check_loopback


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-20T10:30:00Z)"
        ) from None


def _number(kind: type, low: float, high: float | None = None, what: str = "") -> Any:
    """An argparse type: a number within [low, high], refused with the range otherwise."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value != value or value < low or (high is not None and value > high):  # NaN too
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bound}{what}")
        return value

    return parse


def _teams(text: str) -> int | tuple[TeamSpec, ...]:
    """`--teams`: a count of generated teams, or a JSON list of teams (inline or a file)."""
    if text.strip().isdigit():
        count = int(text)
        if count < 1:
            raise argparse.ArgumentTypeError("--teams must be at least 1")
        return count
    try:
        source = text if text.lstrip().startswith("[") else Path(text).read_text()
        data = json.loads(source)
        if isinstance(data, dict):
            data = data.get("teams")
        if not isinstance(data, list) or not data:
            raise ValueError('expected a non-empty JSON list of teams (or {"teams": [...]})')
        return tuple(TeamSpec.from_json(item) for item in data)
    except (OSError, ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"--teams {text!r}: {exc}") from None


def _loopback(text: str) -> str:
    try:
        check_loopback(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    d = EmulatorConfig.__dataclass_fields__
    p = argparse.ArgumentParser(
        prog="dropbox-emulator",
        description="Local Dropbox API emulator (OAuth + team log) for demos and tests. "
        "Listens on loopback only.",
    )
    p.add_argument(
        "--host", type=_loopback, default="127.0.0.1", help="loopback address (default 127.0.0.1)"
    )
    p.add_argument(
        "--port",
        type=_number(int, 0, 65535),
        default=8765,
        help="port (default 8765; 0 = any free)",
    )
    p.add_argument("--seed", type=int, default=d["seed"].default)
    p.add_argument("--app-key", default=DEMO_APP_KEY)
    p.add_argument(
        "--app-secret", default=DEMO_APP_SECRET, help="app secret (default: the public demo value)"
    )
    p.add_argument("--app-name", default=d["app_name"].default)
    p.add_argument(
        "--scopes",
        default=" ".join(d["app_scopes"].default),
        help="space-separated scopes the app may request",
    )
    p.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="allowed redirect URI (repeatable; default: any http://localhost URI)",
    )
    p.add_argument("--team-id", default=None, help="default: derived from the seed")
    p.add_argument("--team-name", default=d["team_name"].default)
    p.add_argument("--team-domain", default=d["team_domain"].default)
    p.add_argument(
        "--num-licensed-users", type=_number(int, 1), default=d["num_licensed_users"].default
    )
    p.add_argument(
        "--teams",
        type=_teams,
        default=1,
        help="serve several teams from one app: a count (distinct seeds, names and ids; the "
        "first is the team the flags above describe) or a JSON list of teams, inline or a "
        "file, each {team_id, team_name, team_domain, seed, events_per_day, "
        "num_licensed_users, num_members}, all optional (default 1)",
    )
    p.add_argument(
        "--clock",
        type=_when,
        default=None,
        help="start clock, ISO 8601 (default: now, floored to the second)",
    )
    p.add_argument(
        "--clock-rate",
        type=_number(float, 0.0),
        default=0.0,
        help="emulator seconds per wall second (default 0: frozen until advanced)",
    )
    p.add_argument(
        "--timeline-start",
        type=_when,
        default=None,
        help="first event time (default: clock - 90 days)",
    )
    p.add_argument(
        "--timeline-end",
        type=_when,
        default=None,
        help="end of generated events (default: clock + 7 days)",
    )
    p.add_argument(
        "--events-per-day", type=_number(float, 0.0), default=d["events_per_day"].default
    )
    p.add_argument("--page-size", type=_number(int, 1, 1000), default=d["page_size"].default)
    p.add_argument(
        "--empty-page-rate", type=_number(float, 0.0, 0.99), default=d["empty_page_rate"].default
    )
    p.add_argument(
        "--duplicate-rate", type=_number(float, 0.0, 0.99), default=d["duplicate_rate"].default
    )
    p.add_argument("--late-rate", type=_number(float, 0.0, 0.99), default=d["late_rate"].default)
    p.add_argument(
        "--max-delay",
        type=_number(int, 1),
        default=d["max_delay"].default,
        help="seconds (default 86400)",
    )
    p.add_argument(
        "--unknown-type-rate",
        type=_number(float, 0.0, 0.99),
        default=d["unknown_type_rate"].default,
    )
    p.add_argument(
        "--cursor-ttl",
        type=_number(int, 0),
        default=d["cursor_ttl"].default,
        help="seconds; 0 = cursors never reset on age (default 7 days)",
    )
    p.add_argument(
        "--access-token-lifetime",
        type=_number(int, 1),
        default=d["access_token_lifetime"].default,
        help="seconds (default 14400)",
    )
    p.add_argument(
        "--cache-events",
        type=_number(int, 1),
        default=d["cache_events"].default,
        help="generated events kept in memory (~3 KB each); older days are made again on use "
        "(default 200000)",
    )
    p.add_argument(
        "--control-token",
        default=None,
        help=f"the control API's token (default: ${CONTROL_TOKEN_ENV}, else a random one per "
        "run; printed at start-up). Prefer the environment variable: a command line is "
        "visible to other local users",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        seed=args.seed,
        app_key=args.app_key,
        app_secret=args.app_secret,
        app_name=args.app_name,
        app_scopes=tuple(args.scopes.split()),
        redirect_uris=tuple(args.redirect_uri),
        team_id=args.team_id,
        team_name=args.team_name,
        team_domain=args.team_domain,
        num_licensed_users=args.num_licensed_users,
        clock=args.clock,
        clock_rate=args.clock_rate,
        timeline_start=args.timeline_start,
        timeline_end=args.timeline_end,
        events_per_day=args.events_per_day,
        page_size=args.page_size,
        empty_page_rate=args.empty_page_rate,
        duplicate_rate=args.duplicate_rate,
        late_rate=args.late_rate,
        max_delay=args.max_delay,
        unknown_type_rate=args.unknown_type_rate,
        cursor_ttl=args.cursor_ttl or None,
        access_token_lifetime=args.access_token_lifetime,
        cache_events=args.cache_events,
        teams=args.teams,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a refused flag (2, message printed) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        config = config_from_args(args)
        server = EmulatorServer(
            config, host=args.host, port=args.port, control_token=args.control_token
        )
    except (ValueError, OSError) as exc:
        print(f"dropbox-emulator: {exc}", file=sys.stderr)
        return 2
    lo, hi = config.timeline
    print(f"Dropbox API emulator listening on {server.base_url}")
    print(f"  app key:    {config.app_key}")
    if config.app_secret == DEMO_APP_SECRET:
        print(f"  app secret: {config.app_secret}  (public demo value, not a real secret)")
    else:
        print("  app secret: (as configured; not shown)")
    for i, team in enumerate(config.team_configs):
        label = "team:" if len(config.team_configs) == 1 else f"team {i}:"
        print(f"  {label:<11} {team.team_name} ({team.resolved_team_id}), seed {team.seed}")
    print(
        f"  clock:      {config.clock:%Y-%m-%dT%H:%M:%SZ}"
        f" ({'frozen' if not config.clock_rate else f'x{config.clock_rate:g}'})"
    )
    rates = "/".join(f"{c.events_per_day:g}" for c in config.team_configs)
    print(f"  events:     ~{rates}/day over {(hi - lo) / DAY:.0f} days")
    print(f"  control:    {server.base_url}/__emulator/health")
    print(f"  control token (send it in the {CONTROL_TOKEN_HEADER} header; clients read")
    print(f"  ${CONTROL_TOKEN_ENV}): {server.control_token}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
