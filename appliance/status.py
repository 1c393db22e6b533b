"""``capturekit status``: what the crew and support need to know at a glance, read from the journal."""

from __future__ import annotations

import shutil
from typing import Any

from .config import Config
from .journal import connect
from .roster import Roster


def status_report(cfg: Config) -> dict[str, Any]:
    """Counts for the current session and the kit, recent voids and warnings, outbox and disk."""
    path = cfg.data_path / "journal.sqlite"
    if not path.exists():
        return {"text": f"no journal at {path}: the daemon has not run here yet", "journal": None}
    db = connect(path)
    try:
        q = db.execute
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
        events = q("SELECT at, kind, shot, detail FROM events WHERE kind IN ('recovery', 'reader_problem',"
                   " 'camera_restart') ORDER BY id DESC LIMIT 5").fetchall()
    finally:
        db.conn.close()
    outbox = cfg.data_path / "spool" / "outbox"
    pending = sum(1 for p in outbox.iterdir() if p.is_dir() and not p.name.startswith(".")) if outbox.exists() else 0
    disk = shutil.disk_usage(cfg.data_path)
    report = {
        "kit_id": cfg.kit_id, "session": sid, "session_opened": session[1] if session else None,
        "shots": shots, "frames": frames, "last_shot": last, "kit_shots": kit_total,
        "voids": [{"shot": n, "reason": r} for n, r in voids],
        "warnings": [{"shot": s, "frame": f, "reasons": r} for s, f, r in warns],
        "events": [{"at": a, "kind": k, "shot": s, "detail": d} for a, k, s, d in events],
        "outbox_bundles": pending, "roster_students": Roster(cfg.roster_path).count(),
        "disk_free_mb": disk.free // 2**20,
    }
    def counts(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"

    lines = [
        f"kit {cfg.kit_id} — session {sid or '(none open)'} opened {report['session_opened'] or '-'}",
        f"  shots this session: {sum(shots.values())} ({counts(shots)})",
        f"  frames: {counts(frames)}",
        f"  last shot number on this kit: {last} ({counts(kit_total)})",
        f"  outbox: {pending} bundles waiting for sync; roster: {report['roster_students']} students;"
        f" disk free: {report['disk_free_mb']} MB",
    ]
    lines += [f"  void {v['shot']}: {v['reason']}" for v in report["voids"]]
    lines += [f"  warn {w['shot']}/{w['frame']}: {w['reasons']}" for w in report["warnings"]]
    lines += [f"  {e['at']} {e['kind']}: {e['detail']}" for e in report["events"]]
    report["text"] = "\n".join(lines)
    return report
