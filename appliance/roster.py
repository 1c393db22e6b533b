"""The school's approved-graduate roster, indexed in SQLite, and the check every identity goes through.

``load_csv`` turns the school's CSV (``docs/roster-format.md``) into ``roster.sqlite``: built in a
temporary file and renamed into place, so the daemon never sees half a roster; it re-opens the file
when it changes. A roster may carry ID numbers (the ID-card process), CHSI collection codes (the
2023 process, no names needed) or campus-card UIDs — any mix, one key column per kind. Names and
classes, when the school gives them, are only shown on the operator console so the crew can catch a
wrong card; they are never journalled or spooled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import idnumber
from .identity import Identity, InvalidIdentity, Kind, make
from .journal import Journal
from .session import RosterCheck, RosterStatus

KEY_COLUMNS = {Kind.ID_NUMBER: "id_number", Kind.COLLECTION_CODE: "collection_code", Kind.CARD_UID: "card_uid"}
INFO_COLUMNS = ("student_no", "name", "school", "class", "major", "photographed")
ALIASES = {  # headers schools' spreadsheets commonly use
    "身份证号": "id_number", "身份证号码": "id_number", "证件号码": "id_number",
    "图像采集码": "collection_code", "采集码": "collection_code",
    "卡号": "card_uid", "校园卡号": "card_uid",
    "学号": "student_no", "姓名": "name", "学校": "school", "院校": "school",
    "班级": "class", "专业": "major", "已拍照": "photographed",
}
TRUE = {"1", "y", "yes", "true", "是"}


class RosterError(ValueError):
    """A roster that cannot be loaded; ``problems`` lists ``(line, message)``."""

    def __init__(self, message: str, problems: list[tuple[int, str]] | None = None) -> None:
        self.problems = problems or []
        lines = "".join(f"\n  line {n}: {m}" for n, m in self.problems[:20])
        more = f"\n  … and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(message + lines + more)


@dataclass
class LoadReport:
    rows: int = 0
    keys: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    encoding: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Entry:
    student_no: str
    name: str
    school: str
    klass: str
    major: str
    photographed: bool

    def label(self) -> str:
        return " ".join(x for x in (self.name, self.klass or self.major, self.student_no) if x)


def _decode(raw: bytes, encoding: str) -> tuple[str, str]:
    if encoding != "auto":
        return raw.decode(encoding), encoding
    for enc in ("utf-8-sig", "gb18030"):  # Excel on Chinese Windows saves CSV as GB18030/GBK
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise RosterError("roster is neither UTF-8 nor GB18030 text")


def _rows(text: str) -> tuple[list[str], Iterable[tuple[int, dict[str, str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise RosterError("roster is empty") from None
    columns = [ALIASES.get(h.strip(), h.strip().lower()) for h in header]
    unknown = [h for h, c in zip(header, columns, strict=True) if c not in (*KEY_COLUMNS.values(), *INFO_COLUMNS)]
    if unknown:
        raise RosterError(f"unknown roster columns {unknown}; known: {[*KEY_COLUMNS.values(), *INFO_COLUMNS]}")
    if not set(columns) & set(KEY_COLUMNS.values()):
        raise RosterError(f"roster has no key column (one of {list(KEY_COLUMNS.values())})")
    rows = ((reader.line_num, dict(zip(columns, (v.strip() if c != "collection_code" else v for c, v in
                                                   zip(columns, r, strict=False)), strict=False)))
            for r in reader if any(x.strip() for x in r))
    return columns, rows


def load_csv(csv_path: Path, db_path: Path, encoding: str = "auto", skip_bad: bool = False) -> LoadReport:
    """Validate a roster CSV and atomically replace ``db_path`` with it."""
    raw = csv_path.read_bytes()
    text, used = _decode(raw, encoding)
    _columns, rows = _rows(text)
    report = LoadReport(encoding=used, sha256=hashlib.sha256(raw).hexdigest())
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], int] = {}
    good: list[tuple] = []
    for line, row in rows:
        keys = {}
        before = len(problems)
        for kind, col in KEY_COLUMNS.items():
            value = row.get(col) or ""
            if not value:
                continue
            try:
                if kind is Kind.ID_NUMBER:
                    value = idnumber.validate(value)
                keys[col] = make(kind, value, "manual").key
            except (idnumber.InvalidIdNumber, InvalidIdentity) as exc:
                problems.append((line, f"{col}: {exc}"))
        if len(problems) > before:
            continue
        if not keys:
            problems.append((line, "no identity key in this row"))
            continue
        dup = [(c, v) for c, v in keys.items() if (c, v) in seen]
        if dup:
            problems.append((line, f"{dup[0][0]} repeats line {seen[dup[0]]}"))
            continue
        for c, v in keys.items():
            seen[(c, v)] = line
            report.keys[c] = report.keys.get(c, 0) + 1
        good.append((keys.get("id_number"), keys.get("collection_code"), keys.get("card_uid"),
                     *(row.get(c, "") for c in INFO_COLUMNS[:-1]), int(row.get("photographed", "").lower() in TRUE)))
    if problems and not skip_bad:
        raise RosterError(f"{csv_path}: {len(problems)} bad rows (nothing loaded)", problems)
    report.skipped = problems
    report.rows = len(good)
    tmp = db_path.with_name(db_path.name + ".new")
    tmp.unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        with conn:
            conn.execute("CREATE TABLE students (row INTEGER PRIMARY KEY, id_number TEXT UNIQUE,"
                         " collection_code TEXT UNIQUE, card_uid TEXT UNIQUE, student_no TEXT, name TEXT,"
                         " school TEXT, class TEXT, major TEXT, photographed INTEGER NOT NULL DEFAULT 0)")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.executemany("INSERT INTO students (id_number, collection_code, card_uid, student_no, name, school,"
                             " class, major, photographed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", good)
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("source", str(csv_path)), ("sha256", report.sha256), ("rows", str(report.rows))])
    finally:
        conn.close()
    os.replace(tmp, db_path)  # the commit above synced the file; make the rename durable too
    fd = os.open(db_path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return report


class Roster:
    """Read-only look-ups; reopens the file when ``capturekit roster load`` replaces it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._stamp: tuple[int, int] | None = None

    def _db(self) -> sqlite3.Connection | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            if self._conn:
                self._conn.close()
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._stamp = stamp
        return self._conn

    def count(self) -> int:
        db = self._db()
        return db.execute("SELECT COUNT(*) FROM students").fetchone()[0] if db else 0

    def lookup(self, identity: Identity) -> Entry | None:
        db = self._db()
        if db is None:
            return None
        col = KEY_COLUMNS[identity.kind]
        row = db.execute(f"SELECT student_no, name, school, class, major, photographed FROM students"
                         f" WHERE {col} = ?", [identity.key]).fetchone()
        return Entry(*(x or "" for x in row[:5]), bool(row[5])) if row else None

    def close(self) -> None:
        if self._conn:
            self._conn.close()
            self._conn = None


def check_identity(identity: Identity, roster: Roster, journal: Journal, session_id: int) -> RosterCheck:
    """Classify an identity for the session: invalid, unknown, shot already, or on the roster."""
    if identity.kind is Kind.ID_NUMBER:
        try:
            idnumber.validate(identity.key)
        except idnumber.InvalidIdNumber as exc:
            return RosterCheck(RosterStatus.INVALID, str(exc))
    entry = roster.lookup(identity)
    if entry is None:
        return RosterCheck(RosterStatus.NOT_ON_ROSTER, "not on the approved roster")
    prior = journal.prior_shot(identity)
    if prior is not None and prior.session_id == session_id:
        return RosterCheck(RosterStatus.SHOT_THIS_SESSION, f"shot {prior.number} earlier in this session",
                           prior.number, prior.frames, entry.label())
    if prior is not None:
        return RosterCheck(RosterStatus.SHOT_BEFORE, f"shot {prior.number} in session {prior.session_id}",
                           label=entry.label())
    if entry.photographed:
        return RosterCheck(RosterStatus.SHOT_BEFORE, "roster marks this student photographed", label=entry.label())
    return RosterCheck(RosterStatus.ON_ROSTER, label=entry.label())
