"""Start-up recovery: settle whatever a crash or power cut interrupted, before the first student.

Order matters: things that are not where they belong are put right (a file where a spool directory
belongs is moved aside), half-written files go, frames whose intent was journalled are kept if their
bundle is complete (else recorded lost, the incomplete bundle moved to ``orphans/``), shots still open
are voided (the daemon stopped before they were stored), and bundles the journal does not know — an
earlier journal's, lost or replaced — are **adopted** from their own clear headers (no key needed) and
stay in the outbox for sync: nothing captured ever leaves the upload path. Bundles of another kit make recovery refuse
before it changes anything (a card moved between kits).

Every step is journalled as it is taken (``recovery`` events between ``recovery_started`` and
``recovery_done``), so a crash during recovery leaves a record, and the next start simply carries on:
each step is idempotent. Oddities that are not ours to fix (a file in the outbox, an unreadable
bundle, a dot-directory such as a sync daemon's ``.sync-state/``) are logged and left alone; start-up
goes on.
"""

from __future__ import annotations

import logging

from .errors import StartRefused, StorageError
from .journal import Journal
from .spool import Spool

log = logging.getLogger("capturekit.recovery")

INTERRUPTED = "interrupted: the daemon stopped before the shot was stored"


class _Steps:
    """Lines of what recovery did, each journalled and logged the moment it is done."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.lines: list[str] = []

    def done(self, line: str, problem: bool = False) -> None:
        self.lines.append(line)
        (log.error if problem else log.warning)("recovery: %s", line)
        self.journal.event("recovery_problem" if problem else "recovery", line)


def recover(journal: Journal, spool: Spool) -> list[str]:
    """Make journal and spool consistent; return one line per thing done or found (also journalled)."""
    bundles = set(spool.bundle_ids())
    unknown = sorted(bundles - journal.known_capture_ids())
    headers, unreadable = {}, {}
    for cid in unknown:
        try:
            headers[cid] = spool.header(cid)
        except (OSError, ValueError) as exc:  # BundleFormatError is a ValueError
            unreadable[cid] = str(exc)
    foreign = sorted({h.kit_id for h in headers.values() if h.kit_id != journal.kit_id})
    if foreign:
        n = sum(h.kit_id != journal.kit_id for h in headers.values())
        raise StartRefused(f"the outbox {spool.outbox} holds {n} bundles of kit {', '.join(foreign)}, not of this kit"
                           f" ({journal.kit_id}): nothing was changed. Put the card back in that kit, or move those"
                           " bundles to another kit's outbox")
    steps = _Steps(journal)
    started = False

    def begin() -> None:
        nonlocal started
        if not started:
            journal.event("recovery_started", f"{len(bundles)} bundles in the outbox")
            started = True

    work = (spool.notes or unknown or spool.strays() or journal.storing_frames() or journal.open_shots()
            or any(spool.outbox.glob(".tmp-*")) or any(spool.rejects.glob(".tmp-*")))
    if work:
        begin()
    for note in spool.notes:
        steps.done(note, problem=True)
    for name in spool.clean_temp():
        steps.done(f"removed half-written {name}")
    for shot, frame, cid, dest in journal.storing_frames():
        if dest == "outbox":
            problem = spool.verify(cid) if cid in bundles else "bundle missing"
            if problem is None:
                h, path = spool.header(cid), spool.path(cid)
                journal.finish_frame(shot, frame, h.sealed_sha256, path.stat().st_size, f"outbox/{path.name}")
                steps.done(f"shot {shot} frame {frame}: bundle complete, kept")
                continue
            if cid in bundles:
                try:
                    dest_path = spool.quarantine(cid)
                    problem += f"; the incomplete bundle was moved to {dest_path}"
                except StorageError as exc:
                    problem += f"; the incomplete bundle stays where it is ({exc})"
            journal.mark_lost(shot, frame, f"interrupted while spooling ({problem})")
            steps.done(f"shot {shot} frame {frame}: lost ({problem})")
        else:
            written = spool.reject_written(cid)
            if written:
                journal.finish_frame(shot, frame, written.sha256, written.size, f"rejects/{written.path.name}")
                steps.done(f"shot {shot} frame {frame}: reject kept")
            else:
                journal.mark_lost(shot, frame, "interrupted while keeping the reject")
                steps.done(f"shot {shot} frame {frame}: reject lost")
    for shot in journal.open_shots():
        journal.void_shot(shot, INTERRUPTED)
        steps.done(f"shot {shot}: void ({INTERRUPTED})")
    for cid, h in headers.items():
        path = spool.path(cid)
        journal.adopt(cid, h.journal_id, h.shot, h.frame, h.sealed_sha256, path.stat().st_size,
                      f"outbox/{path.name}", "in the outbox, unknown to this journal")
        steps.done(f"bundle {cid} (journal {h.journal_id}, shot {h.shot}) was unknown to this journal:"
                   " adopted from its own record; it stays in the outbox for sync")
    for cid, why in unreadable.items():
        steps.done(f"bundle {cid} is unknown to the journal and its record is unreadable ({why}):"
                   " left in the outbox for support", problem=True)
    for name in spool.strays():
        steps.done(f"outbox/{name} is not a bundle directory: left alone", problem=True)
    if started:
        journal.event("recovery_done", f"{len(steps.lines)} steps")
    return steps.lines
