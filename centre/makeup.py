"""Make-up sessions (§四) and the students' registration for them, which issues the signed ``CKM1:`` code.

Data, not code: the **phases** (e.g. 2026 秋季, Sept–Oct; 2027 春季, Mar–Apr), the **hour blocks** (seeded with
§四's 08:30–11:30 and 14:30–17:30) and the **sessions** (a day, a block, a place, a capacity; open to every school
or to one). ``generate`` makes a phase's weekend sessions from the blocks.

Registration (:func:`register`) — the answer must tell nothing about other students:

- the student gives the identity key their school uses (ID number or CHSI collection code) and, with an ID
  number, their student number (学号; the name 姓名 when the roster has no student numbers): an ID number is
  known to many people, a student number is not on any ID card. A collection code is itself the secret (CHSI
  gives it to the student alone, ~300 bits), so it needs nothing more;
- every check that does not depend on the roster (the key's form, the session's existence, date and room) is
  made first and answered next to its field;
- then one answer, the same page for everybody: when the key **and** the second factor match one student, the
  code is on it; otherwise the page says the details do not match the school's roster — whether or not the key
  alone is on it (a right ID number with a wrong student number gets exactly what an unknown number gets). Both
  paths sign a code (the unmatched one is thrown away), so they take the same time. No code is ever signed for a
  key that is not on the roster: a QR that verifies means "on this school's roster";
- attempts are limited per address, per key and per school (``centre.throttle``), with the same answer for
  every key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, delete, func, select, update

from appliance import idnumber
from appliance.identity import Kind

from .db import (
    makeup_hours,
    makeup_phases,
    makeup_registrations,
    makeup_sessions,
    schools,
    student_keys,
    students,
    utcnow,
)
from .errors import CentreError
from .makeup_qr import issue
from .rosters import root_of, subtree

HHMM = "%H:%M"


def _hhmm(text: str) -> str:
    try:
        return dt.datetime.strptime(text.strip(), HHMM).strftime(HHMM)
    except ValueError:
        raise CentreError(f"time {text!r}: HH:MM") from None


# ---- phases, hours, sessions

def phases(conn: Connection) -> list[Any]:
    return conn.execute(select(makeup_phases).order_by(makeup_phases.c.starts_on)).all()


def hours(conn: Connection) -> list[Any]:
    return conn.execute(select(makeup_hours).order_by(makeup_hours.c.starts)).all()


def add_phase(engine: Engine, name: str, starts_on: dt.date, ends_on: dt.date) -> int:
    if not name.strip() or ends_on < starts_on:
        raise CentreError("phase: a name, and an end on or after its start")
    with engine.begin() as conn:
        return conn.execute(makeup_phases.insert().values(name=name.strip(), starts_on=starts_on, ends_on=ends_on,
                                                          created_at=utcnow())).inserted_primary_key[0]


def add_hours(engine: Engine, starts: str, ends: str) -> int:
    a, b = _hhmm(starts), _hhmm(ends)
    if b <= a:
        raise CentreError("hours: the end must be after the start")
    with engine.begin() as conn:
        return conn.execute(makeup_hours.insert().values(starts=a, ends=b)).inserted_primary_key[0]


def delete_hours(engine: Engine, hours_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(makeup_hours).where(makeup_hours.c.id == hours_id))


def add_session(engine: Engine, day: dt.date, starts: str, ends: str, place: str, capacity: int,
                school_id: int | None = None, phase_id: int | None = None) -> int:
    a, b = _hhmm(starts), _hhmm(ends)
    if b <= a or capacity < 1:
        raise CentreError("session: the end after the start, a capacity of at least 1")
    with engine.begin() as conn:
        return conn.execute(makeup_sessions.insert().values(
            phase_id=phase_id, day=day, starts=a, ends=b, place=place.strip(), capacity=capacity,
            school_id=school_id, created_at=utcnow())).inserted_primary_key[0]


def generate(engine: Engine, phase_id: int, place: str, capacity: int) -> int:
    """Sessions for every Saturday and Sunday of the phase, one per hour block (§四); returns how many."""
    with engine.connect() as conn:
        phase = conn.execute(select(makeup_phases).where(makeup_phases.c.id == phase_id)).first()
        blocks = hours(conn)
    if phase is None:
        raise CentreError(f"no phase {phase_id}")
    n, day = 0, phase.starts_on
    while day <= phase.ends_on:
        if day.weekday() >= 5:
            for b in blocks:
                add_session(engine, day, b.starts, b.ends, place, capacity, phase_id=phase_id)
                n += 1
        day += dt.timedelta(days=1)
    return n


def delete_session(engine: Engine, session_id: int) -> bool:
    """Remove a session nobody has registered for (False otherwise)."""
    with engine.begin() as conn:
        if conn.execute(select(makeup_registrations.c.id)
                        .where(makeup_registrations.c.session_id == session_id).limit(1)).first():
            return False
        return bool(conn.execute(delete(makeup_sessions).where(makeup_sessions.c.id == session_id)).rowcount)


def sessions(conn: Connection, *, school_id: int | None = None, upcoming_from: dt.date | None = None,
             page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], Any]:
    """Sessions by date with their registrations; for a school, those open to it (and its main school)."""
    from .board import page_of

    where = []
    if school_id is not None:
        root = root_of(conn, school_id)
        where.append(makeup_sessions.c.school_id.is_(None) | makeup_sessions.c.school_id.in_({school_id, root}))
    if upcoming_from is not None:
        where.append(makeup_sessions.c.day >= upcoming_from)
    total = conn.execute(select(func.count()).select_from(makeup_sessions).where(*where)).scalar_one()
    pg = page_of(page, size, total)
    taken = (select(makeup_registrations.c.session_id, func.count().label("n"))
             .where(makeup_registrations.c.replaced_at.is_(None))
             .group_by(makeup_registrations.c.session_id).subquery())
    rows = conn.execute(select(makeup_sessions, func.coalesce(taken.c.n, 0).label("registered"),
                               schools.c.code.label("school"))
                        .outerjoin(taken, taken.c.session_id == makeup_sessions.c.id)
                        .outerjoin(schools, schools.c.id == makeup_sessions.c.school_id).where(*where)
                        .order_by(makeup_sessions.c.day, makeup_sessions.c.starts, makeup_sessions.c.id)
                        .limit(pg.size).offset(pg.offset)).all()
    return [dict(r._mapping) for r in rows], pg


def registrations(conn: Connection, session_id: int, page: int = 1, size: int = 100) -> tuple[list[Any], Any]:
    from .board import page_of

    where = makeup_registrations.c.session_id == session_id
    pg = page_of(page, size, conn.execute(select(func.count()).select_from(makeup_registrations)
                                          .where(where)).scalar_one())
    rows = conn.execute(select(makeup_registrations, schools.c.code.label("school"))
                        .join(schools, schools.c.id == makeup_registrations.c.school_id).where(where)
                        .order_by(makeup_registrations.c.issued_at, makeup_registrations.c.id)
                        .limit(pg.size).offset(pg.offset)).all()
    return rows, pg


# ---- registration

@dataclass
class Registration:
    """What the form answers: ``errors`` by field (roster-independent), else ``code`` (None: no match)."""

    errors: dict[str, str]
    code: str | None = None
    session: dict[str, Any] | None = None
    expires_at: dt.datetime | None = None
    student_label: str = ""


def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def classify_key(text: str) -> tuple[Kind, str]:
    """The key a student typed: an ID number when it is one (GB 11643), else a collection code as typed."""
    stripped = text.strip()
    if len(stripped) == 18 and stripped[:17].isdigit():
        return Kind.ID_NUMBER, idnumber.validate(stripped.upper())  # ValueError: not a valid ID number
    return Kind.COLLECTION_CODE, stripped


def key_bucket(school_code: str, kind: Kind, key: str) -> str:
    return "makeup-key:" + hashlib.sha256(f"{school_code}|{kind.value}|{key}".encode()).hexdigest()[:40]


def session_end(session: dict[str, Any], zone: ZoneInfo) -> dt.datetime:
    """A code is good until the end of its session's day (a student late in the morning comes in the afternoon)."""
    return dt.datetime.combine(session["day"], dt.time(23, 59, 59), zone).astimezone(dt.UTC)


