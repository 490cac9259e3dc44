"""The teams page: a FastAPI app the api-server mounts at `/dropbox-teams` (plugins/).

Who may use it: a user the auth manager allows to edit connections (Airflow's own check,
`is_authorized_connection(method="PUT")`), identified the way the rest of the api-server does
it (`security.get_user`: a bearer token, else the UI's `_token` cookie). Anyone else gets a
401 (not signed in) or 403 page, before anything is read.

Routes: `GET /` the page; `POST /connect` makes the authorization link; `GET /oauth/callback`
is where Dropbox sends the admin back; `POST /oauth/code` takes a pasted code;
`POST /teams/{conn_id}/{test|pause|resume|remove}`; `POST /dags/{dag_id}/unpause` for the
pipeline's DAGs (settings.PIPELINE_DAG_IDS), which also needs the auth manager's leave to edit
that DAG (`is_authorized_dag(method="PUT")`, what the REST API's PATCH asks). Every POST needs
the CSRF token of this user in this browser, and the callback the `state` of a flow this user
started in this browser (web/guard.py). Blocking work (the DB, Dropbox) runs in the thread
pool. Results are shown after a redirect, carried in a short-lived sealed cookie.

The Airflow UI shows the page in a frame (`/plugin/dropbox-teams`) whose sandbox allows neither
top-level navigation nor new tabs, and Dropbox's consent page refuses to be framed: framed, the
page shows the authorization link to copy into a new tab; the callback then lands on the page
on its own (`/dropbox-teams/`), where everything works the same.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dropbox_team_log import team_registry
from dropbox_team_log.cli.connect_options import ConnectOptions
from dropbox_team_log.client.redaction import scrub
from dropbox_team_log.client.transport import normalize_base_url
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.settings import PIPELINE_DAG_IDS
from dropbox_team_log.web import actions, pages, status
from dropbox_team_log.web.guard import FlowRejected, Guard, PendingFlow
from dropbox_team_log.web.used_states import DbUsedStates

#: Where the api-server mounts the app, and the Airflow UI route that frames it.
PREFIX = "/dropbox-teams"
UI_ROUTE = "dropbox-teams"
BROWSER_COOKIE = "dtl_teams_browser"
FLOW_COOKIE = "dtl_teams_flow"
FLASH_COOKIE = "dtl_teams_flash"
ACTIONS = ("test", "pause", "resume", "remove")
#: On every answer: no script at all (the page has none: an escaping slip cannot run one), forms
#: post only here, framed only by the api-server's own UI, no URL (a callback's code) leaks as
#: a referrer, nothing cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'self'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _secret_key() -> str:
    from airflow.configuration import conf

    return conf.get("api", "secret_key")


async def editor(request: Request) -> Any:
    """The signed-in user, if the auth manager lets them edit connections; else 401/403."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    manager = get_auth_manager()
    for method in ("GET", "PUT", "POST"):
        if not manager.is_authorized_connection(method=method, user=user):
            raise HTTPException(403, "editing connections is not allowed for this user")
    return user


Editor = Annotated[Any, Depends(editor)]


