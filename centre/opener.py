"""Every centre process opens the bundles kits have uploaded, just after the kit was answered.

A confirmed upload is a ``received`` bundle (:func:`centre.ingest.finalize`); :class:`Opener` is one thread per
``capturekit centre serve`` that turns it into a capture (:func:`centre.ingest.open_received`). It wakes when
this process receives a bundle (and waits for a pause in a burst of them, at most ``max_delay_s``) and sweeps
the database every ``sweep_s`` for bundles another process received, or one that died while opening (its
lease, ``open_lease_s``, ran out). Opening runs at a lower CPU priority
than answering kits. What reads captures for people (export, progress) calls :func:`until_opened` first.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time

from sqlalchemy import Engine, func, select

from .db import bundles, utcnow
from .ingest import claim, open_received
from .sealing import KeyRing
from .storage import Storage

log = logging.getLogger("capturekit.centre.opener")


def open_due(engine: Engine, storage: Storage, keys: KeyRing, lease_s: float, limit: int = 50,
             received_before: dt.datetime | None = None) -> int:
    """Open up to ``limit`` received bundles whose lease allows it now (and, with ``received_before``, that
    arrived before then), oldest first; the number opened."""
    where = [bundles.c.status == "received", bundles.c.open_after <= utcnow()]
    if received_before is not None:
        where.append(bundles.c.received_at <= received_before)
    with engine.connect() as conn:
        due = [cid for (cid,) in conn.execute(
            select(bundles.c.capture_id).where(*where).order_by(bundles.c.open_after).limit(limit))]
    opened = 0
    for cid in due:
        if claim(engine, cid, lease_s) and open_received(engine, storage, keys, cid) != "gone":
            opened += 1
    return opened


def waiting(engine: Engine) -> int:
    """Bundles received and not opened yet (by anyone)."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(bundles)
                            .where(bundles.c.status == "received")).scalar_one()


def until_opened(engine: Engine, timeout: float = 60.0, storage: Storage | None = None, keys: KeyRing | None = None,
                 lease_s: float = 30.0) -> int:
    """Wait, up to ``timeout``, until no received bundle is left unopened; the number still left. With ``keys``
    (and ``storage``), open what is due here meanwhile; without, the serving processes' openers do it."""
    deadline = time.monotonic() + timeout
    while True:
        if keys is not None and storage is not None:
            while open_due(engine, storage, keys, lease_s):
                pass
        left = waiting(engine)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


class Opener:
    """The background thread of one centre process (module doc).

    Kits first: while bundles keep arriving here (one within ``quiet_s``), it opens only those that have
    waited ``max_delay_s``; a burst of uploads (fifty kits back on the network) is answered at the rate of
    receiving alone, and opened as soon as it thins out. Opening costs about as much CPU as receiving."""

    def __init__(self, engine: Engine, storage: Storage, keys: KeyRing, lease_s: float,
                 sweep_s: float = 2.0, quiet_s: float = 0.5, max_delay_s: float = 15.0) -> None:
        self.engine, self.storage, self.keys = engine, storage, keys
        self.lease_s, self.sweep_s, self.quiet_s, self.max_delay_s = lease_s, sweep_s, quiet_s, max_delay_s
        self._last_poke = -1e9  # (monotonic)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="opener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """A bundle was just received here: open it soon rather than at the next sweep."""
        self._last_poke = time.monotonic()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:  # Linux: a thread has its own nice value; kits' requests come first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except OSError as exc:
            log.info("opener stays at normal priority: %s", exc)
        while not self._stop.is_set():
            self._wake.clear()
            busy = time.monotonic() - self._last_poke < self.quiet_s
            before = utcnow() - dt.timedelta(seconds=self.max_delay_s) if busy else None
            try:
                if open_due(self.engine, self.storage, self.keys, self.lease_s, limit=10, received_before=before):
                    continue
            except Exception:  # the database or the store failed: say so, try again at the next sweep
                log.exception("opening received bundles failed; trying again in %.0f s", self.sweep_s)
            if busy:  # uploads are arriving: look again once they pause (pokes meanwhile change nothing)
                self._stop.wait(self.quiet_s)
            else:
                self._wake.wait(self.sweep_s)
