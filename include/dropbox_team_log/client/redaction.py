"""Secrets out of any text a server or a library hands back, before it becomes a message.

A token endpoint or an API host that echoes the request (an error page, a debugging proxy, a
hostile host override) would put the refresh token, the app secret, an access token or the
authorization code into an exception, a log line, the connection test's answer, the `connect`
output or an alert. Every secret a request carries is registered here as soon as it is known,
with the forms it travels in (raw, percent-encoded, JSON-escaped, base64 and the `Basic`
`key:secret` pair), and `scrub()` shows each of them as `***`.

`SECRETS` is the process-wide registry (like Airflow's secrets masker, which does not know the
encoded forms): the hook, the OAuth flow and the token watcher register, the messages scrub.
An access token is registered with its expiry and forgotten a while after it (settings), so a
process that runs for months does not scrub with every token it ever saw.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

from dropbox_team_log.settings import (
    MIN_SCRUBBED_SECRET_LENGTH,
    SCRUB_AFTER_TOKEN_EXPIRY_SECONDS,
)

MASK = "***"
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def secret_forms(secret: str) -> set[str]:
    """The ways `secret` can appear in an echoed request: as is, in a form body or a URL,
    in JSON, in HTML, and base64-encoded (a `Basic` header carries `key:secret` so)."""
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        html.escape(secret),
    }
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms.update((text, text.rstrip("=")))
    return {form for form in forms if form}


def _pattern_of(form: str) -> str:
    """A regex for `form`; its percent-escapes match in either case (%2F and %2f)."""
    parts: list[str] = []
    position = 0
    for match in _PERCENT_ESCAPE.finditer(form):
        parts.append(re.escape(form[position : match.start()]))
        parts.append("%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in match[0][1:]))
        position = match.end()
    parts.append(re.escape(form[position:]))
    return "".join(parts)


class Redactor:
    """A set of secrets and the one regex that finds any of their forms; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: secret -> epoch seconds after which it is forgotten
        self._secrets: dict[str, float] = {}
        self._pattern: re.Pattern[str] | None = None

    def __len__(self) -> int:
        """How many secrets are scrubbed now."""
        with self._lock:
            return len(self._secrets)

    def register(self, *secrets: str | None, forget_after: float = math.inf) -> None:
        """Scrub these from now on, until `forget_after` (epoch seconds; a secret registered
        again keeps the later of its times); empty and too short values are ignored (they
        would match ordinary text: see settings.MIN_SCRUBBED_SECRET_LENGTH)."""
        wanted = [s for s in secrets if isinstance(s, str) and len(s) >= MIN_SCRUBBED_SECRET_LENGTH]
        with self._lock:
            now = self._clock()
            expired = [secret for secret, until in self._secrets.items() if until < now]
            for secret in expired:
                del self._secrets[secret]
            added = [secret for secret in wanted if secret not in self._secrets]
            for secret in wanted:
                self._secrets[secret] = max(forget_after, self._secrets.get(secret, -math.inf))
            if expired or added:
                self._pattern = None  # rebuilt by the next scrub

    def register_access_token(self, token: str | None, expires_in: Any) -> None:
        """An access token, forgotten SCRUB_AFTER_TOKEN_EXPIRY_SECONDS past the `expires_in`
        (seconds) the token endpoint gave it; kept for the life of the process without one."""
        known = isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
        lifetime = expires_in if known and not math.isnan(expires_in) else math.inf
        forget_after = self._clock() + max(lifetime, 0) + SCRUB_AFTER_TOKEN_EXPIRY_SECONDS
        self.register(token, forget_after=forget_after)

    def register_basic(self, user: str | None, password: str | None) -> None:
        """The `user:password` pair an HTTP Basic header carries (the SDK's app auth)."""
        if user and password:
            self.register(f"{user}:{password}")

    def scrub(self, text: Any) -> str:
        """`text` (made a str) with every form of every registered secret shown as ***."""
        text = text if isinstance(text, str) else str(text)
        pattern = self._compiled()
        return pattern.sub(MASK, text) if pattern is not None else text

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._secrets:
                forms = set().union(*(secret_forms(secret) for secret in self._secrets))
                # Longest first: a form that contains another is masked whole.
                ordered = sorted(forms, key=len, reverse=True)
                self._pattern = re.compile("|".join(_pattern_of(form) for form in ordered))
            return self._pattern


#: Every secret this process has seen; what messages, logs and alerts are scrubbed of.
SECRETS = Redactor()


def register(*secrets: str | None, forget_after: float = math.inf) -> None:
    """Add secrets to the process-wide registry (until `forget_after`, epoch seconds)."""
    SECRETS.register(*secrets, forget_after=forget_after)


def register_access_token(token: str | None, expires_in: Any) -> None:
    """Add an access token to the process-wide registry (`Redactor.register_access_token`)."""
    SECRETS.register_access_token(token, expires_in)


def register_basic(user: str | None, password: str | None) -> None:
    """Add a `user:password` pair (as an HTTP Basic header carries it) to the registry."""
    SECRETS.register_basic(user, password)


def scrub(text: Any) -> str:
    """`text` with every secret this process has seen shown as ***."""
    return SECRETS.scrub(text)
