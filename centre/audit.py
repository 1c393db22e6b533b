"""The access log: who viewed or exported which student's photo, when (a staff page lists it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, func, select

from .board import Page, page_of
from .db import access_log, schools, users, utcnow


def log(engine: Engine, user_id: int, action: str, *, school_id: int | None = None, student_id: int | None = None,
        student: str = "", capture_id: str | None = None, detail: str = "") -> None:
    with engine.begin() as conn:
        conn.execute(access_log.insert().values(at=utcnow(), user_id=user_id, action=action, school_id=school_id,
                                                student_id=student_id, student=student[:300], capture_id=capture_id,
                                                detail=detail[:300]))


def log_many(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Many rows at once (an export logs one per student photo it wrote)."""
    if rows:
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(access_log.insert(), [{"at": now, "student_id": None, "student": "", "capture_id": None,
                                                "detail": "", "school_id": None, **r} for r in rows])


def entries(conn: Connection, page: int = 1, size: int = 50, username: str | None = None,
            school: str | None = None) -> tuple[list[Any], Page]:
    where = []
    if username:
        where.append(users.c.username == username)
    if school:
        where.append(schools.c.code == school)
    base = (select(access_log, users.c.username, schools.c.code.label("school"))
            .join(users, users.c.id == access_log.c.user_id)
            .outerjoin(schools, schools.c.id == access_log.c.school_id).where(*where))
    total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    pg = page_of(page, size, total)
    rows = conn.execute(base.order_by(access_log.c.at.desc(), access_log.c.id.desc())
                        .limit(pg.size).offset(pg.offset)).all()
    return rows, pg
