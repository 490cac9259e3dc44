"""HTTP plumbing of every call to Dropbox: the base URL override, and no redirects.

The SDK hard-codes `https://api.dropboxapi.com` (read from env vars once, at import). Mounting an
adapter that rewrites the URL of every prepared request is the one hook that covers every route,
token refresh included, so the emulator and a real team run the very same code path.

The session never follows a redirect, to another origin or to its own: the token calls are form
POSTs carrying the refresh token and the app secret, and a 307/308 makes `requests` send that
body again to whatever the Location names (plain http included). Dropbox's API and token
endpoint do not redirect, so any redirect is refused with `RedirectRefusedError` and nothing is
sent to its target. Refusing the same-origin ones too keeps the rule one line long.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from dropbox_team_log import settings
from dropbox_team_log.client import redaction
from dropbox_team_log.errors import PermanentError

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

    Refused: anything but http(s), a query or fragment, credentials in the URL (`user:pass@`),
    a backslash, whitespace or control characters (URL parsers disagree on where such a host
    ends), and a port that is not a number in 1-65535. Raises ValueError saying what to fix.
    """
    url = base_url.strip().rstrip("/")
    shown = _without_userinfo(url)
    if "\\" in url or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(
            f"API base URL {shown!r} contains a backslash, a space or a control character: "
            "write it as scheme://host[:port] with forward slashes only"
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced [ or ] around an IPv6 address
        raise ValueError(
            f"API base URL {shown!r} is not a valid URL: an IPv6 address goes in brackets, "
            "e.g. http://[::1]:8765"
        ) from None
    if "@" in parts.netloc:
        raise ValueError(
            f"API base URL {shown!r} carries credentials (user:password@): remove them; the "
            "app key and secret belong in the connection's login and password"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"API base URL {shown!r} is not an http(s) URL: use e.g. http://127.0.0.1:8765 "
            "for the emulator, or leave the connection's host empty for Dropbox"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"API base URL {shown!r} must not carry a query or fragment")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError(
            f"API base URL {shown!r} has an invalid port: use a number from 1 to 65535, "
            "e.g. http://127.0.0.1:8765"
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"API base URL {shown!r} uses plain http on a non-loopback host: tokens would "
            "travel unencrypted. Use https://, or http:// only with 127.0.0.1 / ::1 / localhost"
        )
    return url


def base_url_of_connection(host: str, *, scheme: str | None, port: int | None) -> str:
    """The base URL an Airflow connection's host, schema and port fields name.

    `host` is a whole URL (`http://[::1]:8765`) or a bare host (`127.0.0.1`, `::1`, `[::1]`,
    then `scheme`, default https, is put in front); `port` is added when the host names none.
    A host naming another port than the port field is refused. Raises ValueError.
    """
    host = host.strip()
    if "://" not in host:
        if _is_ipv6(host):
            host = f"[{host}]"
        host = f"{scheme or 'https'}://{host}"
    url = normalize_base_url(host)
    if port:
        parts = urlsplit(url)
        if parts.port is None:
            url = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
        elif parts.port != int(port):
            raise ValueError(
                f"API base URL {url!r} names port {parts.port} but the connection's port field "
                f"says {port}: keep one of them"
            )
    return normalize_base_url(url)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _without_userinfo(url: str) -> str:
    """`url` as an error message may show it: any `user:password@` replaced by `***@`."""
    return re.sub(r"^([^/?#]*//)[^/?#]*@", r"\1***@", url)


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
    the answers of the token endpoint are read here: each token is registered for scrubbing
    (`redaction`; an access token until SCRUB_AFTER_TOKEN_EXPIRY_SECONDS past its expiry) and
    goes to `on_token` (the secrets masker) before anything could log it or echo it back, and
    `issued` counts the access tokens, which tells a
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
        access_token, refresh_token = (
            token if isinstance(token, str) and token else None
            for token in (body.get("access_token"), body.get("refresh_token"))
        )
        if access_token:
            redaction.register_access_token(access_token, body.get("expires_in"))
        if refresh_token:
            redaction.register(refresh_token)
        for token in (access_token, refresh_token):
            if token and self._on_token is not None:
                self._on_token(token)
        if access_token:
            with self._lock:
                self.issued += 1


def rewrite_url(url: str, base_url: str) -> str:
    for host in DROPBOX_HOSTS:
        if url == host or url.startswith(host + "/"):
            return base_url + url[len(host) :]
    return url


class RedirectRefusedError(PermanentError):
    """A Dropbox call answered with a redirect; it was not followed (see the module doc)."""


class NoRedirectSession(requests.Session):
    """A `requests` session that refuses every redirect instead of following it.

    `send` is where both `requests`' own redirect loop and `allow_redirects` meet, so forcing
    it here holds whatever a caller (the SDK, the OAuth flow) asks for.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        response = super().send(request, **kwargs)
        if response.is_redirect:
            raise RedirectRefusedError(_redirect_message(request, response))
        return response


def _redirect_message(request: requests.PreparedRequest, response: requests.Response) -> str:
    url = request.url or ""
    target = urljoin(url, response.headers.get("location", ""))
    return (
        f"{_origin(url)} answered {request.method} {urlsplit(url).path} with HTTP "
        f"{response.status_code}, a redirect to {_origin(target)}: refused, nothing was sent "
        "there. Dropbox's API and token endpoint never redirect, and following would send the "
        "request's secrets (refresh token, app secret, access token) again to the new place. "
        "Check the connection's host (the API base URL override; empty means Dropbox) and "
        "any proxy or captive portal on the network path"
    )


def _origin(url: str) -> str:
    """scheme://host[:port] of `url`, for messages: no userinfo, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unparsable URL"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or '?'}://{host}{port}"


def build_session(
    base_url: str | None = None,
    *,
    pool_size: int = settings.MAX_API_CONCURRENCY,
    token_watch: TokenWatch | None = None,
) -> requests.Session:
    """A session for the SDK: real Dropbox when `base_url` is None, else the override.

    `trust_env` is off so a stray HTTP(S)_PROXY or netrc cannot capture tokens or redirect the
    emulator's loopback traffic; redirects are refused (`NoRedirectSession`). `pool_size`
    bounds the calls in flight; `token_watch` sees every token the session receives.
    """
    session = NoRedirectSession()
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
