"""The queries behind the live board, the missing list and proof-reading (``benchmarks/centre_pages.py`` times them).

The board's per-school numbers come from the tally (:mod:`centre.tally`), kept up to date incrementally; the
rest is bounded by a page or by one school's family, and runs on an index: ``students (school_id,
class_name)``, ``student_keys (school_id, kind, key)`` / ``(student_id)``, ``captures (identity_kind,
identity_key)`` and ``captures (kit_id, received_at)``. A student counts as shot when a stored capture (not a QC
reject) carries one of their keys; a retake is a student with more than one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, exists, func, literal, or_, select

from .db import captures, kit_schools, kits, schools, student_keys, students, tally_schools, utcnow
from .rosters import subtree
from .selection import selected

STALE = dt.timedelta(minutes=5)  # a kit silent this long is shown as not reporting


@dataclass(frozen=True)
class Page:
    number: int  # 1-based
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def page_of(number: int, size: int, total: int) -> Page:
    pages = max(1, -(-total // size))
    return Page(min(max(1, number), pages), size, total)


# ---- kits

def kit_rows(conn: Connection, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every active kit with its latest heartbeat's numbers and the captures it sent in the last hour."""
    now = now or utcnow()
    rows = conn.execute(select(kits.c.id, kits.c.name, kits.c.last_seen_at, kits.c.last_heartbeat, kits.c.revoked_at)
                        .order_by(kits.c.name)).all()
    ids = [r.id for r in rows]
    recent = dict(conn.execute(select(captures.c.kit_id, func.count())
                               .where(captures.c.kit_id.in_(ids), captures.c.received_at >= now - dt.timedelta(hours=1))
                               .group_by(captures.c.kit_id)).all()) if ids else {}
    assigned: dict[int, list[str]] = {}
    for kit_id, code in conn.execute(select(kit_schools.c.kit_id, schools.c.code)
                                     .join(schools, schools.c.id == kit_schools.c.school_id).order_by(schools.c.code)):
        assigned.setdefault(kit_id, []).append(code)
    out = []
    for r in rows:
        hb = json.loads(r.last_heartbeat) if r.last_heartbeat else {}
        backlog = hb.get("backlog") or {}
        out.append({
            "name": r.name, "revoked": r.revoked_at is not None, "last_seen_at": r.last_seen_at,
            "stale": r.last_seen_at is None or now - r.last_seen_at > STALE,
            "backlog": backlog.get("bundles"), "backlog_bytes": backlog.get("bytes"),
            "oldest_pending_s": backlog.get("oldest_pending_age_s"), "disk_free_mb": hb.get("disk_free_mb"),
            "cpu_temp_c": hb.get("cpu_temp_c"), "camera_failures": hb.get("camera_failures_since_start"),
            "software": hb.get("software_version"), "last_shot_at": hb.get("last_shot_at"),
            "captures_last_hour": recent.get(r.id, 0), "schools": assigned.get(r.id, []),
        })
    return out


# ---- schools

def school_rows(conn: Connection, page: int = 1, size: int = 25, search: str = "") -> tuple[list[dict], Page]:
    """A page of schools and sites (ordered by main school, then code) with students / shot / missing / retakes,
    from the tally (:mod:`centre.tally`; call ``tally.refresh`` first)."""
    parent = schools.alias("parent")
    where = []
    if search:
        like = f"%{search.strip()}%"
        where.append(or_(schools.c.code.ilike(like), schools.c.name.ilike(like)))
    total = conn.execute(select(func.count()).select_from(schools).where(*where)).scalar_one()
    pg = page_of(page, size, total)
    root_code = func.coalesce(parent.c.code, schools.c.code)
    rows = conn.execute(select(schools.c.id, schools.c.code, schools.c.name, parent.c.code.label("parent"),
                               tally_schools.c.students, tally_schools.c.shot, tally_schools.c.retakes)
                        .outerjoin(parent, parent.c.id == schools.c.parent_id)
                        .outerjoin(tally_schools, tally_schools.c.school_id == schools.c.id).where(*where)
                        .order_by(root_code, schools.c.parent_id.is_not(None), schools.c.code)
                        .limit(pg.size).offset(pg.offset)).all()
    out = []
    for r in rows:
        n, s, rt = r.students or 0, r.shot or 0, r.retakes or 0
        out.append({"id": r.id, "code": r.code, "name": r.name, "parent": r.parent, "students": n, "shot": s,
                    "missing": n - s, "retakes": rt, "shot_pct": _pct(s, n), "retake_pct": _pct(rt, s)})
    return out, pg


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def totals(conn: Connection) -> dict[str, int]:
    """Centre-wide numbers for the board's header (from the tally): schools, students, shot, active kits."""
    students_n, shot = conn.execute(select(func.coalesce(func.sum(tally_schools.c.students), 0),
                                           func.coalesce(func.sum(tally_schools.c.shot), 0))).one()
    return {"schools": conn.execute(select(func.count()).select_from(schools)).scalar_one(),
            "students": int(students_n), "shot": int(shot),
            "kits": conn.execute(select(func.count()).select_from(kits).where(kits.c.revoked_at.is_(None)))
            .scalar_one()}


