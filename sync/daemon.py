"""The sync daemon: outbox -> centre, exactly once, over whatever network there is (``capturekit sync``).

One loop (plus watchdog's observer, which only wakes it, and with ``sync.parallel_uploads`` > 1 a pool of
upload threads). Each turn it does the one thing that is due: a rescan of the outbox (at start, every
``sync.rescan_s``, and whenever the inotify observer saw a new bundle — the rescan is the truth, inotify may
drop events), a heartbeat, a roster pull, or uploads: the **oldest** pending bundles go out on the upload
clients, each taking the next as soon as its own is back (a sliding window); the loop records every outcome.
Otherwise it sleeps until the next thing is due or the observer wakes it. It knows nothing of the camera: it
reads sealed bundle files and writes only its own journal rows (:mod:`sync.state`), each in its own short
transaction.

Failures back off exponentially with jitter (``sync.backoff_initial_s`` doubling to ``backoff_max_s``),
honour a centre's ``Retry-After``, and cost one log line per back-off step. A bundle counts as uploaded
only when the centre's answer names its capture id and SHA-256 (:mod:`sync.client`). systemd's watchdog
is pinged each turn of the loop and while bytes of an upload are moving — never by a timer — so a loop
stuck on a socket stops the pings and gets the unit restarted.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance import datadir, notify
from appliance.bundle import BundleFormatError, read_header
from appliance.clock import SystemClock
from appliance.config import Config, ConfigError
from appliance.errors import EXIT_STORAGE, StorageError
from appliance.roster import RosterError, install_protected
from appliance.spool import SUFFIX, sha256_from

from .client import AuthFailed, Bundle, Capabilities, Centre, CentreError, Confirmation, Mismatch, Refused, Throttled
from .state import SyncState

log = logging.getLogger("capturekit.sync")
SYNC_LOCK = "sync.lock"


def read_token(cfg: Config) -> str:
    """The kit's token: ``sync.token`` or the contents of ``sync.token_file``; a ConfigError if neither."""
    if cfg.sync.token:
        return cfg.sync.token.strip()
    try:
        token = Path(cfg.sync.token_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"sync.token_file: cannot read {cfg.sync.token_file} ({exc.strerror}): put the token"
                          " `capturekit centre add-kit` printed there") from None
    if not token:
        raise ConfigError(f"sync.token_file: {cfg.sync.token_file} is empty")
    return token


def _is_bundle(name: str) -> bool:
    """A published bundle's file name (not the spool's temporary ``.tmp-…`` one)."""
    return name.endswith(SUFFIX) and not name.startswith(".")


@dataclass
class _Due:
    every: float
    at: float = 0.0  # monotonic time it is next due (0: now)

    def due(self, now: float) -> bool:
        return now >= self.at

    def done(self, now: float) -> None:
        self.at = now + self.every