def may_edit_dag(user: Any, dag_id: str) -> bool:
    """Whether the auth manager lets `user` edit (pause, unpause) the DAG `dag_id`."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return get_auth_manager().is_authorized_dag(
        method="PUT", details=DagDetails(id=dag_id), user=user
    )


def create_app(guard: Guard | None = None) -> FastAPI:
    """The app; `guard` defaults to one keyed by the api-server's secret key, whose record of
    used OAuth states is in the metadata DB (every api-server worker and host sees it)."""
    app = FastAPI(title="Dropbox teams", docs_url=None, redoc_url=None, openapi_url=None)
    keys: dict[str, Guard] = {}

    def get_guard() -> Guard:
        if "guard" not in keys:
            keys["guard"] = guard or Guard(_secret_key(), used=DbUsedStates())
        return keys["guard"]

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(HTTPException)
    def refusal(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401:
            text = "Sign in to Airflow first (as a user who may edit connections)."
        else:
            text = f"Refused: {exc.detail}."
        body = pages.message_page("Dropbox teams", text, _page_url(request))
        return HTMLResponse(body, status_code=exc.status_code)

    @app.get("/", name="page", response_class=HTMLResponse)
    async def show(request: Request, user: Editor) -> Response:
        return await _render(request, user, get_guard())

    @app.post("/connect")
    async def connect(request: Request, user: Editor) -> Response:
        g = get_guard()
        form = await _form(request, user, g)
        browser = request.cookies.get(BROWSER_COOKIE, "")
        try:
            opts = _options(form)
            state = g.new_state()
            redirect_uri = _callback_url(request) if form.get("mode") != "paste" else None
            url, verifier = await run_in_threadpool(
                actions.authorization_link, opts, state=state, redirect_uri=redirect_uri
            )
        except (DropboxTeamLogError, ValueError) as exc:
            return _back(request, g, False, f"Cannot connect: {scrub(exc)}")
        flow = PendingFlow(
            state=state,
            user_id=str(user.get_id()),
            browser_id=browser,
            conn_id=opts.conn_id,
            app_key=opts.app_key,
            app_secret=opts.app_secret,
            base_url=opts.base_url,
            redirect_uri=redirect_uri,
            code_verifier=verifier,
        )
        pending = pages.Pending(
            opts.conn_id, url, state, paste=redirect_uri is None, framed=_framed(request)
        )
        response = await _render(request, user, g, pending=pending)
        _set_cookie(request, response, FLOW_COOKIE, g.seal_flow(flow), max_age=g.flow_ttl)
        return response

    @app.get("/oauth/callback", name="callback")
    async def callback(request: Request, user: Editor) -> Response:
        g = get_guard()
        params = request.query_params
        if params.get("error"):
            text = f"Dropbox did not authorize the app: {params.get('error_description') or ''}"
            response = _back(request, g, False, f"{text} ({params['error']})")
        else:
            response = await _finish(request, user, g, params.get("state"), params.get("code"))
        response.delete_cookie(FLOW_COOKIE, path=PREFIX)
        return response

    @app.post("/oauth/code")
    async def pasted_code(request: Request, user: Editor) -> Response:
        g = get_guard()
        form = await _form(request, user, g)
        response = await _finish(request, user, g, form.get("state"), form.get("code"))
        response.delete_cookie(FLOW_COOKIE, path=PREFIX)
        return response

    @app.post("/teams/{conn_id}/{action}")
    async def team_action(request: Request, conn_id: str, action: str, user: Editor) -> Response:
        g = get_guard()
        await _form(request, user, g)
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}")
        try:
            team_registry.check_conn_id(conn_id)
            if action == "test":
                ok, message = await run_in_threadpool(actions.test_team, conn_id)
                text = f"Test of '{conn_id}': {'OK' if ok else 'FAILED'}: {message}"
                return _back(request, g, ok, text)
            return _back(request, g, True, await run_in_threadpool(actions.edit, action, conn_id))
        except DropboxTeamLogError as exc:
            return _back(request, g, False, scrub(exc))

    @app.post("/dags/{dag_id}/unpause")
    async def unpause(request: Request, dag_id: str, user: Editor) -> Response:
        g = get_guard()
        await _form(request, user, g)
        if dag_id not in PIPELINE_DAG_IDS:
            raise HTTPException(404, "no such DAG in this pipeline")
        if not may_edit_dag(user, dag_id):
            raise HTTPException(403, f"editing the DAG {dag_id} is not allowed for this user")
        try:
            text = await run_in_threadpool(actions.unpause, dag_id, str(user.get_name()))
        except DropboxTeamLogError as exc:
            return _back(request, g, False, f"Cannot unpause {dag_id}: {scrub(exc)}")
        return _back(request, g, True, text)

    return app


async def _render(
    request: Request, user: Any, g: Guard, pending: pages.Pending | None = None
) -> Response:
    browser = request.cookies.get(BROWSER_COOKIE) or g.new_browser_id()
    flash = g.open_flash(request.cookies.get(FLASH_COOKIE))
    try:
        registry, statuses = await run_in_threadpool(status.team_statuses)
        note = None if registry.editable else "The registry is set outside the metadata DB."
    except DropboxTeamLogError as exc:
        statuses, note = [], f"The teams registry cannot be read: {scrub(exc)}"
    try:
        dags = await run_in_threadpool(status.pipeline_dags)
    except DropboxTeamLogError:
        dags = []
    editable = {d.dag_id for d in dags if d.paused and may_edit_dag(user, d.dag_id)}
    body = pages.page(
        statuses,
        csrf=g.csrf_token(str(user.get_id()), browser),
        callback_url=_callback_url(request),
        airflow_url=_page_url(request)[: -len(PREFIX) - 1] + "/",
        flash=flash,
        pending=pending,
        registry_note=note,
        dags=dags,
        may_unpause=editable,
    )
    response = HTMLResponse(body)
    _set_cookie(request, response, BROWSER_COOKIE, browser, max_age=None)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


async def _form(request: Request, user: Any, g: Guard) -> dict[str, str]:
    """The POSTed form, once its CSRF token proved it comes from this page."""
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    if not g.csrf_ok(form.get("csrf"), str(user.get_id()), request.cookies.get(BROWSER_COOKIE)):
        raise HTTPException(403, "the form's CSRF token is missing or not this session's")
    return form


def _options(form: dict[str, str]) -> ConnectOptions:
    conn_id = team_registry.check_conn_id((form.get("conn_id") or "").strip())
    app_key = (form.get("app_key") or "").strip()
    if not app_key:
        raise ValueError("the app key is empty: copy it from the App Console")
    raw_url = (form.get("api_base_url") or "").strip()
    return ConnectOptions(
        app_key=app_key,
        app_secret=(form.get("app_secret") or "").strip() or None,
        conn_id=conn_id,
        base_url=normalize_base_url(raw_url) if raw_url else None,
    )


async def _finish(
    request: Request, user: Any, g: Guard, state: str | None, code: str | None
) -> Response:
    try:
        flow = await run_in_threadpool(  # it records the state in the metadata DB
            g.open_flow,
            request.cookies.get(FLOW_COOKIE),
            state,
            str(user.get_id()),
            request.cookies.get(BROWSER_COOKIE),
        )
    except FlowRejected as exc:
        text = f"Nothing was saved: {exc}."
        body = pages.message_page("Connect refused", text, _page_url(request))
        return HTMLResponse(body, status_code=400)
    if not code or not code.strip():
        return _back(request, g, False, "No authorization code: start again.")
    try:
        done = await run_in_threadpool(
            actions.finish_connect, flow, code.strip(), str(user.get_name())
        )
    except DropboxTeamLogError as exc:
        return _back(request, g, False, f"Connecting '{flow.conn_id}' failed: {scrub(exc)}")
    r = done.result
    lines = [
        f"Connected Dropbox team '{r.team_name}' ({r.team_id}) as connection '{r.conn_id}'.",
        f"Test: {r.test_message}",
        "Registered in the teams registry." if r.registered else "It was registered already.",
        done.backfill,
    ]
    if r.registry_problem:
        lines[2] = f"Not registered: {r.registry_problem}"
    if r.paused_dags:
        lines.append(
            f"Paused DAGs (a paused DAG runs nothing: Unpause under Pipeline DAGs below): "
            f"{', '.join(r.paused_dags)}."
        )
    return _back(request, g, True, scrub("\n".join(lines)))


def _back(request: Request, g: Guard, ok: bool, text: str) -> Response:
    """303 to the page, with the result to show there."""
    response = RedirectResponse(_page_url(request), status_code=303)
    _set_cookie(request, response, FLASH_COOKIE, g.seal_flash(ok, text), max_age=120)
    return response


def _framed(request: Request) -> bool:
    """Whether the browser loads this into a frame (the Airflow UI's plugin view)."""
    return request.headers.get("sec-fetch-dest") == "iframe"


def _page_url(request: Request) -> str:
    return str(request.url_for("page"))


def _callback_url(request: Request) -> str:
    return str(request.url_for("callback"))


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="lax",
    )
