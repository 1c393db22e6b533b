"""A roster uploaded on the web, checked line by line before anything is loaded (the centre's own reader)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from appliance.roster import RosterError, read_csv

from ..db import schools
from ..rosters import subtree


@dataclass
class RosterCheck:
    rows: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, message); line 0: the whole file


def check_roster(engine: Engine, code: str, path: Path) -> RosterCheck:
    """Every bad line of the file (``centre.rosters.load_roster`` would refuse it whole), or none."""
    try:
        _report, rows, problems = read_csv(path)
    except RosterError as exc:
        return RosterCheck(0, [(0, str(exc).splitlines()[0]), *exc.problems])
    with engine.connect() as conn:
        school_id = conn.execute(select(schools.c.id).where(schools.c.code == code)).scalar_one()
        family = set(conn.execute(select(schools.c.code).where(schools.c.id.in_(subtree(conn, school_id)))).scalars())
    for line, row in rows:
        if (row.get("school") or code) not in family:
            problems.append((line, f"school {row['school']!r} is neither {code} nor one of its sites"))
    if not rows and not problems:
        problems.append((0, "the file holds no students"))
    return RosterCheck(len(rows), sorted(problems))
