"""The emulator in its own process: for the demo and the bench, which must not share its GIL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import IO

from .client import EmulatorClient
from .config import CONTROL_TOKEN_ENV
from .control import new_control_token

START_TIMEOUT = 30.0  # seconds for the process to answer /health


class EmulatorStartError(RuntimeError):
    """The emulator process exited or did not answer in time (its log says why)."""


@contextmanager
def emulator_process(
    port: int, args: Sequence[str], *, log: IO, env: dict[str, str] | None = None
) -> Generator[tuple[subprocess.Popen, EmulatorClient], None, None]:
    """`dropbox-emulator --port PORT ARGS...` on loopback, healthy; stopped (TERM, then KILL).

    The yielded client holds the run's control token: a fresh random one, handed to the
    process in its environment (not its command line, which other local users can read).
    """
    token = new_control_token()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropbox_emulator", "--port", str(port), *args],
        env={**(os.environ if env is None else env), CONTROL_TOKEN_ENV: token},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = EmulatorClient(f"http://127.0.0.1:{port}", token=token)
    try:
        _wait_healthy(client, proc)
        yield proc, client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_healthy(client: EmulatorClient, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorStartError(f"the emulator exited early (exit code {proc.returncode})")
        try:
            client.health()
            return
        except OSError:
            time.sleep(0.2)
    raise EmulatorStartError(f"the emulator did not answer within {START_TIMEOUT:.0f} s")
