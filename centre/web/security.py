"""Who is asking, and may they: session cookies, the CSRF check on every POST, and the access policy of each route.

- ``ck_session``: the random session token (:mod:`centre.accounts`); HttpOnly, SameSite=Lax, Path=/, Secure when
  ``secure_cookies`` says so (``auto``: when the request came over https — behind a TLS proxy, uvicorn takes the
  scheme from ``X-Forwarded-Proto`` sent by a trusted proxy address).
- ``ck_anon``: a random token for visitors without a session (the login form, the students' form): the CSRF
  token of their forms (double submit). A logged-in user's forms carry their session's own CSRF token.
- Every route declares its policy with :func:`allow` (``public``, ``login``, ``staff:viewer`` — any staff account,
  ``staff:operator``, ``staff:exporter``, ``school`` — a school's contact, ``photo`` — an exporter or a school's
  contact, for that school's students only); the access-control test walks the app's routes and checks each
  against its own table.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from ..accounts import User, session_user

SESSION_COOKIE = "ck_session"
ANON_COOKIE = "ck_anon"
LANG_COOKIE = "ck_lang"


class LoginRequired(Exception):
    """No session: GET pages redirect to the login page, anything else is 401."""


@dataclass(frozen=True)
class Auth:
    user: User | None
    csrf: str


def secure(request: Request) -> bool:
    mode = request.app.state.centre.config.secure_cookies
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def set_cookie(response: Any, request: Request, name: str, value: str, max_age: int | None = None,
               http_only: bool = True) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=http_only, samesite="lax",
                        secure=secure(request))


async def current(request: Request) -> Auth:
    """The request's account (or None) and the CSRF token its forms must carry (cached on the request)."""
    if hasattr(request.state, "auth"):
        return request.state.auth
    found = await run_in_threadpool(session_user, request.app.state.centre.engine,
                                    request.cookies.get(SESSION_COOKIE))
    auth = Auth(found[0], found[1]) if found else Auth(None, anon_token(request))
    request.state.auth = auth
    return auth


def anon_token(request: Request) -> str:
    token = request.cookies.get(ANON_COOKIE, "")
    if len(token) < 20 or len(token) > 100:
        token = getattr(request.state, "new_anon", "") or secrets.token_urlsafe(24)
        request.state.new_anon = token  # the middleware sets the cookie on the way out
    return token


async def csrf_guard(request: Request) -> None:
    """Every POST must carry the form field ``csrf`` equal to the session's (or the visitor's) token."""
    if request.method != "POST":
        return
    auth = await current(request)
    form = await request.form(max_part_size=2**20)
    sent = form.get("csrf")
    if not isinstance(sent, str) or not secrets.compare_digest(sent.encode(), auth.csrf.encode()):
        raise HTTPException(403, "csrf")


POLICIES = ("public", "login", "staff:viewer", "staff:operator", "staff:exporter", "school", "photo")


def allow(policy: str) -> Any:
    """A dependency that lets through only who ``policy`` admits (and returns their Auth)."""
    if policy not in POLICIES:
        raise ValueError(policy)

    async def check(request: Request) -> Auth:
        auth = await current(request)
        user = auth.user
        if policy == "public":
            return auth
        if user is None:
            raise LoginRequired()
        ok = (policy == "login"
              or (policy == "staff:viewer" and user.is_staff and bool(user.roles))  # every staff role reads
              or (policy.startswith("staff:") and user.can(policy.split(":")[1]))
              or (policy == "school" and user.kind == "school")
              or (policy == "photo" and (user.kind == "school" or user.can("exporter"))))
        if not ok:
            raise HTTPException(403, "forbidden")
        return auth

    check.policy = policy  # type: ignore[attr-defined]
    return Depends(check)


def policy_of(route: Any) -> str | None:
    """The policy a route declared (None: it declared none, which the access test reports)."""
    for dep in route.dependant.dependencies:
        p = getattr(dep.call, "policy", None)
        if p:
            return p
    return None


def routes(app: Any) -> list[tuple[str, str, str | None]]:
    """(method, path, policy) of every page route of ``app``, as it routes requests (included routers' prefixes
    applied): what the access-control test checks, so no route can be left out of it."""
    from fastapi.routing import APIRoute

    try:
        from fastapi.routing import iter_route_contexts  # FastAPI ≥ 0.16x: included routers stay nested
    except ImportError:  # older FastAPI copies included routes into app.routes
        found = [(r.path, r) for r in app.routes if isinstance(r, APIRoute)]
    else:
        found = [(c.path, c.route) for c in iter_route_contexts(app.routes) if isinstance(c.route, APIRoute)]
    return sorted((m, path, policy_of(route)) for path, route in found for m in route.methods)


Public = Annotated[Auth, allow("public")]
LoggedIn = Annotated[Auth, allow("login")]
Viewer = Annotated[Auth, allow("staff:viewer")]
Operator = Annotated[Auth, allow("staff:operator")]
Exporter = Annotated[Auth, allow("staff:exporter")]
Contact = Annotated[Auth, allow("school")]
PhotoViewer = Annotated[Auth, allow("photo")]