class SyncDaemon:
    def __init__(self, cfg: Config, clock: Any = None, rng: random.Random | None = None) -> None:
        if not cfg.sync.centre_url:
            raise ConfigError("sync.centre_url: not set: the kit does not know where its centre is")
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        s = cfg.sync
        token = read_token(cfg)
        # one client (one connection) per upload in flight; a bandwidth cap is shared out between them
        caps = Capabilities()  # the centre's tus OPTIONS answer, asked by one client for all

        def client() -> Centre:
            return Centre(s.centre_url, token, s.connect_timeout_s, s.inactivity_timeout_s, s.chunk_bytes,
                          s.bandwidth_kbps * 1000 / 8 / s.parallel_uploads, s.ca_file, on_progress=self._progress,
                          capabilities=caps)

        self._centres = [client() for _ in range(s.parallel_uploads)]
        # heartbeats, roster and keys: the one upload client when uploads run in the loop's thread, else a
        # client of their own (the upload clients are busy in the pool's threads)
        self.centre = self._centres[0] if s.parallel_uploads == 1 else client()
        self._pool = ThreadPoolExecutor(s.parallel_uploads, "upload") if s.parallel_uploads > 1 else None
        self._free = list(range(s.parallel_uploads))[::-1]  # upload clients not in use (popped from the end)
        self._inflight: dict[Future, tuple[int, str, Bundle]] = {}  # in launch order: slot, capture id, bundle
        self._rank: dict[str, int] = {}  # capture id -> its bundle's mtime (oldest first)
        self.outbox = cfg.data_path / "spool" / "outbox"
        self.rescan = _Due(s.rescan_s)
        self.heart = _Due(s.heartbeat_s)
        self.rost = _Due(s.roster_s)
        self._wake = threading.Event()
        self._stop = False
        self._failures = 0  # consecutive failed contacts with the centre
        self._resume_at = 0.0  # monotonic: no upload before this (back-off)
        self._throttled_until = 0.0  # monotonic: the centre's Retry-After (a confirmation does not cut it short)
        self._pending: list[str] = []
        self._observer: Any = None
        self.exit_code: int | None = None
        self.uploaded = 0

    # ---- lifecycle
    def start(self) -> None:
        data = datadir.require(self.cfg.data_path)
        self._lock = datadir.Lock(data / SYNC_LOCK).acquire("sync daemon")
        self.state = SyncState(data / "journal.sqlite", self.clock.wall)
        self._watch()

    def _watch(self) -> None:
        """inotify on the outbox (via watchdog): a bundle published there (renamed within it, as the spool does,
        or written and closed, as a copy is) wakes the loop at once. Only those events: the daemon's own reads of
        a bundle open and close it too, and a wake on each of those rescanned the whole outbox once per upload.
        A bundle moved in from another directory is found by the next rescan (``sync.rescan_s``)."""
        if self._observer is not None or not self.outbox.is_dir():
            return
        from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        wake = self._wake

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                name = Path(str(getattr(event, "dest_path", "") or event.src_path)).name
                if event.event_type in ("moved", "closed") and _is_bundle(name):
                    wake.set()

        try:
            observer = Observer()
            observer.schedule(_Handler(), str(self.outbox), recursive=False,
                              event_filter=[FileMovedEvent, FileClosedEvent])
            observer.start()
        except OSError as exc:  # inotify limits: the periodic rescan still finds everything
            log.warning("cannot watch %s (%s): relying on the rescan every %g s", self.outbox, exc,
                        self.cfg.sync.rescan_s)
            return
        self._observer = observer

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._inflight and hasattr(self, "state"):
            # uploads in flight finish (their connect and inactivity timeouts bound them) and are recorded; one
            # left unrecorded would be safe too (the next start resumes it, or the centre says it has it)
            try:
                self._record(wait(list(self._inflight)).done)
            except StorageError as exc:
                log.error("uploads in flight at the stop not recorded: %s", exc)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for c in {id(c): c for c in [*self._centres, self.centre]}.values():
            c.close()
        if hasattr(self, "state"):
            self.state.close()
        if hasattr(self, "_lock"):
            self._lock.release()

    # ---- the loop
    def run(self) -> int:
        notify.ready(f"sync to {self.cfg.sync.centre_url}")
        while not self._stop and self.exit_code is None:
            try:
                self.step()
            except StorageError as exc:
                log.critical("storage failed: %s", exc)
                self.exit_code = EXIT_STORAGE
            except Exception as exc:  # a bug must not end the uploads: log it, back off, carry on
                log.exception("sync loop: unexpected error")
                self._back_off(CentreError(f"internal error: {exc}"))
            notify.watchdog()
        notify.stopping()
        return self.exit_code or 0

    def step(self) -> str:
        """Do the one thing that is due (or wait for it); return what was done (for tests and logs)."""
        now = time.monotonic()
        if self._wake.is_set() or self.rescan.due(now):
            self._wake.clear()
            self.scan()
            self.rescan.done(now)
            return "scan"
        online = now >= max(self._resume_at, self._throttled_until)
        if online and self.heart.due(now):
            self.heart.done(now)
            self._contact(self.heartbeat, "heartbeat")
            return "heartbeat"
        if online and self.rost.due(now):
            self.rost.done(now)
            self._contact(self.roster, "roster")
            return "roster"
        due = min(self.rescan.at, self.heart.at, self.rost.at) - now
        if (online and self._pending) or self._inflight:
            return self.upload(online, max(0.05, min(due, 5.0)))
        if self._pending or not online:
            due = min(due, max(self._resume_at, self._throttled_until) - now)
        self._wake.wait(max(0.05, min(due, 5.0)))  # short enough to keep pinging systemd
        return "wait"

    def settle(self, limit: float = 120.0) -> None:
        """Run until nothing is pending (tests, benchmarks): every bundle confirmed or given up on."""
        deadline = time.monotonic() + limit
        self.scan()
        while (self._pending or self._inflight) and time.monotonic() < deadline and self.exit_code is None:
            self.step()
        if self._pending or self._inflight:
            raise TimeoutError(f"{len(self._pending) + len(self._inflight)} bundles still pending after {limit} s")

    # ---- outbox
    def scan(self) -> None:
        """Every bundle in the outbox gets its uploads row; pending ones are queued oldest first."""
        self._watch()
        if not self.outbox.is_dir():
            self._pending = []
            return
        statuses = self.state.statuses()
        busy = {cid for _, cid, _ in self._inflight.values()}
        found = []
        for p in self.outbox.iterdir():
            if not _is_bundle(p.name) or not p.is_file():
                continue
            cid = p.name[:-len(SUFFIX)]
            if cid in busy or statuses.get(cid) in ("confirmed", "refused", "conflict", "damaged"):
                continue
            try:
                mtime = p.stat().st_mtime_ns
                if cid not in statuses:
                    with open(p, "rb") as fh:
                        header, offset = read_header(fh)
                    self.state.seen(cid, header.sealed_sha256, p.stat().st_size - offset)
            except FileNotFoundError:  # purged meanwhile
                continue
            except (OSError, BundleFormatError) as exc:
                log.error("bundle %s cannot be read (%s): not uploaded", cid, exc)
                self.state.seen(cid, "0" * 64, 0)
                self.state.final(cid, "damaged", str(exc))
                continue
            found.append((mtime, cid))
        self._rank = {cid: mtime for mtime, cid in found}
        self._pending = [cid for _, cid in sorted(found)]

    def _bundle(self, cid: str) -> Bundle | None:
        path = self.outbox / f"{cid}{SUFFIX}"
        try:
            with open(path, "rb") as fh:
                header, offset = read_header(fh)
            return Bundle(cid, path, offset, header.sizes["sealed"], header.sealed_sha256, header.to_dict())
        except FileNotFoundError:
            return None
        except (OSError, BundleFormatError) as exc:
            self._damaged(cid, str(exc))
            return None

    def _damaged(self, cid: str, why: str) -> None:
        log.error("bundle %s is damaged on the kit (%s): not uploaded; call support", cid, why)
        self.state.final(cid, "damaged", why)

    def _intact(self, bundle: Bundle) -> bool:
        """Whether the bundle's sealed bytes still match its header's SHA-256 (asked when the centre says they
        do not: a card that damaged them, or bytes damaged on the way)."""
        return sha256_from(bundle.path, bundle.offset) == bundle.sha256

    def upload(self, launch: bool = True, timeout: float = 5.0) -> str:
        """Start the oldest pending bundles on the free upload clients (``launch``: not while backing off), then
        wait up to ``timeout`` for one in flight to finish and record what finished: ``"upload"``, or
        ``"sending"`` if nothing has yet. A sliding window: each client takes the next bundle as soon as its own
        is done, never waiting for the other's (a slow bundle does not hold the queue behind it)."""
        if launch:
            self._launch()
        if not self._inflight:
            return "upload"  # (what was pending had vanished or was damaged)
        done = wait(list(self._inflight), timeout, return_when=FIRST_COMPLETED).done
        if not done:
            return "sending"
        self._record(done)
        return "upload"

    def _launch(self) -> None:
        while self._pending and self._free:
            cid = self._pending.pop(0)
            bundle = self._bundle(cid)
            if bundle is None:
                continue
            self.state.attempt(cid)
            slot = self._free.pop()
            job = (slot, cid, bundle, self.state.upload_url(cid))
            if self._pool is None:  # one at a time: in the loop's own thread
                fut: Future = Future()
                fut.set_result(self._send(*job))
            else:
                fut = self._pool.submit(self._send, *job)
            self._inflight[fut] = (slot, cid, bundle)

    def _send(self, slot: int, cid: str, bundle: Bundle, url: str | None) -> Confirmation | Exception:
        try:
            return self._centres[slot].upload(bundle, url, lambda new: self.state.remember_url(cid, new))
        except Exception as exc:  # recorded in the loop's thread, like every other outcome
            return exc

    def _record(self, done: set[Future]) -> None:
        """Record finished uploads in launch order; failed ones go back to the queue, oldest first, and the loop
        backs off once for them (not once per upload in flight, nor again while it is backing off already)."""
        failure: CentreError | None = None
        for fut in [f for f in self._inflight if f in done]:
            slot, cid, bundle = self._inflight.pop(fut)
            self._free.append(slot)
            outcome = fut.result()
            if isinstance(outcome, Confirmation):
                self._confirmed(cid, outcome)
                continue
            retry = self._failed(cid, bundle, outcome)
            if retry is not None:
                self._pending.append(cid)
                self._pending.sort(key=lambda c: self._rank.get(c, 0))
                failure = failure or retry
        if failure is not None and time.monotonic() >= self._resume_at:
            self._back_off(failure)

    def _confirmed(self, cid: str, done: Confirmation) -> None:
        self.state.confirm(cid, done.sha256)
        self._online()
        self.uploaded += 1
        if done.status == "refused":
            log.warning("%s confirmed: the centre holds it but could not open it (%s); staff see it there", cid,
                        done.reason or "no reason given")
        else:
            log.info("%s confirmed by the centre (%s)", cid, done.status)

    def _failed(self, cid: str, bundle: Bundle, exc: Exception) -> CentreError | None:
        """Record why ``cid`` did not go; the error to back off on if it is to be sent again, else None."""
        if isinstance(exc, Refused):
            status = "conflict" if exc.reason == "capture_conflict" else "refused"
            log.error("%s: %s — kept on the kit, not retried; staff see it at the centre", cid, exc)
            self.state.final(cid, status, str(exc))
            return None
        if isinstance(exc, Mismatch):
            if not self._intact(bundle):
                self._damaged(cid, "the sealed bytes do not match their SHA-256 (the centre noticed)")
                return None
            self.state.failed(cid, f"{exc}; sending again", forget_url=False)  # a discarded upload: HEAD says so
            return exc
        if isinstance(exc, StorageError):
            raise exc  # the journal failed: the loop stops with the storage exit code
        if not isinstance(exc, CentreError):  # a bug or an unreadable file: logged whole, retried later
            log.error("%s: unexpected error while uploading", cid, exc_info=exc)
            exc = CentreError(f"internal error: {exc}")
        self.state.failed(cid, str(exc), forget_url="vanished" in str(exc) or "dropped" in str(exc))
        return exc

    def _progress(self, n: int) -> None:
        notify.watchdog()  # bytes are moving: the loop is alive

    # ---- back-off
    def _back_off(self, exc: CentreError) -> None:
        s = self.cfg.sync
        self._failures += 1
        delay = min(s.backoff_max_s, s.backoff_initial_s * 2 ** (self._failures - 1)) * self.rng.uniform(0.5, 1.5)
        if isinstance(exc, Throttled) and exc.retry_after is not None:
            delay = min(s.backoff_max_s, max(exc.retry_after, 0.1))
            self._throttled_until = time.monotonic() + delay
        if isinstance(exc, AuthFailed):
            delay = s.backoff_max_s
        self._resume_at = time.monotonic() + delay
        self.state.put("last_error", {"at": self.clock.wall(), "error": str(exc)})
        log.warning("centre not usable (%s): next try in %.0f s", exc, delay)

    def _online(self) -> None:
        if self._failures:
            log.info("centre reachable again after %d failed attempts", self._failures)
        self._failures = 0
        self._resume_at = 0.0
        self.state.put("last_contact_at", self.clock.wall())

    def _contact(self, fn: Any, what: str) -> None:
        try:
            fn()
        except CentreError as exc:
            self._back_off(exc)
            return
        self._online()

    # ---- heartbeats and roster
    def heartbeat(self) -> None:
        self.scan()  # every bundle in the outbox has its row: the backlog reported is the outbox's
        backlog = self.state.backlog()
        oldest = backlog["oldest_pending_at"]
        now = dt.datetime.now().astimezone()
        age = (now - dt.datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
        sent = now
        answer, rtt = self.centre.heartbeat({
            "kit_id": self.cfg.kit_id, "software_version": _version(), "kit_time": sent.isoformat(),
            "disk_free_mb": shutil.disk_usage(self.cfg.data_path).free // 2**20, "cpu_temp_c": _cpu_temp(),
            "throttled": _throttled(),
            "backlog": {"bundles": backlog["bundles"], "bytes": backlog["bytes"], "oldest_pending_age_s": age},
            "last_shot_at": self.state.last_shot_at(), "clock_offset_s": self.state.get("clock_offset_s"),
            "camera_failures_since_start": self.state.camera_failures_since_start()})
        try:
            server = dt.datetime.fromisoformat(str(answer["server_time"]))
        except ValueError:
            log.warning("heartbeat: unreadable server_time %r", answer.get("server_time"))
            return
        offset = (sent + dt.timedelta(seconds=rtt / 2) - server).total_seconds()
        self.state.put("clock_offset_s", round(offset, 3))
        if abs(offset) > 5:
            log.warning("the kit's clock is %.1f s off the centre's: shot times are journalled in kit time", offset)

    def roster(self) -> None:
        """Pull the roster if it changed (ETag) and install it; check the centre knows our sealing key."""
        doc, etag = self.centre.roster(self.state.get("roster_etag"))
        if doc is not None:
            try:
                n = install_protected(doc, self.cfg.roster_path)
            except RosterError as exc:
                log.error("the centre's roster was not installed: %s", exc)
                return
            self.state.put("roster_etag", etag)
            log.info("roster from the centre installed: %d students (version %s)", n, doc.get("version"))
        keys = self.centre.keys().get("sealing_public_keys", [])
        mine = self.cfg.sealing.public_keys[0] if self.cfg.sealing.public_keys else ""
        if mine and mine not in keys:
            log.error("this kit seals to a key the centre does not list (%s): check sealing.public_keys",
                      mine.split(":")[0])
        self.state.put("centre_sealing_keys", keys)


def _version() -> str:
    try:
        return metadata.version("capturekit")
    except metadata.PackageNotFoundError:
        return "unknown"


def _cpu_temp() -> float | None:
    try:
        return int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000
    except (OSError, ValueError):
        return None


def _throttled() -> int | None:
    """The Pi firmware's get_throttled flags (under-voltage, frequency capped, throttled, soft temp limit)."""
    try:
        return int(Path("/sys/devices/platform/soc/soc:firmware/get_throttled").read_text(), 16)
    except (OSError, ValueError):
        return None


def main_loop(cfg: Config, drain: float = 0.0) -> int:
    """``capturekit sync``: run until SIGTERM (the exit code for systemd); with ``drain`` (seconds), upload
    what is pending, send a heartbeat and pull the roster, then exit (1 if anything is left)."""
    import signal

    daemon = SyncDaemon(cfg)
    try:
        daemon.start()
        signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
        signal.signal(signal.SIGINT, lambda *_: daemon.stop())
        log.info("sync: %s -> %s, pid %d", daemon.outbox, cfg.sync.centre_url, os.getpid())
        if not drain:
            return daemon.run()
        daemon.settle(drain)
        daemon._contact(daemon.heartbeat, "heartbeat")
        daemon._contact(daemon.roster, "roster")
        left = daemon.state.backlog()["bundles"]
        print(f"sync: {daemon.uploaded} bundles confirmed by the centre, {left} left")
        return 1 if left else 0
    except TimeoutError as exc:
        log.error("sync: %s", exc)
        return 1
    finally:
        daemon.close()
