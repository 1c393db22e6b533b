"""The school contact's pages: progress, roster upload, missing list, the make-up poster, proof-reading, errata.

Everything is scoped to the account's school and its joint-programme sites (``subtree``): an id of another
school's student, capture, job or erratum is answered 404, exactly as an id that does not exist.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .. import board, errata, jobs
from ..db import roster_versions, schools
from ..rosters import subtree
from ..selection import progress
from .render import int_arg, redirect, render
from .rosterform import check_roster
from .security import Auth, Contact, csrf_guard

router = APIRouter(prefix="/school", dependencies=[Depends(csrf_guard)])
MARKS = ("photo_wrong", "photo_missing", "photo_damaged")


def _ctx(request: Request, auth: Auth) -> tuple[Any, list[int], Any]:
    """(centre, the family's school ids, the school row) for this account."""
    centre = request.app.state.centre
    with centre.engine.connect() as conn:
        family = subtree(conn, auth.user.school_id)
        school = conn.execute(select(schools).where(schools.c.id == auth.user.school_id)).first()
    return centre, family, school


@router.get("")
async def overview(request: Request, auth: Contact) -> Response:
    centre, _family, school = await run_in_threadpool(_ctx, request, auth)

    def load():
        with centre.engine.connect() as conn:
            rows = progress(conn, school.id)
            versions = conn.execute(select(roster_versions.c.version, roster_versions.c.rows,
                                           roster_versions.c.loaded_at, roster_versions.c.source_name)
                                    .where(roster_versions.c.school_id == school.id)
                                    .order_by(roster_versions.c.version.desc()).limit(5)).all()
            sites = conn.execute(select(schools.c.code, schools.c.name).where(schools.c.parent_id == school.id)
                                 .order_by(schools.c.code)).all()
        return rows, versions, sites

    rows, versions, sites = await run_in_threadpool(load)
    total = {f: sum(getattr(r, f) for r in rows) for f in ("students", "photographed", "missing", "retakes")}
    return await render(request, "school_home.html", {"school": school, "rows": rows, "total": total,
                                                       "versions": versions, "sites": sites})


@router.get("/roster")
async def roster_form(request: Request, auth: Contact) -> Response:
    _centre, _family, school = await run_in_threadpool(_ctx, request, auth)
    return await render(request, "school_roster.html", {"school": school, "problems": None, "errors": {}})


@router.post("/roster")
async def roster_upload(request: Request, auth: Contact) -> Response:
    centre, _family, school = await run_in_threadpool(_ctx, request, auth)
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await render(request, "school_roster.html", {"school": school, "problems": None,
                                                            "errors": {"file": "err.required"}}, status=400)
    fd, name = tempfile.mkstemp(prefix="roster-", suffix=".csv")
    path = Path(name)
    with os.fdopen(fd, "wb") as fh:
        while chunk := await upload.read(1 << 20):
            fh.write(chunk)
    report = await run_in_threadpool(check_roster, centre.engine, school.code, path)
    if report.problems:
        path.unlink(missing_ok=True)
        return await render(request, "school_roster.html", {"school": school, "problems": report.problems,
                                                            "filename": upload.filename, "errors": {}}, status=400)
    named = path.with_name(f"{os.urandom(4).hex()}-{Path(upload.filename).name[:100] or 'roster.csv'}")
    path.rename(named)
    job_id = await run_in_threadpool(jobs.start_roster, centre.engine, school.code, school.id, auth.user.id, named)
    return redirect(f"/school/jobs/{job_id}")


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: int, auth: Contact) -> Response:
    centre, family, school = await run_in_threadpool(_ctx, request, auth)
    found = await run_in_threadpool(jobs.get, centre.engine, job_id)
    if found is None or found["school_id"] not in family or found["kind"] != "roster":
        raise HTTPException(404)
    return await render(request, "job.html", {"job": found, "school": school, "back": "/school"})


@router.get("/missing")
async def missing(request: Request, auth: Contact) -> Response:
    centre, _family, school = await run_in_threadpool(_ctx, request, auth)
    page = int_arg(request.query_params.get("page"))

    def load():
        with centre.engine.connect() as conn:
            return board.missing(conn, school.id, page)

    rows, pg = await run_in_threadpool(load)
    return await render(request, "missing.html", {"school": school, "rows": rows, "pg": pg, "base": "/school"})


def poster_url(request: Request, code: str) -> str:
    base = request.app.state.centre.config.public_url or str(request.base_url)
    return base.rstrip("/") + f"/m/{code}"


@router.get("/poster")
async def poster(request: Request, auth: Contact) -> Response:
    _centre, _family, school = await run_in_threadpool(_ctx, request, auth)
    return await render(request, "school_poster.html", {"school": school, "url": poster_url(request, school.code)})