def register(engine: Engine, signing_key: Any, zone: ZoneInfo, school_code: str, key_text: str, second: str,
             session_id: int | None, now: dt.datetime | None = None) -> Registration:
    """Check the form, and issue a code when key and second factor match one student of the school's family."""
    now = now or dt.datetime.now(dt.UTC)
    errors: dict[str, str] = {}
    kind, key = Kind.COLLECTION_CODE, ""
    if not key_text.strip():
        errors["key"] = "required"
    elif len(key_text) > 400:
        errors["key"] = "too_long"
    else:
        try:
            kind, key = classify_key(key_text)
        except ValueError:
            errors["key"] = "bad_id_number"
    if kind is Kind.ID_NUMBER and not second.strip():
        errors["second"] = "required"
    with engine.connect() as conn:
        school = conn.execute(select(schools.c.id, schools.c.code).where(schools.c.code == school_code)).first()
        family = subtree(conn, school.id) if school else []
        session = None
        if session_id is None:
            errors["session"] = "required"
        else:
            listed, _ = sessions(conn, school_id=school.id, upcoming_from=now.astimezone(zone).date(),
                                 size=10_000) if school else ([], None)
            session = next((s for s in listed if s["id"] == session_id), None)
            if session is None:
                errors["session"] = "unknown_session"
            elif session["registered"] >= session["capacity"]:
                errors["session"] = "session_full"
        if errors:
            return Registration(errors)
        found = conn.execute(select(students.c.id, students.c.school_id, students.c.student_no, students.c.name,
                                    students.c.class_name, schools.c.code)
                             .join(student_keys, student_keys.c.student_id == students.c.id)
                             .join(schools, schools.c.id == students.c.school_id)
                             .where(student_keys.c.school_id.in_(family), student_keys.c.kind == kind.value,
                                    student_keys.c.key == key)).first()
    matched = found is not None and _second_factor_ok(kind, found, second)
    expires = session_end(session, zone)
    issued = now.replace(microsecond=0)
    code_id = secrets.token_bytes(6)
    if not matched:  # the same work, thrown away: no code for details that do not match
        issue(signing_key, Kind.COLLECTION_CODE, "x" * max(1, len(key)), school_code, issued_at=issued,
              expires_at=expires, code_id=code_id)
        return Registration({}, None, session)
    text = issue(signing_key, kind, key, found.code, issued_at=issued, expires_at=expires, code_id=code_id)
    label = " ".join(x for x in (found.class_name, found.student_no, found.name) if x)
    naive = utcnow()
    with engine.begin() as conn:
        conn.execute(update(makeup_registrations).where(
            makeup_registrations.c.school_id == found.school_id, makeup_registrations.c.identity_kind == kind.value,
            makeup_registrations.c.identity_key == key, makeup_registrations.c.replaced_at.is_(None))
            .values(replaced_at=naive))
        conn.execute(makeup_registrations.insert().values(
            session_id=session["id"], school_id=found.school_id, identity_kind=kind.value, identity_key=key,
            student=label[:300], code_id=code_id.hex(), issued_at=issued.replace(tzinfo=None),
            expires_at=expires.replace(tzinfo=None)))
    return Registration({}, text, session, expires, label)


def _second_factor_ok(kind: Kind, student: Any, second: str) -> bool:
    if kind is Kind.COLLECTION_CODE:
        return True  # the code is the student's own secret
    expected = student.student_no or student.name
    return not expected or secrets.compare_digest(_norm(second).encode(), _norm(expected).encode())
