"""Which photo is a student's: the selected capture per student, and progress per school and class.

A student's captures are the stored ``capture`` bundles (not rejects) whose identity matches one of the
student's keys. The **selected** one is the latest captured among those no other capture of theirs
``supersedes`` (a retake names the frame it replaces; a later session's shot simply comes later).
These are the queries issue 15's board and missing list run; ``student_keys (school_id, kind, key)`` and
``captures (identity_kind, identity_key)`` are the indexes they use.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, select

from .db import captures, kits, schools, student_keys, students
from .rosters import subtree


@dataclass(frozen=True)
class Student:
    id: int
    school: str
    class_name: str
    major: str
    student_no: str
    name: str
    keys: dict[str, str]  # kind -> clear key


def family_students(conn: Connection, school_id: int) -> list[Student]:
    family = subtree(conn, school_id)
    rows = conn.execute(select(students.c.id, schools.c.code, students.c.class_name, students.c.major,
                               students.c.student_no, students.c.name)
                        .join(schools, schools.c.id == students.c.school_id)
                        .where(students.c.school_id.in_(family))
                        .order_by(schools.c.code, students.c.class_name, students.c.line)).all()
    keys: dict[int, dict[str, str]] = {}
    for sid, kind, key in conn.execute(select(student_keys.c.student_id, student_keys.c.kind, student_keys.c.key)
                                       .where(student_keys.c.school_id.in_(family))):
        keys.setdefault(sid, {})[kind] = key
    return [Student(*r, keys=keys.get(r[0], {})) for r in rows]


def captures_by_student(conn: Connection, school_id: int) -> dict[int, list[Any]]:
    """Every stored capture (not a reject) of each student of the school and its sites."""
    family = subtree(conn, school_id)
    q = (select(student_keys.c.student_id, captures, kits.c.name.label("kit_name"))
         .join(captures, and_(captures.c.identity_kind == student_keys.c.kind,
                              captures.c.identity_key == student_keys.c.key))
         .join(kits, kits.c.id == captures.c.kit_id)
         .where(student_keys.c.school_id.in_(family), captures.c.kind == "capture"))
    out: dict[int, list[Any]] = {}
    seen: set[tuple[int, str]] = set()
    for row in conn.execute(q):
        if (row.student_id, row.capture_id) not in seen:  # a student matched by two keys: once
            seen.add((row.student_id, row.capture_id))
            out.setdefault(row.student_id, []).append(row)
    return out


def selected(caps: list[Any]) -> Any | None:
    """The student's selected capture (module docstring), or None."""
    replaced = {c.supersedes for c in caps if c.supersedes}
    live = [c for c in caps if c.capture_id not in replaced] or caps
    if not live:
        return None
    return max(live, key=lambda c: (c.captured_at_utc or dt.datetime.min, c.capture_id))


@dataclass
class ClassProgress:
    school: str
    class_name: str
    students: int = 0
    photographed: int = 0
    retakes: int = 0  # students with more than one capture

    @property
    def missing(self) -> int:
        return self.students - self.photographed


def progress(conn: Connection, school_id: int) -> list[ClassProgress]:
    """Per school (the school and its sites) and class: students, photographed, missing, retakes."""
    family = subtree(conn, school_id)
    out: dict[tuple[str, str], ClassProgress] = {}
    for code, cls, n in conn.execute(select(schools.c.code, students.c.class_name, func.count())
                                     .join(schools, schools.c.id == students.c.school_id)
                                     .where(students.c.school_id.in_(family))
                                     .group_by(schools.c.code, students.c.class_name)):
        out[(code, cls)] = ClassProgress(code, cls, n)
    per_student = (select(student_keys.c.student_id, func.count(func.distinct(captures.c.capture_id)).label("n"))
                   .join(captures, and_(captures.c.identity_kind == student_keys.c.kind,
                                        captures.c.identity_key == student_keys.c.key))
                   .where(student_keys.c.school_id.in_(family), captures.c.kind == "capture")
                   .group_by(student_keys.c.student_id).subquery())
    for code, cls, shot, retakes in conn.execute(
            select(schools.c.code, students.c.class_name, func.count(),
                   func.sum(func.cast(per_student.c.n > 1, students.c.id.type)))
            .join(students, students.c.id == per_student.c.student_id)
            .join(schools, schools.c.id == students.c.school_id)
            .group_by(schools.c.code, students.c.class_name)):
        p = out[(code, cls)]
        p.photographed, p.retakes = shot, int(retakes or 0)
    return [out[k] for k in sorted(out)]
