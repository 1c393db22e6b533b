"""Errata (§五): a school's corrections and reprint requests, and the centre's queue of them.

A school contact files them while proof-reading — a photo marked wrong / missing / damaged (§五.1, the reprint
request), or a data correction (§五.2, Annex 3's errata table: field, wrong value, right value) — one at a time on
the page, or as a CSV errata table, which is checked line by line and refused whole when any line is bad. Staff
move each through ``new → in_progress → sent_to_bureau → done`` (or ``rejected``) with a note. Nothing is emailed:
the queue is the channel. Each row keeps a copy of who the student was, since a roster load replaces students.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from .board import Page, page_of
from .db import errata, schools, student_keys, students, users, utcnow

KINDS = ("data", "photo_wrong", "photo_missing", "photo_damaged")
FIELDS = ("name", "id_number", "student_no", "class", "major", "school", "photo", "other")
STATUSES = ("new", "in_progress", "sent_to_bureau", "done", "rejected")
MAX_VALUE = 500
HEADERS = {  # the errata table's columns (Annex 3), English or Chinese
    "student_no": "student_no", "学号": "student_no", "id_number": "id_number", "身份证号": "id_number",
    "身份证号码": "id_number", "collection_code": "collection_code", "图像采集码": "collection_code",
    "field": "field", "字段": "field", "错误项": "field", "wrong_value": "wrong_value", "错误内容": "wrong_value",
    "原内容": "wrong_value", "right_value": "right_value", "正确内容": "right_value", "更正内容": "right_value",
    "note": "note", "备注": "note",
}
FIELD_ALIASES = {"姓名": "name", "身份证号": "id_number", "学号": "student_no", "班级": "class", "专业": "major",
                 "学校": "school", "照片": "photo", "其他": "other"}


class ErrataRefused(ValueError):
    """A bad errata table: ``problems`` lists (line, message key, detail); nothing was filed."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        super().__init__(f"{len(problems)} bad lines")
        self.problems = problems


@dataclass(frozen=True)
class StudentRef:
    id: int
    school_id: int
    ref: str
    label: str


def student_in(conn: Connection, family: list[int], student_id: int) -> StudentRef | None:
    """The student if they belong to a school of ``family`` (None otherwise: another school's student)."""
    row = conn.execute(select(students.c.id, students.c.school_id, students.c.student_no, students.c.name,
                              students.c.class_name)
                       .where(students.c.id == student_id, students.c.school_id.in_(family))).first()
    return _ref(conn, row) if row else None


def _ref(conn: Connection, row: Any) -> StudentRef:
    ref = row.student_no
    if not ref:
        keys = dict(conn.execute(select(student_keys.c.kind, student_keys.c.key)
                                 .where(student_keys.c.student_id == row.id)).all())
        ref = keys.get("id_number") or keys.get("collection_code") or keys.get("card_uid") or f"#{row.id}"
    return StudentRef(row.id, row.school_id, ref, " ".join(x for x in (row.class_name, row.name) if x))


def file_one(engine: Engine, user_id: int, student: StudentRef, kind: str, field: str = "", wrong: str = "",
             right: str = "", note: str = "", capture_id: str | None = None) -> int:
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(errata.insert().values(
            school_id=student.school_id, filed_by=user_id, kind=kind, student_ref=student.ref[:200],
            student=student.label[:300], capture_id=capture_id, field=field, wrong_value=wrong[:MAX_VALUE],
            right_value=right[:MAX_VALUE], note=note[:MAX_VALUE], status="new", staff_note="", created_at=now,
            updated_at=now)).inserted_primary_key[0]


def check_data_fields(field: str, wrong: str, right: str) -> dict[str, str]:
    """Field errors (message keys) of one data correction."""
    errors = {}
    if field not in FIELDS:
        errors["field"] = "unknown_field"
    if not right.strip():
        errors["right"] = "required"
    elif right.strip() == wrong.strip():
        errors["right"] = "same_as_wrong"
    if len(wrong) > MAX_VALUE:
        errors["wrong"] = "too_long"
    if len(right) > MAX_VALUE:
        errors["right"] = "too_long"
    return errors


def _decode(data: bytes) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ErrataRefused([(1, "not_text", "")])


