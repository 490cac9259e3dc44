"""The teams page's protections, kept apart from Airflow so they can be tested alone.

- A browser id: a random HttpOnly cookie of the page (SameSite=Lax), the "session" that the
  CSRF tokens and the OAuth `state` are bound to, together with the Airflow user's id.
- CSRF tokens: HMAC(key, user id, browser id) in every form; a POST without the token of
  this user in this browser is refused.
- The pending OAuth flow (app key and secret, PKCE verifier, target connection) sealed into an
  HttpOnly cookie with Fernet (encrypted and authenticated, its age checked on opening), so any
  api-server worker can finish it and no server-side store is needed. The `state` sent to
  Dropbox is a random nonce that must equal the sealed one; the flow must have been started by
  the same user in the same browser, at most `flow_ttl` seconds ago, and a state is accepted
  once: `used` records it (the callback also clears the cookie). The page uses a record in the
  metadata DB (web/used_states.py), shared by every api-server worker and host, since any of
  them can open the sealed flow; `LocalUsedStates` (one process) is for a guard used alone.

Keys are derived from the api-server's secret key, one per purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken

#: How long an authorization link stays usable (Dropbox's codes live minutes, too).
FLOW_TTL_SECONDS = 600
#: How long a one-line result (a flash) waits for the page that shows it.
FLASH_TTL_SECONDS = 120


class FlowRejected(Exception):
    """The callback does not belong to a flow this user started in this browser."""


@dataclass(frozen=True)
class PendingFlow:
    """What the callback needs to finish a flow; never shown, only sealed."""

    state: str
    user_id: str
    browser_id: str
    conn_id: str
    app_key: str
    app_secret: str | None
    base_url: str | None
    redirect_uri: str | None
    code_verifier: str

    def __repr__(self) -> str:  # the secret and the verifier must not reach a traceback
        return f"PendingFlow(conn_id={self.conn_id!r}, app_key={self.app_key!r})"


class UsedStates(Protocol):
    """The single-use record of OAuth states."""

    def claim(self, state: str, now: float, keep: float) -> bool:
        """Record `state` as used at `now`; False if it was recorded already. Records older
        than `keep` seconds may be forgotten (their flows have expired by then)."""
        ...


class LocalUsedStates:
    """The record in this process's memory: enough for one process, not for several workers."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, state: str, now: float, keep: float) -> bool:
        with self._lock:
            self._used = {s: t for s, t in self._used.items() if t > now - keep}
            if state in self._used:
                return False
            self._used[state] = now
            return True


def state_key(state: str) -> str:
    """What a record keeps of a state: its SHA-256, hex (a record never holds a live state)."""
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()


def _derive(secret: str, purpose: str) -> bytes:
    return hashlib.sha256(f"dropbox-team-log/teams-page/{purpose}\0{secret}".encode()).digest()


class Guard:
    """CSRF tokens, sealed flows and flashes under one server secret."""

    def __init__(
        self,
        secret: str,
        *,
        flow_ttl: int = FLOW_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        used: UsedStates | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the teams page needs the api-server's secret key ([api] secret_key)")
        self._csrf_key = _derive(secret, "csrf")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, "seal")))
        self.flow_ttl = flow_ttl
        self._clock = clock
        self._used = used if used is not None else LocalUsedStates()

    @staticmethod
    def new_browser_id() -> str:
        return secrets.token_urlsafe(24)

    @staticmethod
    def new_state() -> str:
        return secrets.token_urlsafe(32)

    def csrf_token(self, user_id: str, browser_id: str) -> str:
        mac = hmac.new(self._csrf_key, f"{user_id}\0{browser_id}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def csrf_ok(self, token: str | None, user_id: str, browser_id: str | None) -> bool:
        if not token or not browser_id:
            return False
        return hmac.compare_digest(token, self.csrf_token(user_id, browser_id))

    def _seal(self, value: dict) -> str:
        return self._fernet.encrypt_at_time(json.dumps(value).encode(), int(self._clock())).decode()

    def _open(self, sealed: str, ttl: int) -> dict | None:
        try:
            raw = self._fernet.decrypt_at_time(sealed.encode(), ttl, int(self._clock()))
            value = json.loads(raw)
        except (InvalidToken, ValueError, UnicodeEncodeError):
            return None
        return value if isinstance(value, dict) else None

    def seal_flow(self, flow: PendingFlow) -> str:
        return self._seal(asdict(flow))

    def open_flow(
        self, sealed: str | None, state: str | None, user_id: str, browser_id: str | None
    ) -> PendingFlow:
        """The flow the callback finishes; FlowRejected saying why when it is not this one."""
        if not state:
            raise FlowRejected("the callback carries no state")
        if not sealed:
            raise FlowRejected(
                "no connect flow was started in this browser (or it was finished already)"
            )
        value = self._open(sealed, self.flow_ttl)
        if value is None:
            raise FlowRejected(
                f"the connect flow expired (links are valid {self.flow_ttl // 60} minutes) or "
                "was not issued by this server"
            )
        try:
            flow = PendingFlow(**value)
        except TypeError:
            raise FlowRejected("the connect flow is not readable: start again") from None
        if not hmac.compare_digest(flow.state, state):
            raise FlowRejected("the state does not match the flow started in this browser")
        if flow.user_id != user_id or flow.browser_id != (browser_id or ""):
            raise FlowRejected("the connect flow was started by another user or browser")
        # Last: only a flow that is otherwise acceptable uses up its state.
        if not self._used.claim(state_key(state), self._clock(), self.flow_ttl):
            raise FlowRejected("this authorization was used already: start again")
        return flow

    def seal_flash(self, ok: bool, text: str) -> str:
        return self._seal({"ok": ok, "text": text})

    def open_flash(self, sealed: str | None) -> tuple[bool, str] | None:
        value = self._open(sealed, FLASH_TTL_SECONDS) if sealed else None
        if value is None or not isinstance(value.get("text"), str):
            return None
        return bool(value.get("ok")), value["text"]
