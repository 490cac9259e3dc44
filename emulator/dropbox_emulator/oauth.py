"""OAuth 2 as Dropbox does it: the consent page, single-use codes (PKCE or secret), tokens.

Tokens are signed (HMAC keyed by seed + app secret) and carry their own scopes, expiry and
team, so refresh tokens keep working across an emulator restart with the same config - handy
when a demo stored one in an Airflow connection. Revocation and "expire all access tokens" are
in-memory counters per team on top of that.

With several teams, one app is authorised by each team's admin: the consent page lets the
admin pick the team (the `team` parameter preselects one), and the code and every token that
follows it belong to that team.

Error bodies follow what Dropbox returns on `/oauth2/token` (HTTP 400 JSON):
`{"error": "invalid_grant", "error_description": ...}` for a bad/used/expired code or a
revoked refresh token, `{"error": "invalid_client", ...}` for a wrong app key or secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import orjson

from .clock import Clock
from .config import EmulatorConfig
from .pages import UNSIGNED, consent_html
from .responses import dumps
from .team import Team

TOKEN_ACCESS_TYPES = ("offline", "online", "legacy")
OFFLINE = TOKEN_ACCESS_TYPES[0]
BEARER = "bearer"  # the OAuth token type


class OAuthError(Exception):
    """A `/oauth2/token` failure: HTTP 400 with Dropbox's JSON error body."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description

    def body(self) -> bytes:
        return dumps({"error": self.error, "error_description": self.description})


class AuthorizeError(Exception):
    """A bad `/oauth2/authorize` request: Dropbox shows an HTML error page (400)."""


class ApiAuthError(Exception):
    """A 401 on an API route: `.tag` plus extra fields of the AuthError union."""

    def __init__(self, tag: str, **extra: str) -> None:
        super().__init__(tag)
        self.tag = tag
        self.extra = extra

    def body(self) -> bytes:
        return dumps({"error_summary": f"{self.tag}/..", "error": {".tag": self.tag, **self.extra}})


@dataclass
class AuthRequest:
    """Validated parameters of an authorize request."""

    client_id: str
    scopes: tuple[str, ...]
    redirect_uri: str | None
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    token_access_type: str | None
    team_id: str  # the team whose admin approves


@dataclass
class _Code:
    request: AuthRequest
    expires_at: int
    used: bool = False


