"""The shoot plan (§一): per class or major a slot (one hour by default) at a time, a kit, an expected rate.

The rates are data (``shoot_rates``, seeded with §一.2's full-time 100–150/h and correspondence 80–120/h, editable
on the plan page). Each slot is checked against the roster: the students of that class (or major) in the school
and its sites, against what the slot's length allows at the rate — over the upper rate is **over-booked**, over
the lower one **tight** — and against the kit's other slots (a kit in two places at once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, select, update

from .board import Page, page_of
from .db import kits, plan_slots, schools, shoot_rates, students, utcnow
from .errors import CentreError
from .rosters import subtree


@dataclass
class Slot:
    id: int
    school: str
    school_name: str
    group_kind: str
    group_name: str
    starts_at: dt.datetime
    minutes: int
    kit: str | None
    rate_code: str
    rate_min: int
    rate_max: int
    place: str
    students: int = 0
    warnings: list[str] = field(default_factory=list)  # message keys: over_booked, tight, kit_clash, no_students

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.minutes)

    @property
    def capacity(self) -> tuple[int, int]:
        return self.rate_min * self.minutes // 60, self.rate_max * self.minutes // 60


def rates(conn: Connection) -> list[Any]:
    return conn.execute(select(shoot_rates).order_by(shoot_rates.c.code)).all()


def set_rate(engine: Engine, code: str, per_hour_min: int, per_hour_max: int) -> None:
    if not 1 <= per_hour_min <= per_hour_max <= 2000:
        raise CentreError("rates: 1 ≤ lower ≤ upper ≤ 2000 per hour")
    with engine.begin() as conn:
        if not conn.execute(update(shoot_rates).where(shoot_rates.c.code == code)
                            .values(per_hour_min=per_hour_min, per_hour_max=per_hour_max)).rowcount:
            raise CentreError(f"no rate {code!r}")


def group_size(conn: Connection, school_id: int, group_kind: str, name: str) -> int:
    col = students.c.class_name if group_kind == "class" else students.c.major
    return conn.execute(select(func.count()).select_from(students)
                        .where(students.c.school_id.in_(subtree(conn, school_id)), col == name)).scalar_one()


def add_slot(engine: Engine, *, school: str, group_kind: str, group_name: str, starts_at: dt.datetime,
             minutes: int, kit: str | None, rate_code: str, place: str = "", user_id: int | None = None) -> int:
    with engine.begin() as conn:
        school_id = conn.execute(select(schools.c.id).where(schools.c.code == school)).scalar()
        kit_id = conn.execute(select(kits.c.id).where(kits.c.name == kit)).scalar() if kit else None
        return conn.execute(plan_slots.insert().values(
            school_id=school_id, group_kind=group_kind, group_name=group_name, starts_at=starts_at, minutes=minutes,
            kit_id=kit_id, rate_code=rate_code, place=place, created_by=user_id,
            created_at=utcnow())).inserted_primary_key[0]


def delete_slot(engine: Engine, slot_id: int) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(delete(plan_slots).where(plan_slots.c.id == slot_id)).rowcount)


def slots(conn: Connection, page: int = 1, size: int = 50, school: str | None = None,
          day: dt.date | None = None) -> tuple[list[Slot], Page]:
    """A page of slots in time order, each with its students and warnings."""
    where = []
    if school:
        where.append(schools.c.code == school)
    if day:
        start = dt.datetime.combine(day, dt.time())
        where += [plan_slots.c.starts_at >= start, plan_slots.c.starts_at < start + dt.timedelta(days=1)]
    base = (select(plan_slots.c.id, schools.c.code, schools.c.name, plan_slots.c.school_id, plan_slots.c.group_kind,
                   plan_slots.c.group_name, plan_slots.c.starts_at, plan_slots.c.minutes, kits.c.name.label("kit"),
                   plan_slots.c.kit_id, plan_slots.c.rate_code, shoot_rates.c.per_hour_min, shoot_rates.c.per_hour_max,
                   plan_slots.c.place)
            .join(schools, schools.c.id == plan_slots.c.school_id)
            .join(shoot_rates, shoot_rates.c.code == plan_slots.c.rate_code)
            .outerjoin(kits, kits.c.id == plan_slots.c.kit_id).where(*where))
    total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    pg = page_of(page, size, total)
    rows = conn.execute(base.order_by(plan_slots.c.starts_at, plan_slots.c.id).limit(pg.size).offset(pg.offset)).all()
    out = []
    for r in rows:
        s = Slot(r.id, r.code, r.name, r.group_kind, r.group_name, r.starts_at, r.minutes, r.kit, r.rate_code,
                 r.per_hour_min, r.per_hour_max, r.place)
        s.students = group_size(conn, r.school_id, r.group_kind, r.group_name)
        low, high = s.capacity
        if s.students == 0:
            s.warnings.append("no_students")
        elif s.students > high:
            s.warnings.append("over_booked")
        elif s.students > low:
            s.warnings.append("tight")
        if r.kit_id is not None and _kit_clash(conn, r.id, r.kit_id, s.starts_at, s.ends_at):
            s.warnings.append("kit_clash")
        out.append(s)
    return out, pg


def _kit_clash(conn: Connection, slot_id: int, kit_id: int, start: dt.datetime, end: dt.datetime) -> bool:
    """Another slot of the same kit overlapping [start, end) (slots are at most a day long)."""
    others = conn.execute(select(plan_slots.c.starts_at, plan_slots.c.minutes).where(and_(
        plan_slots.c.kit_id == kit_id, plan_slots.c.id != slot_id, plan_slots.c.starts_at < end,
        plan_slots.c.starts_at >= start - dt.timedelta(days=1)))).all()
    return any(s + dt.timedelta(minutes=m) > start for s, m in others)
