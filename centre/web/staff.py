"""Centre staff's pages: the live board, schools and sites, the shoot plan, make-up sessions, exports, errata,
the access log. ``viewer`` reads, ``operator`` changes plans, sessions, schools and errata, ``exporter`` sees
photos and runs and downloads exports (``security.allow``)."""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from .. import audit, board, errata, jobs, makeup, plans
from ..db import kit_schools, kits, roster_versions, schools, users
from ..errors import CentreError
from ..rosters import add_school, assign
from ..selection import progress
from .render import int_arg, redirect, render
from .security import Exporter, Operator, Viewer, csrf_guard

router = APIRouter(prefix="/staff", dependencies=[Depends(csrf_guard)])


def _engine(request: Request) -> Any:
    return request.app.state.centre.engine


async def _read(request: Request, fn: Any, *args: Any, tally: bool = False) -> Any:
    """Run ``fn(conn, *args)`` on a connection in a worker thread (the board's tally brought up to date first)."""
    engine = _engine(request)

    def run():
        if tally:
            from ..tally import refresh

            refresh(engine)
        with engine.connect() as conn:
            return fn(conn, *args)

    return await run_in_threadpool(run)


def _school_id(conn: Any, code: str) -> int:
    sid = conn.execute(select(schools.c.id).where(schools.c.code == code)).scalar()
    if sid is None:
        raise HTTPException(404)
    return sid


# ---- the live board

def _board(conn: Any, page: int, search: str) -> dict[str, Any]:
    rows, pg = board.school_rows(conn, page, 25, search)
    return {"kits": board.kit_rows(conn), "schools": rows, "pg": pg, "totals": board.totals(conn),
            "now": dt.datetime.now(dt.UTC).replace(tzinfo=None)}


@router.get("")
async def board_page(request: Request, auth: Viewer) -> Response:
    page, search = int_arg(request.query_params.get("page")), request.query_params.get("q", "")[:100]
    data = await _read(request, _board, page, search, tally=True)
    return await render(request, "staff_board.html", {**data, "q": search})


@router.get("/board/live")
async def board_live(request: Request, auth: Viewer) -> Response:
    """The board's tables alone: what refresh.js swaps in every few seconds."""
    page, search = int_arg(request.query_params.get("page")), request.query_params.get("q", "")[:100]
    data = await _read(request, _board, page, search, tally=True)
    return await render(request, "staff_board_live.html", {**data, "q": search})


# ---- schools

@router.get("/schools")
async def schools_page(request: Request, auth: Viewer) -> Response:
    return await _schools(request, {}, {})


async def _schools(request: Request, errors: dict, values: dict, status: int = 200) -> Response:
    page, search = int_arg(request.query_params.get("page")), request.query_params.get("q", "")[:100]

    def load(conn):
        rows, pg = board.school_rows(conn, page, 50, search)
        contacts = dict(conn.execute(select(users.c.school_id, users.c.username)
                                     .where(users.c.school_id.is_not(None))).all())
        return rows, pg, contacts

    rows, pg, contacts = await _read(request, load, tally=True)
    return await render(request, "staff_schools.html", {"rows": rows, "pg": pg, "q": search, "contacts": contacts,
                                                         "errors": errors, "values": values}, status=status)


@router.post("/schools")
async def schools_add(request: Request, auth: Operator) -> Response:
    form = await request.form()
    values = {k: str(form.get(k, "")).strip()[:200] for k in ("code", "name", "parent")}
    errors = {}
    if not values["code"]:
        errors["code"] = "err.required"
    if not values["name"]:
        errors["name"] = "err.required"
    if not errors:
        cfg = request.app.state.centre.config
        try:
            await run_in_threadpool(add_school, _engine(request), values["code"], values["name"],
                                    values["parent"] or None, cfg.new_school_argon2_opslimit,
                                    cfg.new_school_argon2_memlimit_kib * 1024)
        except CentreError as exc:
            text = str(exc)
            field = "parent" if values["parent"] and "no school" in text else "code"
            errors[field] = "err.school_exists" if "already exists" in text else (
                "err.no_such_school" if field == "parent" else "err.bad_school_code")
    if errors:
        return await _schools(request, errors, values, status=400)
    return redirect(f"/staff/schools/{values['code']}")