@dataclass(frozen=True)
class AccessInfo:
    """What a valid access token grants."""

    app_key: str
    scopes: frozenset[str]
    refresh_id: str
    team_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pkce_s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636), as the SDK computes it."""
    return _b64(hashlib.sha256(verifier.encode()).digest())


class OAuthService:
    """Codes, tokens, revocation; the HTML of the consent flow."""

    def __init__(self, config: EmulatorConfig, clock: Clock, teams: Sequence[Team]) -> None:
        self.config = config
        self.clock = clock
        self.teams = {t.team_id: t for t in teams}
        self.default_team = teams[0].team_id
        self._key = hashlib.sha256(
            f"oauth/{config.seed}/{config.app_key}/{config.app_secret}".encode()
        ).digest()
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._revoked: set[str] = set()
        self._revoke_epoch = dict.fromkeys(self.teams, 0)
        self._access_gen = dict.fromkeys(self.teams, 0)
        self._uids = {tid: self._uid(i, tid) for i, tid in enumerate(self.teams)}

    def _uid(self, i: int, team_id: str) -> str:
        """The approving admin's user id: one per team."""
        key = self._key if i == 0 else hashlib.sha256(self._key + team_id.encode()).digest()
        return str(int.from_bytes(key[:4], "big") % 900_000_000 + 100_000_000)

    def resolve_team(self, selector: str | None) -> str | None:
        """A team id from an id or an index in the config's list (None: the default team)."""
        if not selector:
            return self.default_team
        if selector in self.teams:
            return selector
        if selector.isdigit() and int(selector) < len(self.teams):
            return list(self.teams)[int(selector)]
        return None

    # Signing ------------------------------------------------------------------------------

    def _sign(self, prefix: str, fields: list) -> str:
        payload = orjson.dumps(fields)
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:18]
        return f"{prefix}{_b64(payload)}.{_b64(mac)}"

    def _verify(self, prefix: str, token: str) -> list | None:
        if not token.startswith(prefix) or "." not in token[len(prefix) :]:
            return None
        body, _, mac = token[len(prefix) :].rpartition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except ValueError:
            return None
        good = hmac.new(self._key, payload, hashlib.sha256).digest()[:18]
        if not hmac.compare_digest(given, good):
            return None
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        return fields if isinstance(fields, list) else None

    # Authorize ----------------------------------------------------------------------------

    def validate_authorize(self, params: dict[str, str]) -> AuthRequest:
        """Check an authorize request like Dropbox's consent page does before showing it."""
        client_id = params.get("client_id", "")
        if client_id != self.config.app_key:
            raise AuthorizeError(f'Invalid client_id: "{client_id}".')
        if params.get("response_type") != "code":
            raise AuthorizeError(
                f'Unsupported response_type: "{params.get("response_type", "")}" '
                '(this app must use "code").'
            )
        tat = params.get("token_access_type") or None
        if tat is not None and tat not in TOKEN_ACCESS_TYPES:
            raise AuthorizeError(f'Invalid token_access_type: "{tat}".')
        raw_scope = params.get("scope")
        if raw_scope is None:
            scopes = tuple(self.config.app_scopes)
        else:
            scopes = tuple(s for s in raw_scope.split(" ") if s)
            if not scopes:
                raise AuthorizeError('Invalid scope: "" (omit the parameter for all scopes).')
            unknown = [s for s in scopes if s not in self.config.app_scopes]
            if unknown:
                raise AuthorizeError(
                    f"Invalid scope: {', '.join(unknown)} is not enabled for this app."
                )
        redirect = params.get("redirect_uri") or None
        if redirect is not None and not self._redirect_allowed(redirect):
            raise AuthorizeError(
                f'Invalid redirect_uri: "{redirect}". It must exactly match '
                "one of the redirect URIs you've pre-configured for your app."
            )
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or None
        if challenge is not None:
            method = method or "plain"
            if method not in ("S256", "plain"):
                raise AuthorizeError(f'Invalid code_challenge_method: "{method}".')
            if not 43 <= len(challenge) <= 128:
                raise AuthorizeError("Invalid code_challenge: must be 43-128 characters.")
        team_id = self.resolve_team(params.get("team"))
        if team_id is None:
            raise AuthorizeError(f'Invalid team: "{params.get("team")}".')
        return AuthRequest(
            client_id,
            scopes,
            redirect,
            params.get("state") or None,
            challenge,
            method,
            tat,
            team_id,
        )

    def _redirect_allowed(self, uri: str) -> bool:
        if self.config.redirect_uris:
            return uri in self.config.redirect_uris
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")

    def issue_code(self, req: AuthRequest) -> str:
        """The admin clicked Allow: a single-use code, valid for `code_lifetime` seconds."""
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(req, self.clock.now() + self.config.code_lifetime)
        return code

    # Token endpoint -----------------------------------------------------------------------

    def token(self, form: dict[str, str], basic: tuple[str, str] | None = None) -> bytes:
        """`POST /oauth2/token`: the JSON body of a success; raises OAuthError otherwise."""
        grant = form.get("grant_type")
        client_id = form.get("client_id") or (basic[0] if basic else "")
        secret = form.get("client_secret") or (basic[1] if basic else None)
        if grant not in ("authorization_code", "refresh_token"):
            if not grant:
                raise OAuthError("invalid_request", "No grant_type provided.")
            raise OAuthError("unsupported_grant_type", f'Unsupported grant_type "{grant}"')
        if client_id != self.config.app_key:
            raise OAuthError("invalid_client", "Invalid client_id or client_secret")
        if secret is not None and not hmac.compare_digest(secret, self.config.app_secret):
            raise OAuthError("invalid_client", "Invalid client_id or client_secret")
        if grant == "authorization_code":
            return self._exchange_code(form, secret)
        return self._refresh(form, secret)

    def _exchange_code(self, form: dict[str, str], secret: str | None) -> bytes:
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "No auth code provided.")
        now = self.clock.now()
        with self._lock:
            entry = self._codes.get(code)
            if entry is None or entry.used or entry.expires_at <= now:
                raise OAuthError("invalid_grant", "code doesn't exist or has expired")
            req = entry.request
            if req.redirect_uri != (form.get("redirect_uri") or None):
                raise OAuthError("invalid_grant", "redirect_uri mismatch")
            verifier = form.get("code_verifier")
            if req.code_challenge is not None:  # RFC 7636: the verifier is then required
                if verifier is None:
                    raise OAuthError("invalid_request", "No code_verifier provided.")
                expected = pkce_s256(verifier) if req.code_challenge_method == "S256" else verifier
                if not hmac.compare_digest(expected, req.code_challenge):
                    raise OAuthError("invalid_grant", "invalid code verifier")
            elif secret is None:
                raise OAuthError("invalid_client", "Invalid client_id or client_secret")
            entry.used = True  # single use, even if what follows were to fail
            team = req.team_id
            epoch = self._revoke_epoch[team]
        pkce = secret is None
        out: dict[str, object] = {}
        refresh_id = secrets.token_urlsafe(9) if req.token_access_type == OFFLINE else ""
        out["access_token"] = self._access_token(req.client_id, req.scopes, refresh_id, epoch, team)
        out["token_type"] = BEARER
        out["expires_in"] = self.config.access_token_lifetime
        if refresh_id:
            out["refresh_token"] = self._sign(
                "",
                ["r", req.client_id, refresh_id, epoch, " ".join(req.scopes), int(pkce), team],
            )
        out["scope"] = " ".join(req.scopes)
        out["uid"] = self._uids[team]
        out["team_id"] = team
        return dumps(out)

    def _refresh(self, form: dict[str, str], secret: str | None) -> bytes:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "No refresh_token provided.")
        fields = self._verify("", token)
        if not fields or len(fields) != 7 or fields[0] != "r" or not self._refresh_alive(fields):
            raise OAuthError("invalid_grant", "refresh token is invalid or revoked")
        _, client_id, refresh_id, epoch, scope_text, pkce, team = fields
        if client_id != self.config.app_key:
            raise OAuthError("invalid_grant", "refresh token is invalid or revoked")
        if secret is None and not pkce:
            raise OAuthError("invalid_client", "Invalid client_id or client_secret")
        scopes = tuple(scope_text.split())
        asked = form.get("scope")
        if asked:
            wanted = tuple(asked.split())
            if not set(wanted) <= set(scopes):
                raise OAuthError("invalid_scope", "Requested scope exceeds the granted scopes")
            scopes = wanted
        return dumps(
            {
                "access_token": self._access_token(client_id, scopes, refresh_id, epoch, team),
                "token_type": BEARER,
                "expires_in": self.config.access_token_lifetime,
            }
        )

    def _refresh_alive(self, fields: list) -> bool:
        team = fields[6]
        with self._lock:
            if team not in self._revoke_epoch:
                return False
            return fields[3] >= self._revoke_epoch[team] and fields[2] not in self._revoked

    def _access_token(
        self, client_id: str, scopes: tuple[str, ...], refresh_id: str, epoch: int, team: str
    ) -> str:
        exp = self.clock.now() + self.config.access_token_lifetime
        with self._lock:
            gen = self._access_gen[team]
        nonce = secrets.token_hex(4)
        return self._sign(
            "sl.", ["a", client_id, refresh_id, epoch, exp, gen, " ".join(scopes), nonce, team]
        )

    # API auth -----------------------------------------------------------------------------

    def check_access(self, token: str, scope: str) -> AccessInfo:
        """Validate a bearer token for a route needing `scope`; raises ApiAuthError (401)."""
        fields = self._verify("sl.", token)
        if not fields or len(fields) != 9 or fields[0] != "a" or fields[1] != self.config.app_key:
            raise ApiAuthError("invalid_access_token")
        _, app_key, refresh_id, epoch, exp, gen, scope_text, _nonce, team = fields
        if team not in self.teams:
            raise ApiAuthError("invalid_access_token")
        with self._lock:
            revoked = epoch < self._revoke_epoch[team] or (
                refresh_id and refresh_id in self._revoked
            )
            stale = gen < self._access_gen[team]
        if revoked:
            raise ApiAuthError("invalid_access_token")
        if stale or exp <= self.clock.now():
            raise ApiAuthError("expired_access_token")
        scopes = frozenset(scope_text.split())
        if scope not in scopes:
            raise ApiAuthError("missing_scope", required_scope=scope)
        return AccessInfo(app_key, scopes, refresh_id, team)

    def refresh_id_of(self, token: str, kind: str) -> str | None:
        """The refresh-token id behind an access ("a") or refresh ("r") token, if any."""
        fields = self._verify("sl." if kind == "a" else "", token)
        if fields and fields[0] == kind and fields[2]:
            return fields[2]
        return None

    def team_of(self, token: str, kind: str) -> str | None:
        """The team of an access ("a") or refresh ("r") token this app issued, valid or not."""
        fields = self._verify("sl." if kind == "a" else "", token)
        if fields and fields[0] == kind and fields[-1] in self.teams:
            return fields[-1]
        return None

    def team_of_code(self, code: str) -> str | None:
        """The team that approved an authorization code, if the code exists."""
        with self._lock:
            entry = self._codes.get(code)
        return entry.request.team_id if entry is not None else None

    # Control ------------------------------------------------------------------------------

    def revoke(self, refresh_token: str | None = None, team: str | None = None) -> str:
        """Revoke one refresh token (and its access tokens), or all of a team's (`team`), or
        all of every team's.

        Returns "all", "team", "one", or "unknown" (not a refresh token this emulator issued).
        """
        if refresh_token is None:
            with self._lock:
                for tid in self._revoke_epoch if team is None else [team]:
                    self._revoke_epoch[tid] += 1
            return "all" if team is None else "team"
        rid = self.refresh_id_of(refresh_token, "r")
        if rid is None:
            return "unknown"
        self.revoke_id(rid)
        return "one"

    def revoke_id(self, refresh_id: str) -> None:
        with self._lock:
            self._revoked.add(refresh_id)

    def expire_access_tokens(self, team: str | None = None) -> None:
        """Every access token issued so far (to `team`, or to any team) answers
        `expired_access_token` from now on."""
        with self._lock:
            for tid in self._access_gen if team is None else [team]:
                self._access_gen[tid] += 1

    # HTML ---------------------------------------------------------------------------------

    def _sign_form(self, params: dict[str, str]) -> str:
        data = urlencode(sorted(params.items())).encode()
        return _b64(hmac.new(self._key, b"form:" + data, hashlib.sha256).digest()[:18])

    def consent_page(self, req: AuthRequest, params: dict[str, str]) -> bytes:
        """The page a team admin sees, its form signed (the team choice is not)."""
        keep = {k: v for k, v in params.items() if k not in UNSIGNED}
        return consent_html(
            self.config.app_name, req, list(self.teams.values()), keep, self._sign_form(keep)
        )

    def form_valid(self, params: dict[str, str]) -> bool:
        token = params.get("form_token", "")
        keep = {k: v for k, v in params.items() if k not in UNSIGNED}
        return hmac.compare_digest(token, self._sign_form(keep))
