"""Local emulator of the Dropbox API subset this project uses (OAuth + team log).

    from dropbox_emulator import EmulatorConfig, running_emulator

    with running_emulator(EmulatorConfig(seed=7)) as emu:
        emu.base_url, emu.truth(start, end), emu.set_faults([...]), emu.advance(3600)

One emulator can serve several teams (`EmulatorConfig(teams=3)`, `--teams 3`): most control
calls then take `team=`. Run it standalone with `python -m dropbox_emulator` (or
`dropbox-emulator`). Its control API (`/__emulator/...`) answers only calls carrying the
per-run token it prints at start-up: `EmulatorClient(base_url, token=...)` sends it
(`running_emulator` handles know it).
"""

from __future__ import annotations

from .client import (
    ControlRefusedError,
    EmulatorClient,
    EmulatorHandle,
    approve,
    running_emulator,
)
from .config import (
    CONTROL_TOKEN_ENV,
    CONTROL_TOKEN_HEADER,
    DEMO_APP_KEY,
    DEMO_APP_SECRET,
    EmulatorConfig,
    TeamSpec,
)
from .faults import KINDS as FAULT_KINDS
from .oauth import pkce_s256
from .server import EmulatorServer, check_loopback

__all__ = [
    "CONTROL_TOKEN_ENV",
    "CONTROL_TOKEN_HEADER",
    "DEMO_APP_KEY",
    "DEMO_APP_SECRET",
    "FAULT_KINDS",
    "ControlRefusedError",
    "EmulatorClient",
    "EmulatorConfig",
    "EmulatorHandle",
    "EmulatorServer",
    "TeamSpec",
    "approve",
    "check_loopback",
    "pkce_s256",
    "running_emulator",
]
