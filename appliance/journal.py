"""The kit's journal: one SQLite file (sqlite-utils), WAL mode, ``synchronous=FULL`` on every connection.

It records sessions, every identity read, shot numbers, frames, voids and events, with timestamps,
so the centre can explain every shot number without asking the crew. Shot numbers are allocated
here (``open_shot``) and committed before the trigger can fire. A frame is written in two steps —
``begin_frame`` (intent, committed) then ``finish_frame`` after its file is durable — so that
:meth:`Journal.recover` can settle anything a crash or power cut interrupted: every shot ends
``captured`` or ``void`` with a reason, and every frame row says where its photo is or that it was lost.

Other processes (the sync daemon, ``capturekit status``) open the same file; write transactions are
short and never span camera or network I/O. Any SQLite error is raised as :class:`StorageError`:
the daemon stops rather than retrying (after a failed fsync the data on disk is unknown).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import JournalDamaged, StartRefused, StorageError
from .identity import Identity, stored_form

SCHEMA_VERSION = 3

__all__ = ["Journal", "JournalDamaged", "StorageError", "check_integrity", "connect", "connect_readonly"]


@dataclass(frozen=True)
class ShotInfo:
    number: int
    session_id: int
    status: str
    identity: dict[str, str]
    check_status: str
    selected_frame: int | None


@dataclass(frozen=True)
class PriorShot:
    number: int
    session_id: int
    frames: int  # highest frame number used so far


def connect(path: Path) -> sqlite_utils.Database:
    """Open the journal with the pragmas every connection must have (WAL, FULL sync, busy timeout)."""
    conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # NORMAL can roll back a committed shot on power loss
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (``status``, the integrity check): never writes the journal or its WAL.

    On read-only media (a card mounted read-only for inspection) SQLite cannot create the WAL index, so
    the file is then opened ``immutable`` (no writer can be active there).
    """
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def check_integrity(path: Path) -> None:
    """``PRAGMA quick_check`` on a read-only connection; a damaged or foreign file raises JournalDamaged.

    Nothing is written: a damaged journal stays byte for byte as found, for support to look at. A journal
    that cannot be opened at all (permissions, a missing directory) is a StartRefused, not damage.
    """
    advice = (f"the journal {path} is {{}}; it was left exactly as found. Move it aside (e.g. `mv {path}"
              f" {path}.damaged`) and start again: the bundles in the outbox are adopted from their own records")
    try:
        conn = connect_readonly(path)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "unable to open" in str(exc) or not os.access(path, os.R_OK):
            raise StartRefused(f"cannot open the journal {path}: {exc} (permissions?)") from exc
        raise JournalDamaged(advice.format(f"not readable as a journal ({exc})")) from exc
    except sqlite3.DatabaseError as exc:
        raise JournalDamaged(advice.format(f"not readable as a journal ({exc})")) from exc
    if rows != ["ok"]:
        raise JournalDamaged(advice.format(f"damaged ({'; '.join(rows)[:200]})"))


def _stored_meta(db: sqlite_utils.Database) -> dict[str, str]:
    if "meta" not in db.table_names():
        return {}
    return dict(db.execute("SELECT key, value FROM meta").fetchall())


