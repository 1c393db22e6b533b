"""Deleting sealed files from the kit once the centre has them (docs/privacy.md).

A bundle is purged only when the sync daemon has recorded the centre's confirmation in the journal
(``uploads.status = 'confirmed'``: the centre named the capture id and the SHA-256 it stored) and the
retention has passed: by default the end of the day it was confirmed (``purge.end_of_day``), and at
least ``purge.keep_hours``. Kept rejects go with their shot: once its selected bundle is purgeable, or
the shot is void and closed before the cutoff. Unconfirmed bundles are never deleted. Deleting is a plain
unlink: the files are sealed, there is nothing to shred.
"""

from __future__ import annotations

import datetime as dt
import logging

from .config import PurgeConfig
from .journal import Journal
from .spool import Spool

log = logging.getLogger("capturekit.purge")


def cutoff(now_iso: str, cfg: PurgeConfig) -> str:
    """Files confirmed before this instant (ISO 8601, the journal's format) may go."""
    now = dt.datetime.fromisoformat(now_iso)
    limit = now - dt.timedelta(hours=cfg.keep_hours)
    if cfg.end_of_day:
        limit = min(limit, now.replace(hour=0, minute=0, second=0, microsecond=0))
    return limit.isoformat(timespec="milliseconds")


def purge(journal: Journal, spool: Spool, cfg: PurgeConfig) -> list[str]:
    """Delete what may go; return the capture ids purged (each journalled before the next is touched)."""
    done = []
    for cid, path, confirmed_at in journal.purgeable(cutoff(journal.wall(), cfg)):
        gone = spool.delete(spool.root / path)
        journal.mark_purged(cid, path, confirmed_at)
        if not gone:
            log.warning("purge: %s was already gone", path)
        done.append(cid)
    if done:
        log.info("purged %d sealed files the centre confirmed", len(done))
        journal.event("purge", f"{len(done)} files")
    return done