@router.get("/schools/{code}")
async def school_page(request: Request, code: str, auth: Viewer) -> Response:
    return await _school_page(request, code, {})


async def _school_page(request: Request, code: str, errors: dict, status: int = 200) -> Response:
    def load(conn):
        sid = _school_id(conn, code)
        school = conn.execute(select(schools).where(schools.c.id == sid)).first()
        parent = conn.execute(select(schools.c.code).where(schools.c.id == school.parent_id)).scalar() \
            if school.parent_id else None
        sites = conn.execute(select(schools.c.code, schools.c.name).where(schools.c.parent_id == sid)
                             .order_by(schools.c.code)).all()
        versions = conn.execute(select(roster_versions).where(roster_versions.c.school_id == sid)
                                .order_by(roster_versions.c.version.desc()).limit(10)).all()
        assigned = conn.execute(select(kits.c.name).join(kit_schools, kit_schools.c.kit_id == kits.c.id)
                                .where(kit_schools.c.school_id == sid).order_by(kits.c.name)).scalars().all()
        all_kits = conn.execute(select(kits.c.name).where(kits.c.revoked_at.is_(None))
                                .order_by(kits.c.name)).scalars().all()
        contact = conn.execute(select(users.c.username).where(users.c.school_id == sid)).scalar()
        return {"school": school, "parent": parent, "sites": sites, "versions": versions, "rows": progress(conn, sid),
                "assigned": assigned, "all_kits": all_kits, "contact": contact}

    data = await _read(request, load)
    rows = data["rows"]
    data["total"] = {f: sum(getattr(r, f) for r in rows) for f in ("students", "photographed", "missing", "retakes")}
    return await render(request, "staff_school.html", {**data, "errors": errors}, status=status)


@router.post("/schools/{code}/kits")
async def school_assign(request: Request, code: str, auth: Operator) -> Response:
    form = await request.form()
    kit, move = str(form.get("kit", "")), form.get("replace") == "1"
    await _read(request, _school_id, code)
    try:
        await run_in_threadpool(assign, _engine(request), kit, code, move)
    except CentreError as exc:
        return await _school_page(request, code, {"kit": "err.kit_other_roster" if "another roster" in str(exc)
                                                  else "err.no_such_kit"}, status=400)
    return redirect(f"/staff/schools/{code}")


@router.get("/schools/{code}/missing")
async def school_missing(request: Request, code: str, auth: Viewer) -> Response:
    page = int_arg(request.query_params.get("page"))

    def load(conn):
        sid = _school_id(conn, code)
        school = conn.execute(select(schools).where(schools.c.id == sid)).first()
        return (school, *board.missing(conn, sid, page))

    school, rows, pg = await _read(request, load)
    return await render(request, "missing.html", {"school": school, "rows": rows, "pg": pg,
                                                  "base": f"/staff/schools/{code}"})


# ---- the shoot plan

def _local_now(request: Request) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(request.app.state.centre.config.timezone)).replace(tzinfo=None)


async def _plan(request: Request, errors: dict, values: dict, status: int = 200) -> Response:
    page = int_arg(request.query_params.get("page"))
    school = request.query_params.get("school") or None
    try:
        day = dt.date.fromisoformat(request.query_params["day"]) if request.query_params.get("day") else None
    except ValueError:
        day = None

    def load(conn):
        rows, pg = plans.slots(conn, page, 50, school, day)
        return {"slots": rows, "pg": pg, "rates": plans.rates(conn),
                "kit_names": conn.execute(select(kits.c.name).where(kits.c.revoked_at.is_(None))
                                          .order_by(kits.c.name)).scalars().all()}

    data = await _read(request, load)
    return await render(request, "staff_plan.html", {**data, "errors": errors, "values": values,
                                                      "filter_school": school or "", "filter_day": day},
                        status=status)


@router.get("/plan")
async def plan_page(request: Request, auth: Viewer) -> Response:
    return await _plan(request, {}, {"minutes": "60", "group_kind": "class", "rate_code": "full_time"})


