"""The school's approved-graduate roster, indexed in SQLite, and the check every identity goes through.

``load_csv`` turns the school's CSV (``docs/roster-format.md``) into ``roster.sqlite``: built in a
temporary file and renamed into place, so the daemon never sees half a roster; it re-opens the file
when it changes. A roster may carry ID numbers (the ID-card process), CHSI collection codes (the
2023 process, no names needed) or campus-card UIDs — any mix, one key column per kind. Names and
classes, when the school gives them, are only shown on the operator console so the crew can catch a
wrong card; they are never journalled or spooled.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import idnumber
from .datadir import ROSTER_LOCK, Lock
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


MAX_LINE_BYTES = 64 * 1024  # a roster line is well under 1 KiB; longer means a broken or foreign file
_CHUNK = 1 << 20


def _scan(path: Path, encoding: str) -> tuple[str, str]:
    """One bounded-memory pass over the raw file: its encoding, its SHA-256, and no line over the limit."""
    if encoding != "auto":
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise RosterError(f"unknown encoding {encoding!r} (try utf-8 or gb18030)") from None
    candidates = [encoding] if encoding != "auto" else ["utf-8-sig", "gb18030"]  # Excel on Chinese Windows: GB18030
    decoders = {enc: codecs.getincrementaldecoder(enc)() for enc in candidates}
    digest = hashlib.sha256()
    line, line_len = 1, 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            for enc in list(decoders):
                try:
                    decoders[enc].decode(chunk)
                except UnicodeDecodeError:
                    del decoders[enc]
            if not decoders:
                what = f"{encoding} text" if encoding != "auto" else "UTF-8 or GB18030 text"
                raise RosterError(f"roster is not {what} (from line {line} on)")
            start = 0
            while (nl := chunk.find(b"\n", start)) >= 0:
                if line_len + nl - start > MAX_LINE_BYTES:
                    raise RosterError(f"line {line} is longer than {MAX_LINE_BYTES} bytes: not a roster line")
                line, line_len, start = line + 1, 0, nl + 1
            line_len += len(chunk) - start
            if line_len > MAX_LINE_BYTES:
                raise RosterError(f"line {line} is longer than {MAX_LINE_BYTES} bytes: not a roster line")
    for enc, dec in decoders.items():
        try:
            dec.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return enc, digest.hexdigest()
    raise RosterError("roster ends in the middle of a character: truncated file?")


def _lines(fh: Iterable[str] | io.TextIOBase) -> Iterable[str]:
    while line := fh.readline(MAX_LINE_BYTES + 1):  # type: ignore[union-attr]
        if len(line) > MAX_LINE_BYTES:
            raise RosterError(f"a line is longer than {MAX_LINE_BYTES} characters: not a roster line")
        yield line


def _header(reader: Iterable[list[str]]) -> list[str]:
    try:
        header = next(iter(reader))
    except StopIteration:
        raise RosterError("roster is empty: not even a header line") from None
    columns = [ALIASES.get(h.strip(), h.strip().lower()) for h in header]
    unknown = [h for h, c in zip(header, columns, strict=True) if c not in (*KEY_COLUMNS.values(), *INFO_COLUMNS)]
    if unknown:
        raise RosterError(f"unknown roster columns {unknown}; known: {[*KEY_COLUMNS.values(), *INFO_COLUMNS]}")
    for i, c in enumerate(columns):
        if c in columns[:i]:
            raise RosterError(f"column {c} is given twice (headers {header[columns.index(c)]!r} and {header[i]!r}):"
                              " which one holds the data cannot be guessed")
    if not set(columns) & set(KEY_COLUMNS.values()):
        raise RosterError(f"roster has no key column (one of {list(KEY_COLUMNS.values())})")
    return columns


def read_csv(csv_path: Path, encoding: str = "auto") -> tuple[LoadReport, list[tuple[int, dict[str, str]]],
                                                           list[tuple[int, str]]]:
    """Parse and validate a roster CSV in bounded memory: (report, good rows by line, problems by line).

    A file that would silently lose students is refused as a whole (RosterError): a line over the
    limit, the same column twice, a quote left open (it swallows the rows after it).
    """
    try:
        used, sha = _scan(csv_path, encoding)
        fh = open(csv_path, encoding=used, newline="")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise RosterError(f"no such roster file: {csv_path}") from None
    except IsADirectoryError:
        raise RosterError(f"{csv_path} is a directory, not a roster file") from None
    except OSError as exc:
        raise RosterError(f"cannot read {csv_path}: {exc.strerror}") from None
    report = LoadReport(encoding=used, sha256=sha)
    problems: list[tuple[int, str]] = []
    good: list[tuple[int, dict[str, str]]] = []
    seen: dict[tuple[str, str], int] = {}
    with fh:
        reader = csv.reader(_lines(fh))
        columns = _header(reader)
        line = reader.line_num + 1
        try:
            for cells in reader:
                first, line = line, reader.line_num + 1
                if not any(x.strip() for x in cells):
                    continue
                if any("\n" in x or "\r" in x for x in cells):
                    raise RosterError(f"line {first}: a quoted cell runs over {line - first} lines — a quote"
                                      " left open swallows the rows after it")
                if len(cells) > len(columns):
                    problems.append((first, f"{len(cells)} cells, the header has {len(columns)}"))
                    continue
                row = {c: (v if c == "collection_code" else v.strip()) for c, v in zip(columns, cells, strict=False)}
                keys, bad = _keys(row)
                if bad:
                    problems += [(first, b) for b in bad]
                    continue
                dup = [(c, v) for c, v in keys.items() if (c, v) in seen]
                if dup:
                    problems.append((first, f"{dup[0][0]} repeats line {seen[dup[0]]}"))
                    continue
                for c, v in keys.items():
                    seen[(c, v)] = first
                    report.keys[c] = report.keys.get(c, 0) + 1
                good.append((first, {**row, **keys}))
        except csv.Error as exc:
            raise RosterError(f"line {line}: not CSV ({exc})") from None
    return report, good, problems


def _keys(row: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    keys, bad = {}, []
    for kind, col in KEY_COLUMNS.items():
        value = row.get(col) or ""
        if not value:
            continue
        try:
            if kind is Kind.ID_NUMBER:
                value = idnumber.validate(value)
            keys[col] = make(kind, value, "manual").key
        except (idnumber.InvalidIdNumber, InvalidIdentity) as exc:
            bad.append(f"{col}: {exc}")
    if not keys and not bad:
        bad.append("no identity key in this row")
    return keys, bad


def load_csv(csv_path: Path, db_path: Path, encoding: str = "auto", skip_bad: bool = False,
             allow_empty: bool = False) -> LoadReport:
    """Validate a roster CSV and atomically replace ``db_path`` with it (the old roster stays on any error).

    Holds ``roster.lock`` beside ``db_path`` so two loads never interleave.
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    lock = Lock(db_path.parent / ROSTER_LOCK).acquire("roster load")
    try:
        return _load(csv_path, db_path, encoding, skip_bad, allow_empty)
    finally:
        lock.release()


def _load(csv_path: Path, db_path: Path, encoding: str, skip_bad: bool, allow_empty: bool) -> LoadReport:
    report, rows, problems = read_csv(csv_path, encoding)
    if problems and not skip_bad:
        raise RosterError(f"{csv_path}: {len(problems)} bad rows (nothing loaded)", problems)
    if not rows and not allow_empty:
        loaded = Roster(db_path)
        kept = loaded.count()
        loaded.close()
        raise RosterError(f"{csv_path} holds no students"
                          + (f"; the loaded roster ({kept} students) is kept" if kept else "")
                          + " (--allow-empty to install an empty roster)")
    report.skipped = problems
    report.rows = len(rows)
    good = [(r.get("id_number") or None, r.get("collection_code") or None, r.get("card_uid") or None,
             *(r.get(c, "") for c in INFO_COLUMNS[:-1]), int(r.get("photographed", "").lower() in TRUE))
            for _, r in rows]
    tmp = db_path.with_name(f"{db_path.name}.new-{os.getpid()}")
    tmp.unlink(missing_ok=True)
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
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
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