class Journal:
    """The capture daemon's view of the journal (single writer of shots and frames).

    ``create=False`` (``recover``, ``session``) refuses a missing journal instead of starting a new kit.
    ``fresh`` says whether this journal was just created (no journal id before): recovery then adopts the
    bundles an earlier journal left in the outbox and continues their shot numbers.
    """

    def __init__(self, path: Path, kit_id: str, wall: Callable[[], str], create: bool = True) -> None:
        self.path = path
        self.wall = wall  # ISO-8601 local time with offset
        if not path.exists() and not create:
            raise StartRefused(f"no journal at {path}: the capture daemon has not run in this data directory")
        if path.exists() and path.stat().st_size > 0:
            check_integrity(path)
        try:
            self.db = connect(path)
            meta = _stored_meta(self.db)
            if meta.get("kit_id", kit_id) != kit_id:
                self.db.conn.close()
                raise StartRefused(f"the journal {path} belongs to kit {meta['kit_id']!r} but this kit's config says"
                                   f" {kit_id!r}: put the card back in kit {meta['kit_id']!r}, or fix kit_id")
            self.fresh = "journal_id" not in meta
            with self._tx():
                self._create()
                self.kit_id = self._meta("kit_id", kit_id)
                self.journal_id = self._meta("journal_id", secrets.token_hex(4))
                self._meta("schema", str(SCHEMA_VERSION))
        except sqlite3.Error as exc:
            raise StorageError(f"journal {path}: {exc}") from exc

    # ---- schema
    def _create(self) -> None:
        db = self.db
        db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
        db["sessions"].create({"id": int, "opened_at": str, "closed_at": str, "school": str, "label": str},
                              pk="id", not_null={"opened_at"}, if_not_exists=True)
        db["reads"].create(
            {"id": int, "session_id": int, "at": str, "kind": str, "key": str, "source": str, "reader": str,
             "check_status": str, "check_detail": str},
            pk="id", foreign_keys=[("session_id", "sessions", "id")], not_null={"at", "kind", "key", "source"},
            if_not_exists=True)
        db["shots"].create(
            {"number": int, "session_id": int, "read_id": int, "status": str, "opened_at": str, "closed_at": str,
             "void_reason": str, "selected_frame": int},
            pk="number", foreign_keys=[("session_id", "sessions", "id"), ("read_id", "reads", "id")],
            not_null={"status", "opened_at"}, if_not_exists=True)
        db["frames"].create(
            {"shot": int, "frame": int, "capture_id": str, "status": str, "dest": str, "at": str, "verdict": str,
             "reasons": str, "accepted_by_operator": int, "sha256": str, "bytes": int, "path": str,
             "supersedes": str, "detail": str},
            pk=("shot", "frame"), foreign_keys=[("shot", "shots", "number")], not_null={"status", "at"},
            if_not_exists=True)
        db["events"].create({"id": int, "at": str, "session_id": int, "kind": str, "shot": int, "detail": str},
                            pk="id", not_null={"at", "kind"}, if_not_exists=True)
        # bundles found in the outbox that this journal did not write (an earlier journal's, lost or replaced):
        # recorded from their own records and left in the outbox for sync (docs/operations.md)
        db["adopted"].create(
            {"capture_id": str, "kit_id": str, "journal_id": str, "shot": int, "frame": int, "sha256": str,
             "bytes": int, "path": str, "at": str, "detail": str},
            pk="capture_id", not_null={"journal_id", "shot", "frame", "at"}, if_not_exists=True)
        # the sync daemon's rows (it writes nothing else): one per bundle it has seen, pending -> uploading ->
        # confirmed (or refused by the centre, with the reason). Only confirmed bundles may be purged.
        db["uploads"].create(
            {"capture_id": str, "status": str, "sha256": str, "bytes": int, "attempts": int, "last_error": str,
             "first_attempt_at": str, "last_attempt_at": str, "confirmed_at": str, "upload_url": str,
             "centre_sha256": str},
            pk="capture_id", not_null={"status", "sha256"}, defaults={"attempts": 0}, if_not_exists=True)
        # the sync daemon's own state (roster ETag, last contact, clock offset): its rows only
        db["sync_state"].create({"key": str, "value": str, "at": str}, pk="key", if_not_exists=True)
        # sealed files purged from the kit after the centre confirmed them (docs/privacy.md)
        db["purged"].create({"capture_id": str, "path": str, "at": str, "confirmed_at": str}, pk="capture_id",
                            if_not_exists=True)
        for column in ("photo_sha256", "derivative_sha256"):  # of the plain parts, for checks at delivery
            if column not in db["frames"].columns_dict:
                db["frames"].add_column(column, str)
        db["reads"].create_index(["kind", "key"], if_not_exists=True)
        db["uploads"].create_index(["status"], if_not_exists=True)
        db["frames"].create_index(["capture_id"], unique=True, if_not_exists=True)
        db["shots"].create_index(["status"], if_not_exists=True)

    def _meta(self, key: str, default: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", [key]).fetchone()
        if row:
            return row[0]
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", [key, default])
        return default

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One short write transaction; any SQLite error becomes StorageError."""
        try:
            with self.db.conn:
                yield
        except sqlite3.Error as exc:
            raise StorageError(f"journal write failed: {exc}") from exc

    def _one(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> tuple | None:
        try:
            return self.db.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"journal read failed: {exc}") from exc

    def close(self) -> None:
        self.db.conn.close()

    # ---- sessions
    def current_session(self) -> int | None:
        row = self._one("SELECT id FROM sessions WHERE closed_at IS NULL ORDER BY id DESC LIMIT 1")
        return row[0] if row else None

    def open_session(self, school: str, label: str = "") -> int:
        with self._tx():
            cur = self.db.execute("INSERT INTO sessions(opened_at, school, label) VALUES (?, ?, ?)",
                                  [self.wall(), school, label])
        return cur.lastrowid

    def close_session(self, session_id: int) -> None:
        with self._tx():
            self.db.execute("UPDATE sessions SET closed_at=? WHERE id=? AND closed_at IS NULL",
                            [self.wall(), session_id])

    # ---- reads and shots
    def record_read(self, session_id: int, identity: Identity, check_status: str, check_detail: str) -> int:
        row = stored_form(identity)
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO reads(session_id, at, kind, key, source, reader, check_status, check_detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [session_id, self.wall(), row["kind"], row["key"], row["source"], row["reader"], check_status,
                 check_detail])
        return cur.lastrowid

    def next_shot(self) -> int:
        """The next unused shot number: after every shot here, and after ``first_shot`` (set by adoption)."""
        row = self._one("SELECT MAX(COALESCE((SELECT MAX(number) FROM shots), 0),"
                        " COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'first_shot'), 1) - 1) + 1")
        return row[0]

    def prior_shot(self, identity: Identity) -> PriorShot | None:
        """The latest captured shot of this identity on this kit, if any."""
        key = stored_form(identity)
        row = self._one(
            "SELECT s.number, s.session_id, (SELECT MAX(frame) FROM frames f WHERE f.shot = s.number)"
            " FROM shots s JOIN reads r ON r.id = s.read_id"
            " WHERE r.kind = ? AND r.key = ? AND s.status = 'captured' ORDER BY s.number DESC LIMIT 1",
            [key["kind"], key["key"]])
        return PriorShot(row[0], row[1], row[2] or 0) if row else None

    def open_shot(self, number: int, session_id: int, read_id: int) -> None:
        with self._tx():
            self.db.execute(
                "INSERT INTO shots(number, session_id, read_id, status, opened_at) VALUES (?, ?, ?, 'open', ?)",
                [number, session_id, read_id, self.wall()])

    def void_shot(self, number: int, reason: str) -> None:
        with self._tx():
            cur = self.db.execute(
                "UPDATE shots SET status='void', void_reason=?, closed_at=? WHERE number=? AND status='open'",
                [reason, self.wall(), number])
        if cur.rowcount != 1:
            raise StorageError(f"shot {number} cannot be voided: not open")

    def shot(self, number: int) -> ShotInfo:
        row = self._one(
            "SELECT s.number, s.session_id, s.status, r.kind, r.key, r.source, r.reader, r.check_status,"
            " s.selected_frame FROM shots s JOIN reads r ON r.id = s.read_id WHERE s.number = ?", [number])
        if row is None:
            raise StorageError(f"shot {number} is not in the journal")
        return ShotInfo(row[0], row[1], row[2], dict(zip(("kind", "key", "source", "reader"), row[3:7], strict=True)),
                        row[7], row[8])

    def capture_id(self, shot: int, frame: int) -> str:
        """Globally unique, stable from birth: kit, journal instance (a re-flashed kit gets a new one), shot, frame."""
        return f"{self.kit_id}-{self.journal_id}-{shot:06d}-{frame:02d}"

    def selected_capture_id(self, shot: int) -> str | None:
        row = self._one("SELECT f.capture_id FROM shots s JOIN frames f ON f.shot = s.number"
                        " AND f.frame = s.selected_frame WHERE s.number = ?", [shot])
        return row[0] if row else None

    # ---- frames
    def begin_frame(self, shot: int, frame: int, dest: str, verdict: str, reasons: tuple[str, ...],
                    accepted_by_operator: bool = False, supersedes: str | None = None) -> str:
        """Record the intent to store a frame (``dest`` 'outbox' or 'rejects'); returns its capture id."""
        cid = self.capture_id(shot, frame)
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO frames(shot, frame, capture_id, status, dest, at, verdict, reasons,"
                " accepted_by_operator, supersedes) VALUES (?, ?, ?, 'storing', ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(shot, frame) DO UPDATE SET status='storing', dest=excluded.dest, at=excluded.at,"
                " verdict=excluded.verdict, reasons=excluded.reasons, supersedes=excluded.supersedes,"
                " accepted_by_operator=excluded.accepted_by_operator"
                " WHERE frames.status = 'failed' OR (frames.status = 'rejected' AND excluded.dest = 'outbox')",
                [shot, frame, cid, dest, self.wall(), verdict, json.dumps(list(reasons)), int(accepted_by_operator),
                 supersedes])
            if cur.rowcount != 1:
                raise StorageError(f"frame {shot}/{frame} already recorded")
        return cid

    def finish_frame(self, shot: int, frame: int, sha256: str, size: int, path: str, photo_sha256: str = "",
                     derivative_sha256: str = "") -> None:
        """The frame's file is durable: mark it, and for the outbox select it and capture the shot.

        A void shot stays void: its number was given up, so a frame for it is kept (status ``stored`` in the
        frames table, its bundle in the outbox) but the shot is not turned into a captured one, and the
        call raises StorageError so the daemon stops rather than carry on from an impossible state.
        """
        with self._tx():
            row = self.db.execute(
                "SELECT f.dest, s.status FROM frames f JOIN shots s ON s.number = f.shot"
                " WHERE f.shot=? AND f.frame=? AND f.status='storing'", [shot, frame]).fetchone()
            if row is None:
                raise StorageError(f"frame {shot}/{frame} was not begun")
            status = "stored" if row[0] == "outbox" else "rejected"
            self.db.execute("UPDATE frames SET status=?, sha256=?, bytes=?, path=?, photo_sha256=?, derivative_sha256=?"
                            " WHERE shot=? AND frame=?",
                            [status, sha256, size, path, photo_sha256 or None, derivative_sha256 or None, shot, frame])
            void = status == "stored" and row[1] == "void"
            if status == "stored" and not void:
                self.db.execute(
                    "UPDATE shots SET status='captured', selected_frame=?, closed_at=COALESCE(closed_at, ?)"
                    " WHERE number=?", [frame, self.wall(), shot])
            if void:
                self.db.execute("INSERT INTO events(at, kind, shot, detail) VALUES (?, 'frame_for_void_shot', ?, ?)",
                                [self.wall(), shot, f"frame {frame} stored at {path}; the shot stays void"])
        if void:
            raise StorageError(f"shot {shot} is void: frame {frame} was kept at {path} but cannot capture it")

    def frame_failed(self, shot: int, frame: int, reason: str) -> None:
        with self._tx():
            self.db.execute(
                "INSERT INTO frames(shot, frame, capture_id, status, at, detail) VALUES (?, ?, ?, 'failed', ?, ?)",
                [shot, frame, self.capture_id(shot, frame), self.wall(), reason])

    def frames_of(self, shot: int) -> list[dict[str, Any]]:
        """The history of a shot's frames (goes into every bundle of that shot)."""
        rows = self.db.execute("SELECT frame, status, at, verdict, reasons, detail, accepted_by_operator FROM frames"
                               " WHERE shot = ? ORDER BY frame", [shot]).fetchall()
        return [{"frame": f, "status": st, "at": at, "verdict": v, "reasons": json.loads(r) if r else [],
                 "detail": d, "accepted_by_operator": bool(acc)} for f, st, at, v, r, d, acc in rows]

    # ---- events
    def event(self, kind: str, detail: str = "", shot: int | None = None, session_id: int | None = None) -> None:
        with self._tx():
            self.db.execute("INSERT INTO events(at, session_id, kind, shot, detail) VALUES (?, ?, ?, ?, ?)",
                            [self.wall(), session_id, kind, shot, detail])

    # ---- recovery
    def storing_frames(self) -> list[tuple[int, int, str, str]]:
        """Frames whose intent was recorded but not finished: (shot, frame, capture_id, dest)."""
        return [tuple(r) for r in self.db.execute(
            "SELECT shot, frame, capture_id, dest FROM frames WHERE status='storing' ORDER BY shot, frame")]

    def mark_lost(self, shot: int, frame: int, detail: str) -> None:
        with self._tx():
            self.db.execute("UPDATE frames SET status='lost', detail=? WHERE shot=? AND frame=?",
                            [detail, shot, frame])

    def open_shots(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT number FROM shots WHERE status='open' ORDER BY number")]

    # ---- purge (docs/privacy.md): only what the centre confirmed, after the retention
    def purgeable(self, confirmed_before: str) -> list[tuple[str, str, str]]:
        """(capture id, path, confirmed_at) of outbox bundles the centre confirmed before the cutoff, and of
        kept rejects whose shot is settled: its selected bundle confirmed before the cutoff, or void."""
        bundles = self.db.execute(
            "SELECT u.capture_id, COALESCE(f.path, a.path), u.confirmed_at FROM uploads u"
            " LEFT JOIN frames f ON f.capture_id = u.capture_id LEFT JOIN adopted a ON a.capture_id = u.capture_id"
            " WHERE u.status = 'confirmed' AND u.confirmed_at < ? AND COALESCE(f.path, a.path) IS NOT NULL"
            " AND u.capture_id NOT IN (SELECT capture_id FROM purged)", [confirmed_before]).fetchall()
        rejects = self.db.execute(
            "SELECT f.capture_id, f.path, COALESCE(u.confirmed_at, s.closed_at) FROM frames f"
            " JOIN shots s ON s.number = f.shot"
            " LEFT JOIN frames sel ON sel.shot = s.number AND sel.frame = s.selected_frame"
            " LEFT JOIN uploads u ON u.capture_id = sel.capture_id AND u.status = 'confirmed'"
            " WHERE f.status = 'rejected' AND f.capture_id NOT IN (SELECT capture_id FROM purged)"
            " AND ((s.status = 'captured' AND u.confirmed_at < ?) OR (s.status = 'void' AND s.closed_at < ?))",
            [confirmed_before, confirmed_before]).fetchall()
        return [tuple(r) for r in bundles + rejects]

    def mark_purged(self, capture_id: str, path: str, confirmed_at: str) -> None:
        with self._tx():
            self.db.execute("INSERT INTO purged(capture_id, path, at, confirmed_at) VALUES (?, ?, ?, ?)"
                            " ON CONFLICT(capture_id) DO NOTHING", [capture_id, path, self.wall(), confirmed_at])

    def known_capture_ids(self) -> set[str]:
        """Capture ids this journal accounts for in the outbox: its own frames and adopted bundles."""
        return {r[0] for r in self.db.execute(
            "SELECT capture_id FROM frames WHERE dest='outbox' UNION SELECT capture_id FROM adopted")}

    def adopt(self, capture_id: str, journal_id: str, shot: int, frame: int, sha256: str | None, size: int | None,
              path: str, detail: str) -> None:
        """Record a bundle another journal wrote (it stays in the outbox; sync uploads it like any other).

        While this journal has no shot of its own yet, ``first_shot`` moves past the adopted shot, so the
        crew's numbers carry on where the lost journal stopped (and a number is never given twice).
        """
        with self._tx():
            self.db.execute(
                "INSERT INTO adopted(capture_id, kit_id, journal_id, shot, frame, sha256, bytes, path, at, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(capture_id) DO NOTHING",
                [capture_id, self.kit_id, journal_id, shot, frame, sha256, size, path, self.wall(), detail])
            if self.db.execute("SELECT COUNT(*) FROM shots").fetchone()[0] == 0:
                self.db.execute(
                    "INSERT INTO meta(key, value) VALUES ('first_shot', ?) ON CONFLICT(key) DO UPDATE"
                    " SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))", [str(shot + 1)])

    # ---- summaries (status command, simulator, tests)
    def counts(self, session_id: int | None = None) -> dict[str, int]:
        where, params = ("WHERE session_id = ?", [session_id]) if session_id else ("", [])
        shots = dict(self.db.execute(f"SELECT status, COUNT(*) FROM shots {where} GROUP BY status", params).fetchall())
        fwhere = "WHERE shot IN (SELECT number FROM shots WHERE session_id = ?)" if session_id else ""
        frames = dict(self.db.execute(f"SELECT status, COUNT(*) FROM frames {fwhere} GROUP BY status",
                                      params).fetchall())
        return {"shots": sum(shots.values()), **{f"shots_{k}": v for k, v in shots.items()},
                **{f"frames_{k}": v for k, v in frames.items()}}

    def voids(self, session_id: int | None = None) -> list[tuple[int, str]]:
        where, params = ("AND session_id = ?", [session_id]) if session_id else ("", [])
        return [tuple(r) for r in self.db.execute(
            f"SELECT number, void_reason FROM shots WHERE status='void' {where} ORDER BY number", params)]
