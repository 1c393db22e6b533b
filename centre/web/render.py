"""Rendering pages: the Jinja2 environment, the per-request context (language, account, CSRF token), helpers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from .i18n import LANGS, translate
from .security import LANG_COOKIE, current

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.autoescape = True
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


def lang_of(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "")
    return lang if lang in LANGS else "zh"


def _local(request: Request) -> Any:
    zone = ZoneInfo(request.app.state.centre.config.timezone)

    def local(when: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        """A naive-UTC database time in the centre's time zone."""
        if when is None:
            return "—"
        return when.replace(tzinfo=dt.UTC).astimezone(zone).strftime(fmt)

    return local


def page_url(request: Request, number: int) -> str:
    """This page's URL with ``page=number`` (every other query parameter kept)."""
    params = dict(request.query_params)
    params["page"] = str(number)
    return f"{request.url.path}?{urlencode(params)}"


async def render(request: Request, name: str, context: dict[str, Any] | None = None,
                 status: int = 200) -> HTMLResponse:
    auth = await current(request)
    lang = lang_of(request)

    def t(key: str, **kw: Any) -> str:
        return translate(lang, key, **kw)

    ctx = {"request": request, "t": t, "lang": lang, "user": auth.user, "csrf": auth.csrf, "local": _local(request),
           "page_url": lambda n: page_url(request, n), "path": request.url.path,
           "next_here": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    ctx.update(context or {})
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_next(value: str | None, default: str = "/") -> str:
    """Only a path on this site (never ``//host`` or a scheme): where to go after login or a language switch."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def int_arg(value: Any, default: int = 1, low: int = 1, high: int = 10**9) -> int:
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default