@router.post("/plan")
async def plan_add(request: Request, auth: Operator) -> Response:
    form = await request.form()
    v = {k: str(form.get(k, "")).strip()[:200] for k in ("school", "group_kind", "group_name", "starts_at", "minutes",
                                                        "kit", "rate_code", "place")}
    errors: dict[str, str] = {}
    starts = None
    try:
        starts = dt.datetime.fromisoformat(v["starts_at"]).replace(second=0, microsecond=0, tzinfo=None)
    except ValueError:
        errors["starts_at"] = "err.bad_time"
    minutes = int_arg(v["minutes"], 0, 0, 24 * 60)
    if not 10 <= minutes <= 12 * 60:
        errors["minutes"] = "err.bad_minutes"
    if v["group_kind"] not in ("class", "major"):
        errors["group_kind"] = "err.required"
    if not v["group_name"]:
        errors["group_name"] = "err.required"

    def check(conn):
        bad = {}
        if not conn.execute(select(schools.c.id).where(schools.c.code == v["school"])).first():
            bad["school"] = "err.no_such_school"
        if v["kit"] and not conn.execute(select(kits.c.id).where(kits.c.name == v["kit"])).first():
            bad["kit"] = "err.no_such_kit"
        if v["rate_code"] not in {r.code for r in plans.rates(conn)}:
            bad["rate_code"] = "err.required"
        return bad

    errors.update(await _read(request, check))
    if errors:
        return await _plan(request, errors, v, status=400)
    await run_in_threadpool(lambda: plans.add_slot(
        _engine(request), school=v["school"], group_kind=v["group_kind"], group_name=v["group_name"],
        starts_at=starts, minutes=minutes, kit=v["kit"] or None, rate_code=v["rate_code"], place=v["place"],
        user_id=auth.user.id))
    return redirect(f"/staff/plan?school={v['school']}")


@router.post("/plan/{slot_id}/delete")
async def plan_delete(request: Request, slot_id: int, auth: Operator) -> Response:
    if not await run_in_threadpool(plans.delete_slot, _engine(request), slot_id):
        raise HTTPException(404)
    return redirect("/staff/plan")


@router.post("/rates")
async def rates_set(request: Request, auth: Operator) -> Response:
    form = await request.form()
    try:
        await run_in_threadpool(plans.set_rate, _engine(request), str(form.get("code", "")),
                                int_arg(form.get("per_hour_min"), 0, 0), int_arg(form.get("per_hour_max"), 0, 0))
    except CentreError:
        return await _plan(request, {"rates": "err.bad_rates"}, {}, status=400)
    return redirect("/staff/plan")


# ---- make-up sessions

async def _makeup(request: Request, errors: dict, values: dict, status: int = 200) -> Response:
    page = int_arg(request.query_params.get("page"))

    def load(conn):
        rows, pg = makeup.sessions(conn, page=page)
        return {"phases": makeup.phases(conn), "hours": makeup.hours(conn), "sessions": rows, "pg": pg}

    data = await _read(request, load)
    return await render(request, "staff_makeup.html", {**data, "errors": errors, "values": values}, status=status)


@router.get("/makeup")
async def makeup_page(request: Request, auth: Viewer) -> Response:
    return await _makeup(request, {}, {})


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


@router.post("/makeup/phases")
async def makeup_phase_add(request: Request, auth: Operator) -> Response:
    form = await request.form()
    v = {k: str(form.get(k, "")).strip()[:100] for k in ("name", "starts_on", "ends_on")}
    a, b = _date(v["starts_on"]), _date(v["ends_on"])
    errors = {}
    if not v["name"]:
        errors["phase_name"] = "err.required"
    if a is None:
        errors["starts_on"] = "err.bad_date"
    if b is None or (a and b < a):
        errors["ends_on"] = "err.bad_date"
    if errors:
        return await _makeup(request, errors, v, status=400)
    await run_in_threadpool(makeup.add_phase, _engine(request), v["name"], a, b)
    return redirect("/staff/makeup")


