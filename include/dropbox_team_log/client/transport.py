"""HTTP plumbing that points the official SDK at another base URL.

The SDK hard-codes `https://api.dropboxapi.com` (read from env vars once, at import). Mounting an
adapter that rewrites the URL of every prepared request is the one hook that covers every route,
token refresh included, so the emulator and a real team run the very same code path.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from dropbox_team_log import settings

#: Hosts the SDK and the OAuth flow talk to; all of them map onto one base URL when overridden.
DROPBOX_HOSTS = (
    "https://api.dropboxapi.com",
    "https://api.dropbox.com",
    "https://content.dropboxapi.com",
    "https://notify.dropboxapi.com",
    "https://www.dropbox.com",
)
AUTHORIZE_URL = "https://www.dropbox.com/oauth2/authorize"
TOKEN_PATH = "/oauth2/token"  # ruff: ignore[hardcoded-password-string] (a URL path)


def normalize_base_url(base_url: str) -> str:
    """Validate an API base URL override; plain http is only allowed on loopback.

    Raises ValueError with a message that says what to fix.
    """
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"API base URL {base_url!r} is not an http(s) URL: use e.g. http://127.0.0.1:8765 "
            "for the emulator, or leave the connection's host empty for Dropbox"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"API base URL {base_url!r} must not carry a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"API base URL {base_url!r} uses plain http on a non-loopback host: tokens would "
            "travel unencrypted. Use https://, or http:// only with 127.0.0.1 / ::1 / localhost"
        )
    return url


def is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


class WholeBodyAdapter(HTTPAdapter):
    """Reads a buffered (not streamed) response body with one read, not requests' 10 KB chunks.

    A team_log page is large: read in small chunks, each of the many reads gives up the GIL and
    waits to get it back from whichever thread is transforming the previous page, which holds
    every call of a round back. One read lets the socket fill the buffer at once.
    Errors while reading are mapped as requests maps them (its `iter_content` does the reading).
    """

    def send(self, request: requests.PreparedRequest, stream: bool = False, **kwargs):  # type: ignore[override]
        response = super().send(request, stream=stream, **kwargs)
        if not stream and response.raw is not None:
            # requests' own cache of the body: `response.content` returns it as read here
            response._content = b"".join(response.iter_content(chunk_size=None))
        return response


class BaseUrlRewritingAdapter(WholeBodyAdapter):
    """Send requests aimed at Dropbox's hosts to `base_url` instead, path and query unchanged."""

    def __init__(self, base_url: str, **kwargs: object) -> None:
        self.base_url = normalize_base_url(base_url)
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        request.url = rewrite_url(request.url or "", self.base_url)
        return super().send(request, **kwargs)


class TokenWatch:
    """Sees every OAuth token the session's token endpoint hands out.

    The SDK keeps the access token it obtains to itself, but it sends through our session, so
    the answers of the token endpoint are read here: each token goes to `on_token` (the secrets
    masker) before anything could log it, and `issued` counts the access tokens, which tells a
    thread whose token was refused whether another thread has refreshed meanwhile.
    """

    def __init__(self, on_token: Callable[[str], None] | None = None) -> None:
        self.issued = 0
        self._on_token = on_token
        self._lock = threading.Lock()

    def observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """A `requests` response hook."""
        if response.status_code != 200 or not urlsplit(response.url).path.endswith(TOKEN_PATH):
            return
        try:
            body = response.json()
        except ValueError:
            return  # not a token: the SDK reports the failure itself
        if not isinstance(body, dict):
            return
        access_token = body.get("access_token")
        for token in (access_token, body.get("refresh_token")):
            if isinstance(token, str) and token and self._on_token is not None:
                self._on_token(token)
        if isinstance(access_token, str) and access_token:
            with self._lock:
                self.issued += 1


def rewrite_url(url: str, base_url: str) -> str:
    for host in DROPBOX_HOSTS:
        if url == host or url.startswith(host + "/"):
            return base_url + url[len(host) :]
    return url


def build_session(
    base_url: str | None = None,
    *,
    pool_size: int = settings.MAX_API_CONCURRENCY,
    token_watch: TokenWatch | None = None,
) -> requests.Session:
    """A session for the SDK: real Dropbox when `base_url` is None, else the override.

    `trust_env` is off so a stray HTTP(S)_PROXY or netrc cannot capture tokens or redirect the
    emulator's loopback traffic. `pool_size` bounds the calls in flight; `token_watch` sees
    every token the session receives.
    """
    session = requests.Session()
    session.trust_env = False
    if base_url is None:
        adapter: HTTPAdapter = WholeBodyAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    else:
        adapter = BaseUrlRewritingAdapter(
            base_url, pool_connections=pool_size, pool_maxsize=pool_size
        )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if token_watch is not None:
        session.hooks["response"].append(token_watch.observe)
    return session


def authorize_url_for(base_url: str | None) -> str:
    """Where the admin clicks Allow: Dropbox's page, or the emulator's."""
    return AUTHORIZE_URL if base_url is None else rewrite_url(AUTHORIZE_URL, base_url)
