"""Start-up recovery: settle whatever a crash or power cut interrupted, before the first student.

Order matters: half-written files go first, then frames whose intent was journalled (kept if their
file is complete and matches its hash, else marked lost), then shots still open (void: the daemon
stopped before they were stored), then bundles the journal does not know (moved aside, never
deleted). Afterwards every shot is ``captured`` or ``void`` and every outbox bundle has its row.
"""

from __future__ import annotations

import logging

from .journal import Journal
from .spool import Spool

log = logging.getLogger("capturekit.recovery")

INTERRUPTED = "interrupted: the daemon stopped before the shot was stored"


def recover(journal: Journal, spool: Spool) -> list[str]:
    """Make journal and spool consistent; return one line per thing done (also journalled)."""
    done = [f"removed half-written {name}" for name in spool.clean_temp()]
    bundles = set(spool.bundle_ids())
    for shot, frame, cid, dest in journal.storing_frames():
        if dest == "outbox":
            problem = spool.verify(cid) if cid in bundles else "bundle missing"
            if problem is None:
                rec = spool.record(cid)
                journal.finish_frame(shot, frame, rec["photo"]["sha256"], rec["photo"]["bytes"], f"outbox/{cid}")
                done.append(f"shot {shot} frame {frame}: bundle complete, kept")
                continue
            if cid in bundles:
                spool.quarantine(cid)
            journal.mark_lost(shot, frame, f"interrupted while spooling ({problem})")
            done.append(f"shot {shot} frame {frame}: lost ({problem})")
        else:
            written = spool.reject_written(cid)
            if written:
                journal.finish_frame(shot, frame, written.sha256, written.size, f"rejects/{written.path.name}")
                done.append(f"shot {shot} frame {frame}: reject kept")
            else:
                journal.mark_lost(shot, frame, "interrupted while keeping the reject")
                done.append(f"shot {shot} frame {frame}: reject lost")
    for shot in journal.open_shots():
        journal.void_shot(shot, INTERRUPTED)
        done.append(f"shot {shot}: void ({INTERRUPTED})")
    known = journal.known_capture_ids()
    for cid in sorted(set(spool.bundle_ids()) - known):
        dest = spool.quarantine(cid)
        done.append(f"bundle {cid} unknown to the journal: moved to {dest}")
        log.error("bundle %s has no journal row; moved to %s", cid, dest)
    for line in done:
        log.warning("recovery: %s", line)
    if done:
        journal.event("recovery", "; ".join(done))
    return done