def file_table(engine: Engine, user_id: int, family: list[int], data: bytes) -> int:
    """File every line of an errata table CSV, or none (ErrataRefused with every bad line); returns how many."""
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise ErrataRefused([(1, "empty_table", "")]) from None
    cols = [HEADERS.get(h.strip(), HEADERS.get(h.strip().lower())) for h in header]
    problems: list[tuple[int, str, str]] = []
    unknown = [h for h, c in zip(header, cols, strict=True) if c is None]
    if unknown:
        problems.append((1, "unknown_columns", ", ".join(unknown)))
    if not {"student_no", "id_number", "collection_code"} & set(cols):
        problems.append((1, "no_student_column", ""))
    if not {"field", "right_value"} <= set(cols):
        problems.append((1, "no_correction_columns", ""))
    if problems:
        raise ErrataRefused(problems)
    rows: list[tuple[StudentRef, str, str, str, str]] = []
    with engine.connect() as conn:
        try:
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > len(cols):
                    problems.append((line, "too_many_cells", str(len(cells))))
                    continue
                row = {c: v.strip() for c, v in zip(cols, cells, strict=False) if c}
                who = find_student(conn, family, row)
                if who is None:
                    problems.append((line, "no_such_student", row.get("student_no") or row.get("id_number")
                                     or row.get("collection_code", "")[:8]))
                    continue
                field = FIELD_ALIASES.get(row.get("field", ""), row.get("field", "").lower())
                bad = check_data_fields(field, row.get("wrong_value", ""), row.get("right_value", ""))
                problems += [(line, f"{k}_{v}", row.get("field", "") if k == "field" else "") for k, v in bad.items()]
                if not bad:
                    rows.append((who, field, row.get("wrong_value", ""), row.get("right_value", ""),
                                 row.get("note", "")))
        except csv.Error as exc:
            problems.append((reader.line_num, "not_csv", str(exc)[:100]))
    if problems:
        raise ErrataRefused(problems)
    if not rows:
        raise ErrataRefused([(1, "empty_table", "")])
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(errata.insert(), [
            {"school_id": w.school_id, "filed_by": user_id, "kind": "data", "student_ref": w.ref[:200],
             "student": w.label[:300], "capture_id": None, "field": f, "wrong_value": a[:MAX_VALUE],
             "right_value": b[:MAX_VALUE], "note": n[:MAX_VALUE], "status": "new", "staff_note": "",
             "created_at": now, "updated_at": now} for w, f, a, b, n in rows])
    return len(rows)


def find_student(conn: Connection, family: list[int], row: dict[str, str]) -> StudentRef | None:
    q = select(students.c.id, students.c.school_id, students.c.student_no, students.c.name, students.c.class_name)
    for kind in ("id_number", "collection_code"):
        if row.get(kind):
            hit = conn.execute(q.join(student_keys, student_keys.c.student_id == students.c.id)
                               .where(student_keys.c.school_id.in_(family), student_keys.c.kind == kind,
                                      student_keys.c.key == row[kind])).first()
            return _ref(conn, hit) if hit else None
    if row.get("student_no"):
        hits = conn.execute(q.where(students.c.school_id.in_(family), students.c.student_no == row["student_no"])
                            .limit(2)).all()
        return _ref(conn, hits[0]) if len(hits) == 1 else None
    return None


def queue(conn: Connection, *, status: str | None = None, family: list[int] | None = None, page: int = 1,
          size: int = 50) -> tuple[list[Any], Page]:
    """Errata newest first, optionally of one status, or of one school's family."""
    where = []
    if status:
        where.append(errata.c.status == status)
    if family is not None:
        where.append(errata.c.school_id.in_(family))
    total = conn.execute(select(func.count()).select_from(errata).where(*where)).scalar_one()
    pg = page_of(page, size, total)
    filer = users.alias("filer")
    rows = conn.execute(select(errata, schools.c.code.label("school"), filer.c.username.label("filed_by_name"))
                        .join(schools, schools.c.id == errata.c.school_id)
                        .join(filer, filer.c.id == errata.c.filed_by).where(*where)
                        .order_by(errata.c.created_at.desc(), errata.c.id.desc())
                        .limit(pg.size).offset(pg.offset)).all()
    return rows, pg


def one(conn: Connection, erratum_id: int, family: list[int] | None = None) -> Any | None:
    where = [errata.c.id == erratum_id]
    if family is not None:
        where.append(errata.c.school_id.in_(family))
    return conn.execute(select(errata, schools.c.code.label("school"))
                        .join(schools, schools.c.id == errata.c.school_id).where(*where)).first()


def set_status(engine: Engine, erratum_id: int, status: str, note: str, user_id: int) -> bool:
    if status not in STATUSES:
        return False
    with engine.begin() as conn:
        return bool(conn.execute(update(errata).where(errata.c.id == erratum_id).values(
            status=status, staff_note=note[:MAX_VALUE], handled_by=user_id, updated_at=utcnow())).rowcount)


def counts(conn: Connection) -> dict[str, int]:
    return dict(conn.execute(select(errata.c.status, func.count()).group_by(errata.c.status)).all())

