"""Pages for everybody: the home redirect, login (throttled) and logout, the language switch, and the photos
(served only to those allowed to see them, every view written to the access log)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import audit, throttle
from ..accounts import check_password, end_session, new_session
from ..board import capture_owner
from ..rosters import subtree
from ..thumbs import PhotoUnavailable, derivative, thumbnail
from .i18n import LANGS
from .render import redirect, render, safe_next
from .security import LANG_COOKIE, SESSION_COOKIE, Auth, LoggedIn, PhotoViewer, Public, csrf_guard, set_cookie

router = APIRouter(dependencies=[Depends(csrf_guard)])
LOGIN_WINDOW = dt.timedelta(minutes=15)
LOGIN_PER_USER = 5  # failures per user name in the window, then wait
LOGIN_PER_IP = 30  # failures per address in the window


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


@router.get("/")
async def home(request: Request, auth: Public) -> Response:
    if auth.user is None:
        return redirect("/login")
    return redirect("/staff" if auth.user.is_staff else "/school")


@router.get("/login")
async def login_form(request: Request, auth: Public) -> Response:
    return await render(request, "login.html", {"next": safe_next(request.query_params.get("next"), ""),
                                                "errors": {}, "username": ""})


@router.post("/login")
async def login(request: Request, auth: Public) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")).strip()[:64], str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")), "")
    engine = request.app.state.centre.engine
    buckets = (f"login-user:{username.lower()}", f"login-ip:{client_ip(request)}")
    limits = (LOGIN_PER_USER, LOGIN_PER_IP)
    for bucket, limit in zip(buckets, limits, strict=True):
        if await run_in_threadpool(throttle.over, engine, bucket, limit, LOGIN_WINDOW):
            wait = await run_in_threadpool(throttle.retry_after, engine, bucket, limit, LOGIN_WINDOW)
            response = await render(request, "login.html", {"next": target, "username": username, "errors": {
                "form": "err.login_throttled"}, "minutes": max(1, -(-wait // 60))}, status=429)
            response.headers["Retry-After"] = str(wait)
            return response
    errors = {}
    if not username:
        errors["username"] = "err.required"
    if not password:
        errors["password"] = "err.required"
    user = None
    if not errors:
        user = await run_in_threadpool(check_password, engine, username, password)
        if user is None:
            await run_in_threadpool(throttle.record, engine, *buckets)
            errors["form"] = "err.login_failed"
    if user is None:
        return await render(request, "login.html", {"next": target, "username": username, "errors": errors},
                            status=400 if errors.get("form") != "err.login_failed" else 401)
    await run_in_threadpool(throttle.clear, engine, buckets[0])
    hours = request.app.state.centre.config.session_hours
    token, _csrf = await run_in_threadpool(new_session, engine, user, hours)
    response = redirect(target or ("/staff" if user.is_staff else "/school"))
    set_cookie(response, request, SESSION_COOKIE, token, max_age=int(hours * 3600))
    return response


@router.post("/logout")
async def logout(request: Request, auth: LoggedIn) -> Response:
    await run_in_threadpool(end_session, request.app.state.centre.engine, request.cookies.get(SESSION_COOKIE))
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
async def switch_language(request: Request, lang: str, auth: Public) -> Response:
    if lang not in LANGS:
        raise HTTPException(404)
    response = redirect(safe_next(request.query_params.get("next"), "/"))
    set_cookie(response, request, LANG_COOKIE, lang, max_age=365 * 86400, http_only=False)
    return response


async def _photo(request: Request, auth: Auth, capture_id: str, thumb: bool) -> Response:
    centre = request.app.state.centre
    user = auth.user
    assert user is not None

    def find():
        with centre.engine.connect() as conn:
            within = subtree(conn, user.school_id) if user.kind == "school" else None
            return capture_owner(conn, capture_id, within)

    found = await run_in_threadpool(find) if len(capture_id) <= 120 else None
    if found is None:  # not a capture, not on a roster, or (for a school) not one of its students: all alike
        raise HTTPException(404)
    cap, student = found
    try:
        data = await run_in_threadpool(thumbnail if thumb else derivative, centre.storage, cap)
    except PhotoUnavailable:
        raise HTTPException(404) from None
    who = " ".join(x for x in (student.school, student.class_name, student.student_no, student.name) if x)
    await run_in_threadpool(audit.log, centre.engine, user.id, "view_thumb" if thumb else "view_photo",
                            school_id=student.school_id, student_id=student.id, student=who, capture_id=capture_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.get("/photos/{capture_id}.jpg")
async def photo(request: Request, capture_id: str, auth: PhotoViewer) -> Response:
    return await _photo(request, auth, capture_id, thumb=False)


@router.get("/photos/{capture_id}/thumb.jpg")
async def photo_thumb(request: Request, capture_id: str, auth: PhotoViewer) -> Response:
    return await _photo(request, auth, capture_id, thumb=True)