@router.post("/makeup/phases/{phase_id}/generate")
async def makeup_generate(request: Request, phase_id: int, auth: Operator) -> Response:
    form = await request.form()
    place, capacity = str(form.get("place", "")).strip()[:200], int_arg(form.get("capacity"), 0, 0, 100000)
    if not place or capacity < 1:
        return await _makeup(request, {f"generate_{phase_id}": "err.place_capacity"}, {}, status=400)
    try:
        await run_in_threadpool(makeup.generate, _engine(request), phase_id, place, capacity)
    except CentreError:
        raise HTTPException(404) from None
    return redirect("/staff/makeup")


@router.post("/makeup/hours")
async def makeup_hours_add(request: Request, auth: Operator) -> Response:
    form = await request.form()
    try:
        await run_in_threadpool(makeup.add_hours, _engine(request), str(form.get("starts", "")),
                                str(form.get("ends", "")))
    except CentreError:
        return await _makeup(request, {"hours": "err.bad_hours"}, {}, status=400)
    return redirect("/staff/makeup")


@router.post("/makeup/hours/{hours_id}/delete")
async def makeup_hours_delete(request: Request, hours_id: int, auth: Operator) -> Response:
    await run_in_threadpool(makeup.delete_hours, _engine(request), hours_id)
    return redirect("/staff/makeup")


@router.post("/makeup/sessions")
async def makeup_session_add(request: Request, auth: Operator) -> Response:
    form = await request.form()
    v = {k: str(form.get(k, "")).strip()[:200] for k in ("day", "starts", "ends", "place", "capacity", "school")}
    day, capacity = _date(v["day"]), int_arg(v["capacity"], 0, 0, 100000)
    errors = {}
    if day is None:
        errors["day"] = "err.bad_date"
    if not v["place"]:
        errors["place"] = "err.required"
    if capacity < 1:
        errors["capacity"] = "err.bad_capacity"
    school_id = None
    if v["school"]:
        school_id = await _read(request, lambda c: c.execute(select(schools.c.id)
                                                             .where(schools.c.code == v["school"])).scalar())
        if school_id is None:
            errors["school"] = "err.no_such_school"
    if not errors:
        try:
            await run_in_threadpool(makeup.add_session, _engine(request), day, v["starts"], v["ends"], v["place"],
                                    capacity, school_id)
        except CentreError:
            errors["starts"] = "err.bad_hours"
    if errors:
        return await _makeup(request, errors, v, status=400)
    return redirect("/staff/makeup")


@router.post("/makeup/sessions/{session_id}/delete")
async def makeup_session_delete(request: Request, session_id: int, auth: Operator) -> Response:
    if not await run_in_threadpool(makeup.delete_session, _engine(request), session_id):
        return await _makeup(request, {f"session_{session_id}": "err.session_in_use"}, {}, status=400)
    return redirect("/staff/makeup")


@router.get("/makeup/sessions/{session_id}")
async def makeup_session(request: Request, session_id: int, auth: Viewer) -> Response:
    from ..db import makeup_sessions

    def load(conn):
        s = conn.execute(select(makeup_sessions).where(makeup_sessions.c.id == session_id)).first()
        if s is None:
            raise HTTPException(404)
        return (s, *makeup.registrations(conn, session_id, int_arg(request.query_params.get("page"))))

    session, regs, pg = await _read(request, load)
    return await render(request, "staff_makeup_session.html", {"session": session, "regs": regs, "pg": pg})


# ---- exports

@router.get("/exports")
async def exports_page(request: Request, auth: Exporter) -> Response:
    return await _exports(request, {}, {})


async def _exports(request: Request, errors: dict, values: dict, status: int = 200) -> Response:
    page = int_arg(request.query_params.get("page"))
    rows, pg = await run_in_threadpool(jobs.recent, _engine(request), "export", page)
    return await render(request, "staff_exports.html", {"jobs": rows, "pg": pg, "errors": errors, "values": values},
                        status=status)


