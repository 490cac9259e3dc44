"""HTTP glue for the OAuth endpoints: `/oauth2/authorize` (GET page, POST form) and
`/oauth2/token` (form-encoded, as the SDK posts it)."""

from __future__ import annotations

import base64
import html
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .oauth import AuthorizeError, OAuthError
from .pages import code_page, message_page
from .responses import Response, html_response, json_response
from .state import EmulatorState


def parse_form(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded -> dict (last value wins)."""
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def error_page(message: str, status: int = 400) -> Response:
    body = message_page(
        f"Error ({status})",
        " <p>It seems the app you were using submitted a bad request.</p>\n"
        f' <p id="error-detail">More details for developers: '
        f"{html.escape(message)}</p>",
    )
    return html_response(body, status)


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = "&".join(p for p in (parts.query, urlencode(params)) if p)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def authorize_get(state: EmulatorState, params: dict[str, str]) -> Response:
    """The consent page for a valid request; an error page (400) otherwise."""
    try:
        req = state.oauth.validate_authorize(params)
    except AuthorizeError as exc:
        return error_page(str(exc))
    return html_response(state.oauth.consent_page(req, params))


def authorize_post(state: EmulatorState, form: dict[str, str]) -> Response:
    """The admin's decision: redirect with code/state, or show the code to paste."""
    if not state.oauth.form_valid(form):
        return error_page("The authorization form was tampered with or has expired.")
    params = {k: v for k, v in form.items() if k not in ("decision", "form_token")}
    try:
        req = state.oauth.validate_authorize(params)
    except AuthorizeError as exc:
        return error_page(str(exc))
    if form.get("decision") != "allow":
        if req.redirect_uri:
            denied = {
                "error": "access_denied",
                "error_description": "The user chose not to give your app access to "
                "their Dropbox account.",
            }
            if req.state is not None:
                denied["state"] = req.state
            return Response(
                302,
                b"",
                "text/html; charset=utf-8",
                [("Location", _with_query(req.redirect_uri, denied))],
            )
        return html_response(
            message_page("Access denied", " <p>You chose not to link the app.</p>")
        )
    code = state.oauth.issue_code(req)
    if req.redirect_uri:
        out = {"code": code}
        if req.state is not None:
            out["state"] = req.state
        return Response(
            302, b"", "text/html; charset=utf-8", [("Location", _with_query(req.redirect_uri, out))]
        )
    return html_response(code_page(code))


def approve_scripted(state: EmulatorState, arg: dict[str, Any]) -> Response:
    """`POST /__emulator/approve`: what clicking Allow does, for tests and demos."""
    if isinstance(arg.get("scope"), list):
        arg = {**arg, "scope": " ".join(str(s) for s in arg["scope"])}
    params = {k: str(v) for k, v in arg.items() if v is not None}
    params.setdefault("response_type", "code")
    if "code_challenge" in params:
        params.setdefault("code_challenge_method", "S256")
    params.setdefault("token_access_type", "offline")
    try:
        req = state.oauth.validate_authorize(params)
    except AuthorizeError as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response({"code": state.oauth.issue_code(req)})


def token(state: EmulatorState, headers: Any, body: bytes) -> Response:
    """`POST /oauth2/token`; client credentials in the form or HTTP Basic auth."""
    basic = None
    auth = headers.get("Authorization") or ""
    if auth.lower().startswith("basic "):
        try:
            user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
            basic = (user, pw)
        except (ValueError, UnicodeDecodeError):
            basic = None
    try:
        return json_response(state.oauth.token(parse_form(body), basic))
    except OAuthError as exc:
        return Response(400, exc.body())