# ---- one school's students

def _has_capture():
    return exists(select(literal(1)).select_from(student_keys)
                  .join(captures, and_(captures.c.identity_kind == student_keys.c.kind,
                                       captures.c.identity_key == student_keys.c.key))
                  .where(student_keys.c.student_id == students.c.id, captures.c.kind == "capture"))


def missing(conn: Connection, school_id: int, page: int = 1, size: int = 50,
            class_name: str | None = None) -> tuple[list[Any], Page]:
    """A page of the family's students with no stored capture (the make-up list), by school, class and line.

    One pass finds the ids in order (an index-only anti-join per student), the page's rows come by id."""
    family = subtree(conn, school_id)
    where = [students.c.school_id.in_(family), ~_has_capture()]
    if class_name is not None:
        where.append(students.c.class_name == class_name)
    ids = conn.execute(select(students.c.id).join(schools, schools.c.id == students.c.school_id).where(*where)
                       .order_by(schools.c.code, students.c.class_name, students.c.line)).scalars().all()
    pg = page_of(page, size, len(ids))
    chosen = ids[pg.offset:pg.offset + pg.size]
    if not chosen:
        return [], pg
    rows = conn.execute(select(students.c.id, schools.c.code.label("school"), students.c.class_name,
                               students.c.major, students.c.student_no, students.c.name, students.c.line)
                        .join(schools, schools.c.id == students.c.school_id).where(students.c.id.in_(chosen))
                        .order_by(schools.c.code, students.c.class_name, students.c.line)).all()
    return rows, pg


def classes(conn: Connection, school_id: int) -> list[tuple[str, str, int]]:
    """(school code, class, students) of the family, for the proof-reading menu."""
    family = subtree(conn, school_id)
    return [tuple(r) for r in conn.execute(
        select(schools.c.code, students.c.class_name, func.count())
        .join(schools, schools.c.id == students.c.school_id).where(students.c.school_id.in_(family))
        .group_by(schools.c.code, students.c.class_name).order_by(schools.c.code, students.c.class_name))]


def class_students(conn: Connection, school_id: int, code: str, class_name: str, page: int = 1,
                   size: int = 40) -> tuple[list[dict[str, Any]], Page]:
    """A page of one class's students with their selected capture (None when there is none)."""
    family = subtree(conn, school_id)
    sid = conn.execute(select(schools.c.id).where(schools.c.code == code, schools.c.id.in_(family))).scalar()
    if sid is None:
        return [], page_of(1, size, 0)
    where = [students.c.school_id == sid, students.c.class_name == class_name]
    total = conn.execute(select(func.count()).select_from(students).where(*where)).scalar_one()
    pg = page_of(page, size, total)
    rows = conn.execute(select(students.c.id, students.c.student_no, students.c.name, students.c.class_name,
                               students.c.major).where(*where).order_by(students.c.line)
                        .limit(pg.size).offset(pg.offset)).all()
    ids = [r.id for r in rows]
    caps: dict[int, list[Any]] = {}
    seen: set[tuple[int, str]] = set()
    if ids:
        for row in conn.execute(select(student_keys.c.student_id, captures)
                                .join(captures, and_(captures.c.identity_kind == student_keys.c.kind,
                                                     captures.c.identity_key == student_keys.c.key))
                                .where(student_keys.c.student_id.in_(ids), captures.c.kind == "capture")):
            if (row.student_id, row.capture_id) not in seen:
                seen.add((row.student_id, row.capture_id))
                caps.setdefault(row.student_id, []).append(row)
    out = [{"id": r.id, "student_no": r.student_no, "name": r.name, "class_name": r.class_name, "major": r.major,
            "capture": selected(caps.get(r.id, [])), "captures": len(caps.get(r.id, []))} for r in rows]
    return out, pg


def capture_owner(conn: Connection, capture_id: str, within: list[int] | None = None) -> tuple[Any, Any] | None:
    """(capture row, student row with school code) of a stored capture whose student is on a roster (of a school
    in ``within``, when given), or None."""
    cap = conn.execute(select(captures).where(captures.c.capture_id == capture_id,
                                              captures.c.kind == "capture")).first()
    if cap is None:
        return None
    st = conn.execute(select(students.c.id, students.c.school_id, students.c.class_name, students.c.student_no,
                             students.c.name, schools.c.code.label("school"))
                      .join(student_keys, student_keys.c.student_id == students.c.id)
                      .join(schools, schools.c.id == students.c.school_id)
                      .where(student_keys.c.kind == cap.identity_kind, student_keys.c.key == cap.identity_key,
                             *([students.c.school_id.in_(within)] if within is not None else []))
                      .order_by(students.c.id).limit(1)).first()
    return (cap, st) if st is not None else None
