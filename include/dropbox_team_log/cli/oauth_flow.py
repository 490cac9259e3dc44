"""The OAuth 2 no-redirect flow of `connect`: the authorization link, then code -> tokens.

The Dropbox SDK's flow runs on the project's HTTP session, so `--api-base-url` (the emulator)
is honoured for the token call and the link alike. It asks for offline access: a refresh token
is the only grant that runs unattended. Each way the token endpoint can fail becomes a reason a
person can act on, and every token is registered with Airflow's secrets masker as soon as it
exists. What the token call carries (app secret, code, PKCE verifier) is registered with
`client.redaction` before it is sent, so an error body that echoes it is shown scrubbed; the
session refuses redirects (`transport.NoRedirectSession`), so none of it goes elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from dropbox_team_log.cli.connect_options import ConnectError, ConnectOptions
from dropbox_team_log.client import redaction
from dropbox_team_log.client.transport import TokenWatch, build_session, rewrite_url
from dropbox_team_log.settings import REQUIRED_SCOPES

if TYPE_CHECKING:
    from dropbox.oauth import DropboxOAuth2FlowNoRedirect, OAuth2FlowNoRedirectResult

TOKEN_TIMEOUT = 30.0
ACCESS_TYPE = "offline"  # a refresh token: the only grant that runs unattended


def start_flow(opts: ConnectOptions) -> tuple[DropboxOAuth2FlowNoRedirect, str]:
    """The SDK's no-redirect flow on our session; the link points at the override if any."""
    flow = _new_flow(opts, use_pkce=opts.pkce)
    return flow, _link(flow.start(), opts)


def start_web_flow(
    opts: ConnectOptions, *, state: str, redirect_uri: str | None
) -> tuple[DropboxOAuth2FlowNoRedirect, str]:
    """The teams page's flow: PKCE always (the verifier stays on the server side), the caller's
    `state`, and Dropbox redirecting to `redirect_uri` (None: the admin pastes the code)."""
    flow = _new_flow(opts, use_pkce=True)
    url = flow._get_authorize_url(
        redirect_uri, state, ACCESS_TYPE, scope=flow.scope, code_challenge=flow.code_challenge
    )
    return flow, _link(url, opts)


def resume_web_flow(opts: ConnectOptions, code_verifier: str) -> DropboxOAuth2FlowNoRedirect:
    """The flow `start_web_flow` began, in another request: same options, same PKCE verifier."""
    flow = _new_flow(opts, use_pkce=True)
    flow.code_verifier = code_verifier
    return flow


def _new_flow(opts: ConnectOptions, *, use_pkce: bool) -> DropboxOAuth2FlowNoRedirect:
    from dropbox.oauth import DropboxOAuth2FlowNoRedirect

    flow = DropboxOAuth2FlowNoRedirect(
        opts.app_key,
        consumer_secret=opts.app_secret,
        use_pkce=use_pkce,
        token_access_type=ACCESS_TYPE,
        scope=list(REQUIRED_SCOPES),
        timeout=TOKEN_TIMEOUT,
    )
    # The tokens of the code exchange are registered as the hook's refreshed ones are: the
    # access token until a day past its expiry, the refresh token for the life of the process.
    watch = TokenWatch(on_token=_mask_in_airflow)
    flow.requests_session = build_session(opts.base_url, token_watch=watch)
    return flow


def _link(url: str, opts: ConnectOptions) -> str:
    return rewrite_url(url, opts.base_url) if opts.base_url is not None else url


def finish_flow(
    flow: DropboxOAuth2FlowNoRedirect,
    code: str,
    opts: ConnectOptions,
    *,
    redirect_uri: str | None = None,
) -> OAuth2FlowNoRedirectResult:
    """Code -> tokens, with a reason a person can act on for each way it fails. `redirect_uri`:
    the one the link carried (Dropbox checks they match)."""
    where = opts.base_url or "https://api.dropboxapi.com"
    redaction.register(opts.app_secret, code, getattr(flow, "code_verifier", None))
    redaction.register_basic(opts.app_key, opts.app_secret)
    try:
        result = flow._finish(code, redirect_uri, getattr(flow, "code_verifier", None))
    except requests.HTTPError as exc:
        raise _token_error(exc.response, opts) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ConnectError(
            f"Dropbox OAuth token endpoint unreachable at {where} ({type(exc).__name__}): "
            "check the network path and --api-base-url"
        ) from None
    except (ValueError, KeyError) as exc:  # a 200 that is not the token JSON promised
        raise ConnectError(
            f"Dropbox OAuth token endpoint at {where} answered an unexpected body "
            f"({type(exc).__name__}): check --api-base-url"
        ) from None
    if not result.refresh_token:
        raise ConnectError(
            "Dropbox returned no refresh token (offline access): the app must allow "
            "short-lived tokens with refresh; check the app's settings and connect again"
        )
    return result


def _token_error(response: requests.Response | None, opts: ConnectOptions) -> ConnectError:
    """What an HTTP error of the token endpoint means, by its OAuth `error` code."""
    status = response.status_code if response is not None else 0
    error, description = "", ""
    if response is not None:
        try:
            body = response.json()
            error = str(body.get("error", ""))
            description = str(body.get("error_description", ""))
        except (ValueError, AttributeError):  # not JSON, or JSON but not an object
            pass
    error = redaction.scrub(error)[:100]
    description = redaction.scrub(description)[:200]
    if error == "invalid_grant":
        return ConnectError(
            f"Dropbox rejected the authorization code (invalid_grant: {description or 'unknown'})"
            ": codes are single-use, expire after minutes and belong to one link; run the "
            "command again and use the code of the new link"
        )
    if error in ("invalid_client", "unauthorized_client") or status == 401:
        what = "app key" if opts.pkce else "app key / app secret"
        return ConnectError(
            f"Dropbox rejected the {what} ({error or f'HTTP {status}'}): copy them again from "
            "the App Console (Settings tab)"
            + ("; for --pkce the app must allow public clients (PKCE)" if opts.pkce else "")
        )
    if error == "invalid_request" and opts.pkce:
        return ConnectError(
            f"Dropbox refused the PKCE exchange (invalid_request: {description}): run the whole "
            "flow in one `connect` run (the code belongs to this run's link)"
        )
    return ConnectError(
        f"Dropbox OAuth token endpoint answered HTTP {status}"
        + (f" ({error}: {description})" if error else "")
        + ": try again later; if it persists check --api-base-url"
    )


def mask_secrets(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker (any log line carrying one shows *** instead) and
    with `client.redaction` (any message quoting one, in any encoding, too), for the life of
    the process."""
    values = [s for s in secrets if s]
    redaction.register(*values)
    _mask_in_airflow(*values)


def _mask_in_airflow(*values: str) -> None:
    """Register values with Airflow's secrets masker (imported only when there is one)."""
    if not values:
        return
    from airflow.sdk.log import mask_secret

    for value in values:
        mask_secret(value)
