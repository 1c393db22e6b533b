"""The school's approved-graduate roster on the kit, in protected form, and the check every identity goes through.

The kit's ``roster.sqlite`` holds, per student, only the **protected form** of their key
(:mod:`appliance.protect`: Argon2id for ID numbers and card UIDs, HMAC for collection codes), their school
code and the "photographed elsewhere" flag — no names, no classes, no clear numbers. It arrives either
already protected from the centre (``capturekit.roster/2`` JSON, :func:`install_protected`), or as the
school's clear CSV for the embedded single-kit case (``docs/roster-format.md``, :func:`load_csv`), which
is validated as a whole and protected on load; the CSV's names and classes are dropped. Either way the
file is built in a temporary file and renamed into place, so the daemon (which re-opens it when it
changes) never sees half a roster.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import idnumber
from .datadir import ROSTER_LOCK, Lock, fsync_dir
from .identity import Identity, InvalidIdentity, Kind, make
from .journal import Journal
from .protect import RosterKey
from .session import RosterCheck, RosterStatus

FORMAT = "capturekit.roster/2"

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
    dropped: list[str] = field(default_factory=list)  # columns read for validation only, not kept on the kit


@dataclass(frozen=True)
class Entry:
    school: str
    photographed: bool


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
             allow_empty: bool = False, new_key: RosterKey | None = None, school: str = "") -> LoadReport:
    """Validate a clear roster CSV, protect every key, and atomically replace ``db_path`` (the old roster stays
    on any error). The roster key of the roster already installed is kept (so the journal's "already shot"
    records still match); a first roster gets ``new_key`` (or a fresh default one). ``school`` is the school
    code for rows without a ``school`` column. Holds ``roster.lock`` so two loads never interleave.
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    lock = Lock(db_path.parent / ROSTER_LOCK).acquire("roster load")
    try:
        report, rows, problems = read_csv(csv_path, encoding)
        if problems and not skip_bad:
            raise RosterError(f"{csv_path}: {len(problems)} bad rows (nothing loaded)", problems)
        _refuse_empty(csv_path, rows, db_path, allow_empty)
        report.skipped, report.rows = problems, len(rows)
        report.dropped = sorted({c for _, r in rows for c in r if c not in (*KEY_COLUMNS.values(), "school",
                                                                            "photographed")})
        current = Roster(db_path)
        key = current.key() or new_key or RosterKey.new()
        current.close()
        jobs = [(Kind(kind), r[col], r.get("school") or school, r.get("photographed", "").lower() in TRUE)
                for _, r in rows for kind, col in KEY_COLUMNS.items() if r.get(col)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Argon2id releases the GIL
            hashes = list(pool.map(lambda j: key.protect(j[0], j[1]), jobs))
        students = [(kind.value, h, sch, int(ph)) for (kind, _, sch, ph), h in zip(jobs, hashes, strict=True)]
        _install(db_path, key, students, {"source": f"csv sha256 {report.sha256}", "rows": str(report.rows)})
        return report
    finally:
        lock.release()


def install_protected(doc: dict[str, Any], db_path: Path) -> int:
    """Install a roster the centre protected (``capturekit.roster/2``, docs/roster-format.md); return its size."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RosterError(f"not a {FORMAT} document")
    try:
        key = RosterKey.from_dict(doc["key"])
        students = [(Kind(s["kind"]).value, str(s["key"]), str(s.get("school", "")), int(bool(s.get("photographed"))))
                    for s in doc["students"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise RosterError(f"{FORMAT} document malformed: {exc}") from None
    bad = [i for i, (_, h, _, _) in enumerate(students) if len(h) != 64 or any(c not in "0123456789abcdef" for c in h)]
    if bad:
        raise RosterError(f"{len(bad)} students have no protected key (64 hex digits), e.g. entry {bad[0]}")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    lock = Lock(db_path.parent / ROSTER_LOCK).acquire("roster install")
    try:
        _install(db_path, key, students, {"source": "centre", "version": str(doc.get("version", "")),
                                          "rows": str(len(students))})
    finally:
        lock.release()
    return len(students)


def load_file(path: Path, db_path: Path, **csv_options: Any) -> LoadReport:
    """``capturekit roster load``: a centre's protected JSON roster, or a school's clear CSV."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1).lstrip()
    except OSError:
        head = b""
    if path.suffix.lower() == ".json" or head == b"{":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RosterError(f"{path}: not a readable JSON roster ({exc})") from None
        n = install_protected(doc, db_path)
        return LoadReport(rows=n, encoding="json", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    return load_csv(path, db_path, **csv_options)


def _refuse_empty(csv_path: Path, rows: list, db_path: Path, allow_empty: bool) -> None:
    if rows or allow_empty:
        return
    loaded = Roster(db_path)
    kept = loaded.count()
    loaded.close()
    raise RosterError(f"{csv_path} holds no students" + (f"; the loaded roster ({kept} students) is kept" if kept
                                                          else "") + " (--allow-empty to install an empty roster)")


def _install(db_path: Path, key: RosterKey, students: list[tuple[str, str, str, int]], meta: dict[str, str]) -> None:
    tmp = db_path.with_name(f"{db_path.name}.new-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        with conn:
            conn.execute("CREATE TABLE students (kind TEXT NOT NULL, key TEXT NOT NULL, school TEXT NOT NULL,"
                         " photographed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (kind, key)) WITHOUT ROWID")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.executemany("INSERT OR REPLACE INTO students VALUES (?, ?, ?, ?)", students)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", FORMAT), ("roster_key", json.dumps(key.to_dict())),
                ("loaded_at", dt.datetime.now().astimezone().isoformat(timespec="seconds")), *meta.items()])
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    conn.close()
    os.replace(tmp, db_path)  # the commit above synced the file; make the rename durable too
    fsync_dir(db_path.parent)


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

    def key(self) -> RosterKey | None:
        """The roster key every tap is protected with (None: no roster, or one from before bundle/2)."""
        db = self._db()
        if db is None:
            return None
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'roster_key'").fetchone()
        except sqlite3.DatabaseError:
            return None
        return RosterKey.from_dict(json.loads(row[0])) if row else None

    def lookup(self, identity: Identity) -> Entry | None:
        db = self._db()
        if db is None or not identity.protected:
            return None
        row = db.execute("SELECT school, photographed FROM students WHERE kind = ? AND key = ?",
                         [identity.kind.value, identity.protected]).fetchone()
        return Entry(row[0], bool(row[1])) if row else None

    def close(self) -> None:
        if self._conn:
            self._conn.close()
            self._conn = None


def check_identity(identity: Identity, roster: Roster, journal: Journal, session_id: int) -> RosterCheck:
    """Classify a protected identity for the session: invalid, unknown, shot already, or on the roster.

    The label for a local display is the name the reader passed (only when the school's policy allows it).
    """
    if identity.kind is Kind.ID_NUMBER:
        try:
            idnumber.validate(identity.key)
        except idnumber.InvalidIdNumber as exc:
            return RosterCheck(RosterStatus.INVALID, str(exc))
    entry = roster.lookup(identity)
    if entry is None:
        return RosterCheck(RosterStatus.NOT_ON_ROSTER, "not on the approved roster")
    label = identity.display
    prior = journal.prior_shot(identity)
    if prior is not None and prior.session_id == session_id:
        return RosterCheck(RosterStatus.SHOT_THIS_SESSION, f"shot {prior.number} earlier in this session",
                           prior.number, prior.frames, label)
    if prior is not None:
        return RosterCheck(RosterStatus.SHOT_BEFORE, f"shot {prior.number} in session {prior.session_id}",
                           label=label)
    if entry.photographed:
        return RosterCheck(RosterStatus.SHOT_BEFORE, "roster marks this student photographed", label=label)
    return RosterCheck(RosterStatus.ON_ROSTER, label=label)
