"""Background jobs started from the web pages: exports (with progress) and roster loads (Argon2id per key).

A job is a ``web_jobs`` row (``queued → running → done | failed``, ``done`` of ``total``) and a thread in the
process that took the request; the pages read the row, so any process can show it. An export is
:func:`centre.export.export` itself, its progress counted as it reads each derivative from the store; a row
left ``running`` by a process that died stops moving and is shown as interrupted after :data:`STALE`.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update

from .audit import log_many
from .db import schools, utcnow, web_jobs
from .errors import CentreError
from .rosters import subtree
from .selection import captures_by_student, family_students, selected
from .storage import Storage

log = logging.getLogger("capturekit.centre.jobs")
STALE = dt.timedelta(minutes=2)
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="centre-job")


def _new(engine: Engine, kind: str, school_id: int, user_id: int) -> int:
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(web_jobs.insert().values(kind=kind, school_id=school_id, user_id=user_id, status="queued",
                                                     total=0, done=0, result="{}", error="", created_at=now,
                                                     updated_at=now)).inserted_primary_key[0]


def _set(engine: Engine, job_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(web_jobs).where(web_jobs.c.id == job_id).values(updated_at=utcnow(), **values))


def get(engine: Engine, job_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(web_jobs, schools.c.code.label("school"))
                           .join(schools, schools.c.id == web_jobs.c.school_id).where(web_jobs.c.id == job_id)).first()
    return _view(row) if row else None


def _view(row: Any) -> dict[str, Any]:
    job = dict(row._mapping)
    job["result"] = json.loads(job["result"] or "{}")
    if job["status"] in ("queued", "running") and utcnow() - job["updated_at"] > STALE:
        job["status"] = "interrupted"
    job["percent"] = round(100 * job["done"] / job["total"]) if job["total"] else (100 if job["status"] == "done"
                                                                                   else 0)
    return job


def recent(engine: Engine, kind: str, page: int = 1, size: int = 20) -> tuple[list[dict[str, Any]], Any]:
    from .board import page_of

    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(web_jobs).where(web_jobs.c.kind == kind)).scalar_one()
        pg = page_of(page, size, total)
        rows = conn.execute(select(web_jobs, schools.c.code.label("school"))
                            .join(schools, schools.c.id == web_jobs.c.school_id).where(web_jobs.c.kind == kind)
                            .order_by(web_jobs.c.created_at.desc(), web_jobs.c.id.desc())
                            .limit(pg.size).offset(pg.offset)).all()
    return [_view(r) for r in rows], pg


# ---- exports

class _Counting:
    """The object store as export() sees it: each derivative read is one student done (flushed twice a second)."""

    def __init__(self, storage: Storage, engine: Engine, job_id: int) -> None:
        self._s, self._engine, self._job, self.n, self._flushed = storage, engine, job_id, 0, 0.0

    def get(self, key: str) -> bytes:
        data = self._s.get(key)
        self.n += 1
        if time.monotonic() - self._flushed > 0.5:
            self._flushed = time.monotonic()
            _set(self._engine, self._job, done=self.n)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


def export_dir(exports: Path, job_id: int, code: str) -> Path:
    from .export import file_name

    return exports / f"{job_id:06d}-{file_name(code)}"


def start_export(engine: Engine, storage: Storage, exports: Path, code: str, user_id: int) -> int:
    with engine.connect() as conn:
        school_id = conn.execute(select(schools.c.id).where(schools.c.code == code)).scalar()
    if school_id is None:
        raise CentreError(f"no school {code!r}")
    job_id = _new(engine, "export", school_id, user_id)
    _pool.submit(_run_export, engine, storage, exports, code, school_id, user_id, job_id)
    return job_id


def _run_export(engine: Engine, storage: Storage, exports: Path, code: str, school_id: int, user_id: int,
                job_id: int) -> None:
    from .export import export
    from .opener import until_opened

    try:
        until_opened(engine, 60.0)  # what kits have already delivered is opened first, by this process's opener
        with engine.connect() as conn:
            people = family_students(conn, school_id)
            caps = captures_by_student(conn, school_id)
            codes = dict(conn.execute(select(schools.c.code, schools.c.id)
                                      .where(schools.c.id.in_(subtree(conn, school_id)))).all())
        total = sum(1 for s in people if (p := selected(caps.get(s.id, []))) is not None and p.derivative_key)
        _set(engine, job_id, status="running", total=total)
        exports.mkdir(parents=True, exist_ok=True)
        directory = export_dir(exports, job_id, code)
        report = export(engine, _Counting(storage, engine, job_id), code, directory)  # type: ignore[arg-type]
        _log_export(engine, user_id, directory, code, codes, job_id)
        result = {"directory": str(directory), "students": report.students, "photos": report.photos,
                  "missing": report.missing, "problems": report.problems[:200]}
        _set(engine, job_id, status="done", done=total, result=json.dumps(result, ensure_ascii=False),
             finished_at=utcnow())
    except Exception as exc:  # the job row says what went wrong; the process carries on
        log.exception("export job %s", job_id)
        _set(engine, job_id, status="failed", error=str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__,
             finished_at=utcnow())


def _log_export(engine: Engine, user_id: int, directory: Path, code: str, codes: dict[str, int], job_id: int) -> None:
    from .export import file_name

    with open(directory / f"{file_name(code)}.csv", encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "ok"]
    log_many(engine, [{"user_id": user_id, "action": "export", "school_id": codes.get(r["school"]),
                       "student": " ".join(x for x in (r["class"], r["student_no"], r["name"]) if x),
                       "capture_id": r["capture_id"], "detail": f"export {job_id}"} for r in rows])


# ---- roster loads

def start_roster(engine: Engine, code: str, school_id: int, user_id: int, path: Path) -> int:
    job_id = _new(engine, "roster", school_id, user_id)
    _pool.submit(_run_roster, engine, code, user_id, path, job_id)
    return job_id


def _run_roster(engine: Engine, code: str, user_id: int, path: Path, job_id: int) -> None:
    from .rosters import load_roster

    stop = threading.Event()

    def keep_alive() -> None:  # Argon2id for every key can take minutes: the row shows it is alive
        while not stop.wait(20):
            _set(engine, job_id)

    ticker = threading.Thread(target=keep_alive, daemon=True)
    try:
        _set(engine, job_id, status="running")
        ticker.start()
        r = load_roster(engine, code, path)
        result = {"version": r.version, "rows": r.rows, "per_school": r.per_school, "keys": r.keys}
        _set(engine, job_id, status="done", total=r.rows, done=r.rows, result=json.dumps(result, ensure_ascii=False),
             finished_at=utcnow())
    except Exception as exc:
        log.warning("roster job %s: %s", job_id, exc)
        _set(engine, job_id, status="failed", error=str(exc)[:2000], finished_at=utcnow())
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            os.unlink(path)
