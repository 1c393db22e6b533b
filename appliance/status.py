"""``capturekit status``: what the crew and support need to know at a glance, read from the journal."""

from __future__ import annotations

import shutil
import sqlite3
from typing import Any

from .config import Config
from .errors import JournalDamaged
from .journal import check_integrity, connect_readonly
from .roster import Roster
from .spool import Spool


def status_report(cfg: Config, deep: bool = False) -> dict[str, Any]:
    """Counts for the current session and the kit, recent voids and warnings, outbox, damage and disk.

    Read-only: opens the journal read-only and takes no lock, so it works beside the running daemon.
    Every bundle is checked shallowly (record and sizes); ``deep`` also checks every SHA-256 now.
    """
    path = cfg.data_path / "journal.sqlite"
    if not path.exists():
        return {"text": f"no journal at {path}: the daemon has not run here yet", "journal": None}
    check_integrity(path)
    try:
        return _report(cfg, connect_readonly(path), deep)
    except sqlite3.DatabaseError as exc:
        raise JournalDamaged(f"the journal {path} cannot be read: {exc}") from None


def _report(cfg: Config, conn: sqlite3.Connection, deep: bool) -> dict[str, Any]:
    try:
        q = conn.execute
        session = q("SELECT id, opened_at, school FROM sessions WHERE closed_at IS NULL ORDER BY id DESC LIMIT 1"
                    ).fetchone()
        sid = session[0] if session else None
        shots = dict(q("SELECT status, COUNT(*) FROM shots WHERE session_id IS ? GROUP BY status", [sid]).fetchall())
        frames = dict(q("SELECT f.status, COUNT(*) FROM frames f JOIN shots s ON s.number = f.shot"
                        " WHERE s.session_id IS ? GROUP BY f.status", [sid]).fetchall())
        voids = q("SELECT number, void_reason FROM shots WHERE status='void' AND session_id IS ?"
                  " ORDER BY number DESC LIMIT 10", [sid]).fetchall()
        warns = q("SELECT f.shot, f.frame, f.reasons FROM frames f JOIN shots s ON s.number = f.shot"
                  " WHERE s.session_id IS ? AND (f.verdict = 'warn' OR f.accepted_by_operator = 1)"
                  " ORDER BY f.shot DESC LIMIT 10", [sid]).fetchall()
        last = q("SELECT MAX(number) FROM shots").fetchone()[0] or 0
        kit_total = dict(q("SELECT status, COUNT(*) FROM shots GROUP BY status").fetchall())
        events = q("SELECT at, kind, shot, detail FROM events WHERE kind IN ('recovery', 'recovery_problem',"
                   " 'reader_problem', 'camera_restart') ORDER BY id DESC LIMIT 5").fetchall()
        since = q("SELECT COALESCE(MAX(id), 0) FROM events WHERE kind = 'daemon_start'").fetchone()[0]
        scrubbed = dict(tuple(d.split(": ", 1)) for (d,) in q(
            "SELECT detail FROM events WHERE kind = 'bundle_damaged' AND id >= ?", [since]) if ": " in d)
        adopted = q("SELECT COUNT(*) FROM adopted").fetchone()[0] if _has(q, "adopted") else 0
        purged = q("SELECT COUNT(*) FROM purged").fetchone()[0] if _has(q, "purged") else 0
        uploads = dict(q("SELECT status, COUNT(*) FROM uploads GROUP BY status").fetchall()) if _has(
            q, "uploads") else {}
        sync = _sync(q) if _has(q, "sync_state") else {}
        confirmed_ids = {r[0] for r in q("SELECT capture_id FROM uploads WHERE status = 'confirmed'")} if _has(
            q, "uploads") else set()
    finally:
        conn.close()
    spool = Spool(cfg.data_path / "spool", create=False)
    ids = spool.bundle_ids() if spool.outbox.is_dir() else []
    pending = len(ids)
    kept = sum(cid in confirmed_ids for cid in ids)
    damaged = {cid: why for cid in ids if (why := spool.check(cid, deep=deep))}
    damaged.update({cid: why for cid, why in scrubbed.items() if cid in ids and cid not in damaged})
    strays = spool.strays() if spool.outbox.is_dir() else []
    disk = shutil.disk_usage(cfg.data_path)
    report = {
        "kit_id": cfg.kit_id, "session": sid, "session_opened": session[1] if session else None,
        "shots": shots, "frames": frames, "last_shot": last, "kit_shots": kit_total,
        "voids": [{"shot": n, "reason": r} for n, r in voids],
        "warnings": [{"shot": s, "frame": f, "reasons": r} for s, f, r in warns],
        "events": [{"at": a, "kind": k, "shot": s, "detail": d} for a, k, s, d in events],
        "outbox_bundles": pending, "adopted_bundles": adopted, "damaged": damaged, "strays": strays,
        "purged": purged, "uploads": uploads, "sync": sync,
        "roster_students": _roster_count(cfg),
        "disk_free_mb": disk.free // 2**20,
    }
    def counts(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"

    lines = [
        f"kit {cfg.kit_id} — session {sid or '(none open)'} opened {report['session_opened'] or '-'}",
        f"  shots this session: {sum(shots.values())} ({counts(shots)})",
        f"  frames: {counts(frames)}",
        f"  last shot number on this kit: {last} ({counts(kit_total)})",
        f"  outbox: {pending} sealed bundles ({kept} of them confirmed by the centre, kept until"
        f" purged); roster: {report['roster_students']} student keys; disk free: {report['disk_free_mb']} MB",
    ]
    if uploads or purged:
        lines.append(f"  uploads: {counts(uploads)}; purged after confirmation: {purged}")
    if sync and (sync["last_contact"] or sync["last_error"] or uploads):
        lines.append(f"  sync: backlog {sync['backlog']} bundles, oldest pending since {sync['oldest_pending'] or '-'};"
                     f" last confirmed {sync['last_confirmed'] or '-'}; centre last reached"
                     f" {sync['last_contact'] or 'never'}" + (f"; last error {sync['last_error']}"
                                                            if sync["last_error"] else ""))
    if adopted:
        lines.append(f"  adopted bundles (an earlier journal's, kept for sync): {adopted}")
    lines += [f"  DAMAGED bundle {cid}: {why} — it stays in the outbox; call support" for cid, why in damaged.items()]
    lines += [f"  outbox/{name} is not a bundle (left alone)" for name in strays]
    lines += [f"  void {v['shot']}: {v['reason']}" for v in report["voids"]]
    lines += [f"  warn {w['shot']}/{w['frame']}: {w['reasons']}" for w in report["warnings"]]
    lines += [f"  {e['at']} {e['kind']}: {e['detail']}" for e in report["events"]]
    report["text"] = "\n".join(lines)
    return report


def _sync(q: Any) -> dict[str, Any]:
    """What the sync daemon recorded: backlog, oldest pending, last confirmation, centre reachability."""
    import json

    state = {k: json.loads(v) for k, v in q("SELECT key, value FROM sync_state").fetchall()}
    n, oldest = q("SELECT COUNT(*), MIN(f.at) FROM uploads u LEFT JOIN frames f ON f.capture_id = u.capture_id"
                  " WHERE u.status IN ('pending', 'uploading')").fetchone()
    last = q("SELECT MAX(confirmed_at) FROM uploads WHERE status = 'confirmed'").fetchone()[0]
    err = state.get("last_error") or {}
    contact = state.get("last_contact_at")
    return {"backlog": n, "oldest_pending": oldest, "last_confirmed": last, "last_contact": contact,
            "last_error": err.get("error") if err and (not contact or err.get("at", "") > contact) else None,
            "clock_offset_s": state.get("clock_offset_s")}


def _has(q: Any, table: str) -> bool:
    return q("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", [table]).fetchone() is not None


def _roster_count(cfg: Config) -> int:
    roster = Roster(cfg.roster_path)
    try:
        return roster.count()
    finally:
        roster.close()