@router.get("/poster.png")
async def poster_png(request: Request, auth: Contact) -> Response:
    import segno

    _centre, _family, school = await run_in_threadpool(_ctx, request, auth)
    buf = io.BytesIO()
    segno.make(poster_url(request, school.code), error="m").save(buf, kind="png", scale=12, border=4)
    return Response(buf.getvalue(), media_type="image/png",
                    headers={"Content-Disposition": f'attachment; filename="makeup-{school.code}.png"'})


@router.get("/proof")
async def proof(request: Request, auth: Contact) -> Response:
    centre, _family, school = await run_in_threadpool(_ctx, request, auth)
    code, cls = request.query_params.get("school"), request.query_params.get("class")
    page = int_arg(request.query_params.get("page"))

    def load():
        with centre.engine.connect() as conn:
            menu = board.classes(conn, school.id)
            if code is None or cls is None:
                return menu, [], None
            rows, pg = board.class_students(conn, school.id, code, cls, page)
            return menu, rows, pg

    menu, rows, pg = await run_in_threadpool(load)
    if code is not None and cls is not None and (code, cls) not in {(m[0], m[1]) for m in menu}:
        raise HTTPException(404)
    return await render(request, "school_proof.html", {"school": school, "menu": menu, "rows": rows, "pg": pg,
                                                        "code": code, "cls": cls, "marks": MARKS})


@router.post("/proof/{student_id}/mark")
async def mark(request: Request, student_id: int, auth: Contact) -> Response:
    centre, family, _school = await run_in_threadpool(_ctx, request, auth)
    form = await request.form()
    kind = str(form.get("kind", ""))

    def find():
        with centre.engine.connect() as conn:
            return errata.student_in(conn, family, student_id)

    student = await run_in_threadpool(find)
    if student is None:
        raise HTTPException(404)
    if kind not in MARKS:
        raise HTTPException(400)
    capture = str(form.get("capture_id", ""))[:120] or None
    await run_in_threadpool(errata.file_one, centre.engine, auth.user.id, student, kind, "photo", "", "",
                            str(form.get("note", ""))[:500], capture)
    back = str(form.get("back", "/school/errata"))
    return redirect(back if back.startswith("/school/") else "/school/errata")


async def _errata_page(request: Request, auth: Auth, errors: dict | None = None, values: dict | None = None,
                       problems: list | None = None, status: int = 200, filed: int | None = None) -> Response:
    centre, family, school = await run_in_threadpool(_ctx, request, auth)
    page = int_arg(request.query_params.get("page"))

    def load():
        with centre.engine.connect() as conn:
            return errata.queue(conn, family=family, page=page)

    rows, pg = await run_in_threadpool(load)
    return await render(request, "school_errata.html", {
        "school": school, "rows": rows, "pg": pg, "errors": errors or {}, "values": values or {},
        "problems": problems, "fields": errata.FIELDS, "filed": filed}, status=status)


@router.get("/errata")
async def errata_page(request: Request, auth: Contact) -> Response:
    return await _errata_page(request, auth, filed=int_arg(request.query_params.get("filed"), 0, 0))


@router.post("/errata")
async def errata_file(request: Request, auth: Contact) -> Response:
    centre, family, _school = await run_in_threadpool(_ctx, request, auth)
    form = await request.form()
    values = {k: str(form.get(k, ""))[:600] for k in ("student", "field", "wrong", "right", "note")}
    errors = {k: f"err.{v}" for k, v in errata.check_data_fields(values["field"], values["wrong"],
                                                                values["right"]).items()}

    def find():
        ref = values["student"].strip()
        if not ref:
            return None
        with centre.engine.connect() as conn:
            return errata.find_student(conn, family, {"id_number" if len(ref) == 18 else "student_no": ref})

    student = await run_in_threadpool(find)
    if student is None:
        errors["student"] = "err.no_such_student" if values["student"].strip() else "err.required"
    if errors:
        return await _errata_page(request, auth, errors, values, status=400)
    await run_in_threadpool(errata.file_one, centre.engine, auth.user.id, student, "data", values["field"],
                            values["wrong"], values["right"], values["note"])
    return redirect("/school/errata?filed=1")


@router.post("/errata/table")
async def errata_table(request: Request, auth: Contact) -> Response:
    centre, family, _school = await run_in_threadpool(_ctx, request, auth)
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await _errata_page(request, auth, {"file": "err.required"}, status=400)
    data = await upload.read()
    try:
        n = await run_in_threadpool(errata.file_table, centre.engine, auth.user.id, family, data)
    except errata.ErrataRefused as exc:
        return await _errata_page(request, auth, problems=exc.problems, status=400)
    return redirect(f"/school/errata?filed={n}")