@router.post("/exports")
async def exports_start(request: Request, auth: Exporter) -> Response:
    form = await request.form()
    code = str(form.get("school", "")).strip()[:64]
    centre = request.app.state.centre
    try:
        job_id = await run_in_threadpool(jobs.start_export, centre.engine, centre.storage, centre.config.exports_path,
                                         code, auth.user.id)
    except CentreError:
        return await _exports(request, {"school": "err.no_such_school"}, {"school": code}, status=400)
    return redirect(f"/staff/exports/{job_id}")


def _export_job(request: Request, job_id: int) -> dict[str, Any]:
    job = jobs.get(_engine(request), job_id)
    if job is None or job["kind"] != "export":
        raise HTTPException(404)
    return job


@router.get("/exports/{job_id}")
async def export_page(request: Request, job_id: int, auth: Exporter) -> Response:
    job = await run_in_threadpool(_export_job, request, job_id)
    return await render(request, "job.html", {"job": job, "back": "/staff/exports"})


def _zip_stream(directory: Path) -> Iterator[bytes]:
    """The export folder as a ZIP, written as it streams (photos are JPEG: stored, not deflated)."""

    class Sink:
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.pos = 0

        def write(self, b: bytes) -> int:
            self.parts.append(bytes(b))
            self.pos += len(b)
            return len(b)

        def tell(self) -> int:
            return self.pos

        def flush(self) -> None:
            pass

    sink = Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:  # type: ignore[arg-type]
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            zf.write(path, f"{directory.name}/{path.relative_to(directory).as_posix()}")
            yield b"".join(sink.parts)
            sink.parts.clear()
    yield b"".join(sink.parts)


@router.get("/exports/{job_id}/download")
async def export_download(request: Request, job_id: int, auth: Exporter) -> Response:
    job = await run_in_threadpool(_export_job, request, job_id)
    directory = Path(job["result"].get("directory", "")) if job["status"] == "done" else None
    if directory is None or not directory.is_dir():
        raise HTTPException(404)
    await run_in_threadpool(audit.log, _engine(request), auth.user.id, "export_download", school_id=job["school_id"],
                            detail=f"export {job_id}: {job['result'].get('photos', 0)} photos")
    return StreamingResponse(_zip_stream(directory), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{directory.name}.zip"', "Cache-Control": "no-store"})


# ---- errata

@router.get("/errata")
async def errata_page(request: Request, auth: Viewer) -> Response:
    status = request.query_params.get("status") or None
    status = status if status in errata.STATUSES else None
    page = int_arg(request.query_params.get("page"))

    def load(conn):
        rows, pg = errata.queue(conn, status=status, page=page)
        return rows, pg, errata.counts(conn)

    rows, pg, counts = await _read(request, load)
    return await render(request, "staff_errata.html", {"rows": rows, "pg": pg, "counts": counts, "status": status,
                                                        "statuses": errata.STATUSES})


@router.get("/errata/{erratum_id}")
async def erratum_page(request: Request, erratum_id: int, auth: Viewer) -> Response:
    row = await _read(request, errata.one, erratum_id)
    if row is None:
        raise HTTPException(404)
    return await render(request, "staff_erratum.html", {"e": row, "statuses": errata.STATUSES})


@router.post("/errata/{erratum_id}")
async def erratum_update(request: Request, erratum_id: int, auth: Operator) -> Response:
    form = await request.form()
    status = str(form.get("status", ""))
    if status not in errata.STATUSES:
        raise HTTPException(400)
    if not await run_in_threadpool(errata.set_status, _engine(request), erratum_id, status,
                                   str(form.get("staff_note", ""))[:500], auth.user.id):
        raise HTTPException(404)
    return redirect(f"/staff/errata/{erratum_id}")


# ---- the access log

@router.get("/access-log")
async def access_log_page(request: Request, auth: Operator) -> Response:
    page = int_arg(request.query_params.get("page"))
    who, school = request.query_params.get("user") or None, request.query_params.get("school") or None
    rows, pg = await _read(request, lambda c: audit.entries(c, page, 50, who, school))
    return await render(request, "staff_access_log.html", {"rows": rows, "pg": pg, "who": who or "",
                                                            "school": school or ""})

