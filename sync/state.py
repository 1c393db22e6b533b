"""The sync daemon's state, in the kit's journal: its ``uploads`` and ``sync_state`` rows and nothing else.

The capture daemon creates the journal and these tables; the sync daemon opens the same file (WAL, busy
timeout), reads what it needs (outbox bundles' rows, the last shot, camera failures for heartbeats) and
writes only its own rows, each in one short transaction — never one held across network I/O.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.errors import StartRefused, StorageError
from appliance.journal import connect

# pending -> uploading -> confirmed; or refused / conflict (the centre will never take it: kept, not retried)
# or damaged (the sealed bytes no longer match their SHA-256 on the kit: never sent)
FINAL = ("confirmed", "refused", "conflict", "damaged")


class SyncState:
    def __init__(self, path: Path, wall: Callable[[], str]) -> None:
        if not path.exists():
            raise StartRefused(f"no journal at {path}: start the capture daemon first (it creates it)")
        self.wall = wall
        self._lock = threading.Lock()  # one connection, used by the parallel uploads' threads too
        try:
            self.db = connect(path)
            # this connection only: a commit of the sync daemon's rows does not wait for its own fsync. A power
            # cut can lose its last few rows (a confirmation: the bundle is offered again, the centre answers
            # "already have it"); never a shot, since the capture daemon's commits (FULL) fsync the whole WAL,
            # these frames included, and the purge only acts on rows it reads back from that WAL
            self.db.execute("PRAGMA synchronous=NORMAL")
            tables = set(self.db.table_names())
        except sqlite3.Error as exc:
            raise StorageError(f"journal {path}: {exc}") from exc
        if not {"uploads", "sync_state"} <= tables:
            raise StartRefused(f"the journal {path} predates sync: start the capture daemon once to upgrade it")

    def close(self) -> None:
        self.db.conn.close()

    def _write(self, sql: str, params: list[Any]) -> None:
        try:
            with self._lock, self.db.conn:
                self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"journal write failed: {exc}") from exc

    def _rows(self, sql: str, params: list[Any] | tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"journal read failed: {exc}") from exc

    # ---- uploads
    def statuses(self) -> dict[str, str]:
        return dict(self._rows("SELECT capture_id, status FROM uploads"))

    def seen(self, capture_id: str, sha256: str, size: int) -> None:
        """A bundle sync has found in the outbox (frozen from here on: its id and SHA-256 never change)."""
        self._write("INSERT INTO uploads(capture_id, status, sha256, bytes, attempts) VALUES (?, 'pending', ?, ?, 0)"
                    " ON CONFLICT(capture_id) DO NOTHING", [capture_id, sha256, size])

    def upload_url(self, capture_id: str) -> str | None:
        rows = self._rows("SELECT upload_url FROM uploads WHERE capture_id = ?", [capture_id])
        return rows[0][0] if rows else None

    def attempt(self, capture_id: str) -> None:
        now = self.wall()
        self._write("UPDATE uploads SET status = 'uploading', attempts = attempts + 1, last_attempt_at = ?,"
                    " first_attempt_at = COALESCE(first_attempt_at, ?) WHERE capture_id = ?", [now, now, capture_id])

    def remember_url(self, capture_id: str, url: str) -> None:
        self._write("UPDATE uploads SET upload_url = ? WHERE capture_id = ?", [url, capture_id])

    def failed(self, capture_id: str, error: str, forget_url: bool = False) -> None:
        forget = ", upload_url = NULL" if forget_url else ""
        self._write(f"UPDATE uploads SET status = 'pending', last_error = ?{forget} WHERE capture_id = ?",
                    [error[:500], capture_id])

    def final(self, capture_id: str, status: str, error: str = "") -> None:
        if status not in FINAL:
            raise ValueError(f"not a final upload status: {status}")
        self._write("UPDATE uploads SET status = ?, last_error = ? WHERE capture_id = ?",
                    [status, error[:500] or None, capture_id])

    def confirm(self, capture_id: str, centre_sha256: str) -> None:
        self._write("UPDATE uploads SET status = 'confirmed', confirmed_at = ?, centre_sha256 = ?, last_error = NULL"
                    " WHERE capture_id = ?", [self.wall(), centre_sha256, capture_id])

    def backlog(self) -> dict[str, Any]:
        rows = self._rows("SELECT COUNT(*), COALESCE(SUM(u.bytes), 0), MIN(COALESCE(f.at, a.at)) FROM uploads u"
                          " LEFT JOIN frames f ON f.capture_id = u.capture_id"
                          " LEFT JOIN adopted a ON a.capture_id = u.capture_id"
                          " WHERE u.status IN ('pending', 'uploading')")
        n, size, oldest = rows[0]
        last = self._rows("SELECT MAX(confirmed_at) FROM uploads WHERE status = 'confirmed'")[0][0]
        return {"bundles": n, "bytes": size, "oldest_pending_at": oldest, "last_confirmed_at": last}

    # ---- for heartbeats
    def last_shot_at(self) -> str | None:
        return self._rows("SELECT MAX(at) FROM frames WHERE status = 'stored'")[0][0]

    def camera_failures_since_start(self) -> int:
        return self._rows("SELECT COUNT(*) FROM frames WHERE status = 'failed' AND at >= COALESCE("
                          "(SELECT MAX(at) FROM events WHERE kind = 'daemon_start'), '')")[0][0]

    # ---- sync_state
    def get(self, key: str) -> Any:
        rows = self._rows("SELECT value FROM sync_state WHERE key = ?", [key])
        return json.loads(rows[0][0]) if rows else None

    def put(self, key: str, value: Any) -> None:
        self._write("INSERT INTO sync_state(key, value, at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE"
                    " SET value = excluded.value, at = excluded.at", [key, json.dumps(value), self.wall()])
