"""The live board's tally: per student the number of stored captures, per school students / shot / retakes.

Counting shot students for 200 schools by joining every student's keys with every capture costs a third of a
second at 300,000 students (``benchmarks/centre_pages.py``); the board cannot pay that every few seconds. So the
tally is kept in ``student_shots`` and ``tally_schools`` and brought up to date by :func:`refresh` (the board
calls it, at most every :data:`EVERY` per process):

- a school whose latest roster version is not the one its tally was built from (a roster load, a new school) is
  rebuilt from scratch — also one school per pass whose tally is older than :data:`SWEEP`, so nothing can drift;
- captures received since the last pass (less :data:`OVERLAP`, for transactions that committed late: a capture
  seen twice is harmless, the count is recomputed per student and written only when it changed) update their
  students' counts.

Only derived data lives here: deleting both tables' rows rebuilds everything at the next pass. On PostgreSQL one
process refreshes at a time (``pg_try_advisory_xact_lock``); another one skips its pass.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update

from .db import (
    captures,
    roster_versions,
    schools,
    student_keys,
    student_shots,
    students,
    tally_schools,
    tally_state,
    utcnow,
)

EVERY = 2.0  # seconds between passes in one process
OVERLAP = dt.timedelta(seconds=15)
SWEEP = dt.timedelta(minutes=10)
_LOCK_KEY = 0x636B7479  # "ckty"
_last: dict[int, float] = {}
_mutex = threading.Lock()


def _per_student(where: Any) -> Any:
    """(student_id, school_id, stored captures) for the students ``where`` selects among student_keys, ≥ 1 only."""
    return (select(student_keys.c.student_id, student_keys.c.school_id,
                   func.count(func.distinct(captures.c.capture_id)))
            .join(captures, and_(captures.c.identity_kind == student_keys.c.kind,
                                 captures.c.identity_key == student_keys.c.key, captures.c.kind == "capture"))
            .where(where).group_by(student_keys.c.student_id, student_keys.c.school_id))


def _sums(conn: Connection, school_ids: list[int], versions: dict[int, int | None], now: dt.datetime,
          rebuilt: bool) -> None:
    """tally_schools rows of ``school_ids`` from student_shots and the roster."""
    n = dict(conn.execute(select(students.c.school_id, func.count()).where(students.c.school_id.in_(school_ids))
                          .group_by(students.c.school_id)).all())
    shot = {sid: (a, int(b or 0)) for sid, a, b in conn.execute(
        select(student_shots.c.school_id, func.count(), func.sum(func.cast(student_shots.c.captures > 1,
                                                                           students.c.id.type)))
        .where(student_shots.c.school_id.in_(school_ids)).group_by(student_shots.c.school_id))}
    old = {r.school_id: r for r in conn.execute(select(tally_schools).where(tally_schools.c.school_id.in_(school_ids)))}
    for sid in school_ids:
        values = {"students": n.get(sid, 0), "shot": shot.get(sid, (0, 0))[0], "retakes": shot.get(sid, (0, 0))[1]}
        if rebuilt:
            values.update(roster_version_id=versions.get(sid), rebuilt_at=now)
        if sid in old:
            conn.execute(update(tally_schools).where(tally_schools.c.school_id == sid).values(**values))
        else:
            conn.execute(insert(tally_schools).values(**{"school_id": sid, "roster_version_id": versions.get(sid),
                                                         "rebuilt_at": now, **values}))


def _rebuild(conn: Connection, school_ids: list[int], versions: dict[int, int | None], now: dt.datetime) -> None:
    conn.execute(delete(student_shots).where(student_shots.c.school_id.in_(school_ids)))
    conn.execute(insert(student_shots).from_select(["student_id", "school_id", "captures"],
                                                   _per_student(student_keys.c.school_id.in_(school_ids))))
    _sums(conn, school_ids, versions, now, rebuilt=True)


def refresh(engine: Engine, force: bool = False) -> bool:
    """Bring the tally up to date (module docstring); False when skipped (too soon, or another process is at it)."""
    key = id(engine)
    with _mutex:
        if not force and time.monotonic() - _last.get(key, 0.0) < EVERY:
            return False
        _last[key] = time.monotonic()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql" and not conn.execute(
                select(func.pg_try_advisory_xact_lock(_LOCK_KEY))).scalar():
            return False
        now = utcnow()
        state = conn.execute(select(tally_state.c.counted_until).where(tally_state.c.id == 1)).first()
        latest = {sid: None for (sid,) in conn.execute(select(schools.c.id))}
        latest.update(dict(conn.execute(select(roster_versions.c.school_id, func.max(roster_versions.c.id))
                                        .group_by(roster_versions.c.school_id)).all()))
        built = {r.school_id: r for r in conn.execute(select(tally_schools))}
        stale = [s for s, v in latest.items() if s not in built or built[s].roster_version_id != v]
        oldest = min((b for b in built.values() if b.school_id in latest), key=lambda b: b.rebuilt_at, default=None)
        if oldest is not None and now - oldest.rebuilt_at > SWEEP and oldest.school_id not in stale:
            stale.append(oldest.school_id)
        if stale:
            _rebuild(conn, stale, latest, now)
        gone = [s for s in built if s not in latest]
        if gone:
            conn.execute(delete(tally_schools).where(tally_schools.c.school_id.in_(gone)))
        if state is not None and state.counted_until is not None:
            since = state.counted_until - OVERLAP
            touched = conn.execute(select(student_keys.c.student_id).distinct()
                                   .join(captures, and_(captures.c.identity_kind == student_keys.c.kind,
                                                        captures.c.identity_key == student_keys.c.key))
                                   .where(captures.c.received_at >= since, captures.c.kind == "capture",
                                          student_keys.c.school_id.not_in(stale or [-1]))).scalars().all()
            for i in range(0, len(touched), 500):
                ids = touched[i:i + 500]
                rows = conn.execute(_per_student(student_keys.c.student_id.in_(ids))).all()
                held = dict(conn.execute(select(student_shots.c.student_id, student_shots.c.captures)
                                         .where(student_shots.c.student_id.in_(ids))).all())
                changed = [(a, b, c) for a, b, c in rows if held.get(a) != c]  # the overlap's repeats: no change
                if changed:
                    conn.execute(delete(student_shots).where(student_shots.c.student_id.in_([a for a, _, _ in
                                                                                            changed])))
                    conn.execute(insert(student_shots), [{"student_id": a, "school_id": b, "captures": c}
                                                         for a, b, c in changed])
                    _sums(conn, sorted({b for _, b, _ in changed}), latest, now, rebuilt=False)
        if state is None:
            conn.execute(insert(tally_state).values(id=1, counted_until=now))
        else:
            conn.execute(update(tally_state).where(tally_state.c.id == 1).values(counted_until=now))
    return True
