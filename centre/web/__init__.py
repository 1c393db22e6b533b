"""The centre's web pages (issue 15), on the same ASGI app and database as the kit API.

:func:`mount` puts a dispatcher in front of the kit API: ``/api/…`` and ``/openapi.json`` go to the kit API as
before (its errors, limits and OpenAPI document unchanged), every other path to the web app built here —
server-rendered Jinja2 pages (``templates/``), a little plain JavaScript (``static/refresh.js``: the live board's
polling; every page works without it), zh-CN by default with English (``i18n.py``).

Routes: ``pages.py`` (login, language, photos), ``staff.py``, ``school.py``, ``student.py`` (the make-up form).
Who may call what: ``security.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..bodycap import capped
from ..context import Centre
from ..storage import StorageError
from .security import ANON_COOKIE, LoginRequired, set_cookie

log = logging.getLogger("capturekit.centre.web")
KIT_API_PREFIXES = ("/api/", "/openapi.json")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def is_kit_api(path: str) -> bool:
    return path == "/api" or path.startswith(KIT_API_PREFIXES)


class WebDispatch:
    """ASGI: the kit API's paths to the kit API, the rest to the web app (bodies capped at ``max_form_bytes``)."""

    def __init__(self, app: ASGIApp, web: ASGIApp, max_body: int) -> None:
        self.app, self.web, self.max_body = app, web, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_kit_api(scope["path"]):
            return await self.app(scope, receive, send)
        await self.web(scope, capped(receive, self.max_body, lambda: HTTPException(413, "too_large")), send)


def mount(app: FastAPI, centre: Centre) -> FastAPI:
    """Serve the web pages next to the kit API of ``app`` (called by ``centre.kit_api.create_app``)."""
    web = create_web_app(centre)
    app.state.web = web
    app.add_middleware(WebDispatch, web=web, max_body=centre.config.max_form_bytes)
    return web


def create_web_app(centre: Centre) -> FastAPI:
    from . import pages, school, staff, student
    from .render import render

    web = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    web.state.centre = centre
    for module in (pages, staff, school, student):
        web.include_router(module.router)
    web.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @web.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        new = getattr(request.state, "new_anon", None)
        if new and not request.url.path.startswith("/static/"):
            set_cookie(response, request, ANON_COOKIE, new, max_age=30 * 86400)
        return response

    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.method == "GET":
            from urllib.parse import quote

            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return await render(request, "error.html", {"code": 401, "message": "err.login_required"}, status=401)

    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        message = {403: "err.forbidden", 404: "err.not_found", 405: "err.method", 413: "err.too_large",
                   429: "err.too_many"}.get(exc.status_code, "err.bad_request")
        if exc.detail == "csrf":
            message = "err.csrf"
        return await render(request, "error.html", {"code": exc.status_code, "message": message},
                            status=exc.status_code)

    async def invalid(request: Request, _exc: RequestValidationError) -> HTMLResponse:
        return await render(request, "error.html", {"code": 400, "message": "err.bad_request"}, status=400)

    async def unavailable(request: Request, exc: Exception) -> HTMLResponse:
        log.error("unavailable: %s", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        response = await render(request, "error.html", {"code": 503, "message": "err.unavailable"}, status=503)
        response.headers["Retry-After"] = "5"
        return response

    async def server_error(request: Request, exc: Exception) -> HTMLResponse:
        log.exception("web page %s %s", request.method, request.url.path, exc_info=exc)
        return await render(request, "error.html", {"code": 500, "message": "err.server"}, status=500)

    web.add_exception_handler(Exception, server_error)
    web.add_exception_handler(LoginRequired, login_required)
    web.add_exception_handler(StarletteHTTPException, http_error)
    web.add_exception_handler(RequestValidationError, invalid)
    for exc in (StorageError, OperationalError, DBAPIError):
        web.add_exception_handler(exc, unavailable)
    return web
