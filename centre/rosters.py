"""Schools, their rosters, and the protected roster each kit downloads.

A school may have joint-programme **sites** (``parent``, §六): the main school reports for them, and they share
its :class:`~appliance.protect.RosterKey` (made with the school, default Argon2id cost of
:mod:`appliance.protect`), so one kit roster can hold a main school and its sites. ``roster load SCHOOL FILE``
reads the school's clear CSV (``docs/roster-format.md``, validated by the kit's own reader) and replaces the
students of the school and its sites; a ``school`` column may name the school or one of its sites. Every key
is kept in clear (the centre may hold it) and in protected form, computed with the same code as on the kit.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update

from appliance.identity import Kind
from appliance.protect import DEFAULT_MEMLIMIT, DEFAULT_OPSLIMIT, RosterKey
from appliance.roster import FORMAT, KEY_COLUMNS, TRUE, RosterError, read_csv

from .db import captures, kit_schools, roster_versions, schools, student_keys, students, utcnow
from .errors import ApiError, CentreError
from .kits import Kit, kit_by_name

SCHOOL_CODE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class School:
    id: int
    code: str
    name: str
    parent_id: int | None


@dataclass
class RosterLoad:
    school: str
    version: int
    rows: int
    keys: dict[str, int] = field(default_factory=dict)
    per_school: dict[str, int] = field(default_factory=dict)
    resolved: int = 0  # captures that arrived protected and now have their clear key


def _school(conn: Connection, code: str) -> School:
    row = conn.execute(select(schools.c.id, schools.c.code, schools.c.name, schools.c.parent_id)
                       .where(schools.c.code == code)).first()
    if row is None:
        raise CentreError(f"no school {code!r} (capturekit centre school add {code} --name ...)")
    return School(*row)


def add_school(engine: Engine, code: str, name: str, parent: str | None = None,
               opslimit: int = DEFAULT_OPSLIMIT, memlimit: int = DEFAULT_MEMLIMIT) -> School:
    """Add a school (a main school gets a new roster key; a site shares its main school's)."""
    if not code or len(code) > 64 or set(code) - SCHOOL_CODE_CHARS:
        raise CentreError(f"school code {code!r}: letters, digits, '-' and '_' only (the ministry's code)")
    with engine.begin() as conn:
        if conn.execute(select(schools.c.id).where(schools.c.code == code)).first():
            raise CentreError(f"school {code} already exists")
        parent_id, key = None, None
        if parent:
            p = _school(conn, parent)
            parent_id = p.id
        else:
            try:
                key = json.dumps(RosterKey.new(opslimit, memlimit).to_dict())
            except ValueError as exc:
                raise CentreError(f"roster key: {exc}") from None
        new_id = conn.execute(schools.insert().values(code=code, name=name or code, parent_id=parent_id,
                                                      roster_key=key, created_at=utcnow())).inserted_primary_key[0]
    return School(new_id, code, name or code, parent_id)


def list_schools(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        parent = schools.alias("parent")
        counts = dict(conn.execute(select(students.c.school_id, func.count()).group_by(students.c.school_id)).all())
        rows = conn.execute(select(schools.c.id, schools.c.code, schools.c.name, parent.c.code.label("parent"))
                            .outerjoin(parent, parent.c.id == schools.c.parent_id).order_by(schools.c.code)).all()
    return [{"code": r.code, "name": r.name, "parent": r.parent or "", "students": counts.get(r.id, 0)} for r in rows]


def subtree(conn: Connection, school_id: int) -> list[int]:
    """The school and every site under it (sites of sites too), the school first."""
    out, frontier = [school_id], [school_id]
    while frontier:
        frontier = [r[0] for r in conn.execute(select(schools.c.id).where(schools.c.parent_id.in_(frontier)))]
        out += [f for f in frontier if f not in out]
    return out


def root_of(conn: Connection, school_id: int) -> int:
    seen = set()
    while True:
        parent = conn.execute(select(schools.c.parent_id).where(schools.c.id == school_id)).scalar_one()
        if parent is None or parent in seen:
            return school_id
        seen.add(school_id)
        school_id = parent


def roster_key(conn: Connection, school_id: int) -> RosterKey:
    root = root_of(conn, school_id)
    text = conn.execute(select(schools.c.roster_key).where(schools.c.id == root)).scalar_one()
    return RosterKey.from_dict(json.loads(text))


def load_roster(engine: Engine, code: str, csv_path: Path, encoding: str = "auto",
                skip_bad: bool = False) -> RosterLoad:
    """Validate the school's clear CSV and replace the students of the school and its sites (all or nothing)."""
    try:
        report, rows, problems = read_csv(csv_path, encoding)
    except RosterError as exc:
        raise CentreError(str(exc)) from None
    with engine.connect() as conn:
        school = _school(conn, code)
        family = subtree(conn, school.id)
        codes = dict(conn.execute(select(schools.c.code, schools.c.id).where(schools.c.id.in_(family))).all())
        key = roster_key(conn, school.id)
    good = []
    for line, row in rows:
        sch = row.get("school") or code
        if sch not in codes:
            problems.append((line, f"school {sch!r} is neither {code} nor one of its sites"))
        else:
            good.append((line, row, codes[sch]))
    if problems and not skip_bad:
        raise CentreError(str(RosterError(f"{csv_path}: {len(problems)} bad rows (nothing loaded)",
                                          sorted(problems))))
    if not good:
        raise CentreError(f"{csv_path} holds no students (the loaded roster is kept)")
    jobs = [(Kind(kind).value, row[col]) for _, row, _ in good for kind, col in KEY_COLUMNS.items() if row.get(col)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Argon2id releases the GIL
        protected = dict(zip(jobs, pool.map(lambda j: key.protect(*j), jobs), strict=True))
    load = RosterLoad(code, 0, len(good), dict(report.keys))
    with engine.begin() as conn:
        version = (conn.execute(select(func.max(roster_versions.c.version))
                                .where(roster_versions.c.school_id == school.id)).scalar() or 0) + 1
        rv = conn.execute(roster_versions.insert().values(
            school_id=school.id, version=version, source_sha256=report.sha256, source_name=csv_path.name[:300],
            rows=len(good), loaded_at=utcnow())).inserted_primary_key[0]
        old = select(students.c.id).where(students.c.school_id.in_(family))
        conn.execute(delete(student_keys).where(student_keys.c.student_id.in_(old)))
        conn.execute(delete(students).where(students.c.school_id.in_(family)))
        for line, row, school_id in good:
            sid = conn.execute(students.insert().values(
                school_id=school_id, roster_version_id=rv, line=line, student_no=row.get("student_no", ""),
                name=row.get("name", ""), class_name=row.get("class", ""), major=row.get("major", ""),
                photographed=row.get("photographed", "").lower() in TRUE)).inserted_primary_key[0]
            conn.execute(student_keys.insert(), [
                {"student_id": sid, "school_id": school_id, "kind": kind.value, "key": row[col],
                 "protected": protected[(kind.value, row[col])]}
                for kind, col in KEY_COLUMNS.items() if row.get(col)])
            sch_code = next(c for c, i in codes.items() if i == school_id)
            load.per_school[sch_code] = load.per_school.get(sch_code, 0) + 1
        load.resolved = _resolve_protected(conn)
    load.version = version
    return load


def _resolve_protected(conn: Connection) -> int:
    """Captures that came with a protected key only (a stale frame) get their clear key once a roster has it."""
    n = 0
    pending = conn.execute(select(captures.c.capture_id, captures.c.identity_kind, captures.c.identity_key)
                           .where(captures.c.identity_resolved.is_(False))).all()
    for cid, kind, protected in pending:
        clear = conn.execute(select(student_keys.c.key).where(student_keys.c.kind == kind,
                                                              student_keys.c.protected == protected)).first()
        if clear:
            conn.execute(update(captures).where(captures.c.capture_id == cid)
                         .values(identity_key=clear[0], identity_resolved=True))
            n += 1
    return n


def resolve_identity(conn: Connection, kind: str, key: str, protected: bool) -> tuple[str, bool]:
    """(clear key, resolved) for a capture's identity: a protected one is looked up among the rosters' keys."""
    if not protected:
        return key, True
    clear = conn.execute(select(student_keys.c.key).where(student_keys.c.kind == kind,
                                                          student_keys.c.protected == key)).first()
    return (clear[0], True) if clear else (key, False)


def assign(engine: Engine, kit_name: str, code: str, replace: bool = False) -> list[str]:
    """Assign a kit to a school (its roster then reaches the kit); return the kit's schools afterwards.

    A kit holds one roster key, so its schools must share a main school; ``replace`` drops the others first."""
    kit = kit_by_name(engine, kit_name)
    with engine.begin() as conn:
        school = _school(conn, code)
        current = [r[0] for r in conn.execute(select(kit_schools.c.school_id).where(kit_schools.c.kit_id == kit.id))]
        if replace:
            conn.execute(delete(kit_schools).where(kit_schools.c.kit_id == kit.id))
            current = []
        root = root_of(conn, school.id)
        other = [s for s in current if root_of(conn, s) != root]
        if other:
            names = [c for (c,) in conn.execute(select(schools.c.code).where(schools.c.id.in_(other)))]
            raise CentreError(f"kit {kit_name} is assigned to {', '.join(names)}, which has another roster key:"
                              " a kit holds one school's roster (--replace to move the kit)")
        if school.id not in current:
            conn.execute(kit_schools.insert().values(kit_id=kit.id, school_id=school.id, assigned_at=utcnow()))
        return [c for (c,) in conn.execute(select(schools.c.code).join(kit_schools, kit_schools.c.school_id ==
                                                                       schools.c.id)
                                           .where(kit_schools.c.kit_id == kit.id).order_by(schools.c.code))]


def unassign(engine: Engine, kit_name: str, code: str) -> None:
    kit = kit_by_name(engine, kit_name)
    with engine.begin() as conn:
        school = _school(conn, code)
        conn.execute(delete(kit_schools).where(kit_schools.c.kit_id == kit.id, kit_schools.c.school_id == school.id))


def _kit_schools(conn: Connection, kit: Kit) -> list[int]:
    assigned = [r[0] for r in conn.execute(select(kit_schools.c.school_id).where(kit_schools.c.kit_id == kit.id)
                                           .order_by(kit_schools.c.school_id))]
    if not assigned:
        raise ApiError(404, "no_roster", f"kit {kit.name} is assigned to no school (capturekit centre assign"
                       f" {kit.name} SCHOOL)")
    family: list[int] = []
    for s in assigned:
        family += [x for x in subtree(conn, s) if x not in family]
    return sorted(family)


def roster_etag(conn: Connection, kit: Kit) -> tuple[str, list[int]]:
    """The kit roster's ETag (changes when an assignment or a roster load changes it) and its schools."""
    family = _kit_schools(conn, kit)
    versions = conn.execute(select(roster_versions.c.school_id, func.max(roster_versions.c.id))
                            .where(roster_versions.c.school_id.in_(family))
                            .group_by(roster_versions.c.school_id).order_by(roster_versions.c.school_id)).all()
    key = roster_key(conn, family[0])
    basis = json.dumps([key.to_dict(), family, [list(v) for v in versions]], sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:32], family


def kit_roster(conn: Connection, kit: Kit, family: list[int], etag: str) -> dict[str, Any]:
    """The ``capturekit.roster/2`` document for the kit (appliance.roster.install_protected reads it)."""
    key = roster_key(conn, family[0])
    rows = conn.execute(select(student_keys.c.kind, student_keys.c.protected, schools.c.code, students.c.photographed)
                        .join(students, students.c.id == student_keys.c.student_id)
                        .join(schools, schools.c.id == student_keys.c.school_id)
                        .where(student_keys.c.school_id.in_(family))
                        .order_by(student_keys.c.kind, student_keys.c.protected)).all()
    codes = [c for (c,) in conn.execute(select(schools.c.code).where(schools.c.id.in_(family))
                                        .order_by(schools.c.code))]
    return {"format": FORMAT, "version": etag, "schools": codes, "key": key.to_dict(),
            "students": [{"kind": k, "key": p, "school": s, "photographed": bool(ph)} for k, p, s, ph in rows]}
