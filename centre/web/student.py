"""The students' make-up registration form (§四 / Annex 2), opened from the school's poster QR code; no account.

The answer's rules are :mod:`centre.makeup`'s (what a wrong key gets, and why). Rate limits, the same for every
key: per address 10 submissions / 10 minutes, per key 5 / day, per school 2,000 / hour. The code comes back as an
inline PNG (no URL holds it, nothing caches it) to show on the phone, save, or print.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from .. import makeup, throttle
from ..db import schools
from .pages import client_ip
from .render import int_arg, render
from .security import Public, csrf_guard

router = APIRouter(dependencies=[Depends(csrf_guard)])
LIMITS = (("ip", 10, dt.timedelta(minutes=10)), ("key", 5, dt.timedelta(days=1)),
          ("school", 2000, dt.timedelta(hours=1)))


def _school(engine, code: str):
    with engine.connect() as conn:
        return conn.execute(select(schools.c.id, schools.c.code, schools.c.name)
                            .where(schools.c.code == code)).first()


def _qr_png(text: str) -> str:
    import segno

    buf = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buf, kind="png", scale=6, border=4)
    return base64.b64encode(buf.getvalue()).decode()


async def _form(request: Request, school, values: dict, errors: dict, status: int = 200) -> Response:
    centre = request.app.state.centre
    zone = ZoneInfo(centre.config.timezone)

    def listed():
        with centre.engine.connect() as conn:
            return makeup.sessions(conn, school_id=school.id, upcoming_from=dt.datetime.now(zone).date(),
                                   size=200)[0]

    return await render(request, "makeup_form.html", {
        "school": school, "sessions": await run_in_threadpool(listed), "values": values, "errors": errors,
        "enabled": centre.keys is not None and centre.keys.makeup_signing is not None}, status=status)


@router.get("/m/{code}")
async def makeup_form(request: Request, code: str, auth: Public) -> Response:
    school = await run_in_threadpool(_school, request.app.state.centre.engine, code[:64])
    if school is None:
        raise HTTPException(404)
    return await _form(request, school, {}, {})


@router.post("/m/{code}")
async def makeup_register(request: Request, code: str, auth: Public) -> Response:
    centre = request.app.state.centre
    engine = centre.engine
    school = await run_in_threadpool(_school, engine, code[:64])
    if school is None:
        raise HTTPException(404)
    if centre.keys is None or centre.keys.makeup_signing is None:
        return await _form(request, school, {}, {"form": "err.makeup_off"}, status=503)
    form = await request.form()
    key_text, second = str(form.get("key", ""))[:500], str(form.get("second", ""))[:200]
    session_id = int_arg(form.get("session"), default=0) or None
    values = {"key": key_text, "second": second, "session": session_id}
    try:
        kind, key = makeup.classify_key(key_text)
    except ValueError:
        kind, key = None, key_text.strip()
    buckets = {"ip": f"makeup-ip:{client_ip(request)}", "school": f"makeup-school:{school.code}",
               "key": makeup.key_bucket(school.code, kind, key) if kind else f"makeup-key:{key[:60]}"}
    for name, limit, window in LIMITS:
        if await run_in_threadpool(throttle.over, engine, buckets[name], limit, window):
            response = await _form(request, school, values, {"form": "err.too_many"}, status=429)
            response.headers["Retry-After"] = str(int(window.total_seconds()))
            return response
    await run_in_threadpool(throttle.record, engine, *buckets.values())
    zone = ZoneInfo(centre.config.timezone)
    result = await run_in_threadpool(makeup.register, engine, centre.keys.makeup_signing, zone, school.code,
                                     key_text, second, session_id)
    if result.errors:
        return await _form(request, school, values, {k: f"err.{v}" for k, v in result.errors.items()}, status=400)
    png = await run_in_threadpool(_qr_png, result.code or "CKM1:NOCODE")  # the same work on both paths
    return await render(request, "makeup_result.html", {
        "school": school, "session": result.session, "matched": result.code is not None,
        "png": png if result.code else None, "expires": result.expires_at.astimezone(zone) if result.expires_at
        else None})
