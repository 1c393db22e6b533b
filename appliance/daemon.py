"""The capture daemon: adapters -> events -> session -> actions -> adapters. One loop, one thread.

Adapters (gpiozero callbacks, reader threads, the camera worker, the control socket) only ever
``post`` into a queue; the loop takes one item at a time, turns it into a session event (looking
up the roster and journalling the read for identities), feeds the :class:`~appliance.session.Session`
and carries out the actions in order. Journal and spool writes happen here, in short transactions,
never while waiting on the camera: captures run in a single worker thread that posts
``PhotoTaken``/``PhotoFailed`` and then the QC ``Verdict``.

A :class:`~appliance.journal.StorageError` (a failed fsync, a full disk) is never retried: the
session goes to FAULT (red LED, error beep) and the loop ends with exit code 70 so systemd restarts
the daemon and recovery settles the journal. Repeated camera failures end it with 75 likewise.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from . import datadir, notify
from .clock import SystemClock
from .config import Config
from .devices.camera import Camera, CameraError, Photo
from .devices.gpio import Beeper, LightPanel, StatusLight, Trigger
from .errors import EXIT_CAMERA, EXIT_STORAGE, StorageError
from .identity import Identity, clear_form
from .journal import Journal
from .protect import RosterKey
from .purge import purge
from .qc import ImageDecodeError
from .readers import Reader, is_refusal
from .recovery import recover
from .roster import Roster, check_identity
from .session import (
    AcceptAnyway,
    Beep,
    FrameFailed,
    IdentityPresented,
    Light,
    Note,
    OpenShot,
    OperatorCancel,
    PhotoFailed,
    PhotoTaken,
    ReaderProblem,
    RejectFrame,
    ReopenShot,
    Session,
    SetLight,
    Show,
    ShowLed,
    State,
    StorageFailed,
    Stored,
    StoreFrame,
    TakePhoto,
    Tick,
    TriggerPressed,
    Verdict,
    VoidShot,
)
from .spool import Spool

log = logging.getLogger("capturekit.daemon")
console = logging.getLogger("capturekit.console")

QR_SCAN_INTERVAL_S = 0.3  # preview frames per second handed to camera QR readers: ~3


@dataclass(frozen=True)
class QcOutcome:
    result: str  # pass | warn | fail
    reasons: tuple[str, ...]
    report: dict[str, Any] | None = None
    derivative: bytes | None = None  # the diploma-spec JPEG cut from the original, when QC could make it
    derivative_error: str | None = None


Assessor = Callable[[Photo], QcOutcome]


def no_qc(photo: Photo) -> QcOutcome:
    """Used when shot-time QC is not configured: every photo passes, and the record says QC was off."""
    return QcOutcome("pass", ("qc_off",))


@dataclass
class Devices:
    """Everything the daemon drives. GPIO devices are built by the daemon on ``pin_factory``."""

    camera: Camera
    readers: list[Reader]
    pin_factory: Any = None


@dataclass(frozen=True)
class _Read:
    identity: Identity
    t: float


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class _Scrubbed:
    damaged: dict[str, str]


@dataclass(frozen=True)
class _Call:
    """Run ``fn`` on the loop (the only journal writer) for another thread, and hand back its result."""

    fn: Callable[[], Any]
    result: Future


class Daemon:
    """One capture station's I/O loop around a :class:`Session`."""

    def __init__(self, cfg: Config, devices: Devices, clock: Any = None, assess: Assessor = no_qc,
                 tick_s: float = 0.2) -> None:
        self.cfg = cfg
        self.devices = devices
        self.clock = clock or SystemClock()
        self.assess = assess
        self.tick_s = tick_s
        self.queue: queue.Queue[Any] = queue.Queue()
        self.exit_code: int | None = None
        self.recovered: list[str] = []
        # photos in memory between capture and store/reject, and rejected frames the operator may still
        # accept, keyed (shot, frame): (photo, QC outcome, wall time of capture)
        self._photos: dict[tuple[int, int], tuple[Photo, QcOutcome, str]] = {}
        self._rejected: dict[tuple[int, int], tuple[Photo, QcOutcome, str]] = {}
        self._capture: Future | None = None  # the capture in flight, if any
        self._jobs: set[Future] = set()  # every job on the camera thread (captures, preview scans)
        self._jobs_lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera")
        # protecting a key (Argon2id, a fraction of a second on a Pi) happens here, off the loop, in tap order
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="protect")
        self._hashing: set[Future] = set()
        self._last_purge = float("-inf")
        self._camera_failures = 0
        # readers fed from the camera's preview between shots (QR codes held up to the lens)
        self._qr_cameras = [r for r in devices.readers if hasattr(r, "feed")]
        self._last_scan = float("-inf")
        self._scan_error = ""
        self._capture_started: float | None = None  # real monotonic time the camera call in flight began
        self._hung_reported = False
        self.damaged: dict[str, str] = {}
        self._display = _open_display(cfg.privacy) if cfg.privacy.show_names else None

    # ---- lifecycle
    def start(self, check_space: bool = False) -> None:
        """Lock the data directory, open storage, recover, build devices, start the camera and readers.

        Raises :class:`~appliance.errors.KitError` (nothing changed, one line for the crew) when the data
        directory cannot be used: another process holds it, too little free space (``check_space``, the
        ``run`` command), a damaged or foreign journal, another kit's bundles.
        """
        cfg = self.cfg
        data = datadir.create(cfg.data_path)
        self._lock = datadir.Lock(data / datadir.KIT_LOCK).acquire("capture daemon")
        if check_space:
            datadir.check_free_space(data, cfg.storage.min_free_mb)
        key = cfg.sealing_key  # before anything is written: a kit that cannot seal must not shoot
        self.journal = Journal(data / "journal.sqlite", cfg.kit_id, self.clock.wall)
        self.spool = Spool(data / "spool", key)
        self.recovered = recover(self.journal, self.spool)
        self.damaged = self._scrub(deep=False)
        self.roster = Roster(cfg.roster_path)
        self._hash_roster = Roster(cfg.roster_path)  # the hashing thread's own connection
        self._spare_key = RosterKey.new(*cfg.roster_key_cost())  # taps before any roster: unlinkable hashes
        if self.roster.count() == 0:
            log.warning("no roster at %s: every identity will be refused as not on roster", cfg.roster_path)
        self.session = Session(cfg.session, self.journal.next_shot())
        f = self.devices.pin_factory
        self.status = StatusLight(cfg.status_led, f)
        self.beeper = Beeper(cfg.buzzer, f)
        self.light = LightPanel(cfg.light, f)
        self.trigger = Trigger(cfg.trigger, f, self._on_trigger)
        self.devices.camera.start()
        for reader in self.devices.readers:
            reader.start(self._reader_identity(reader), self._reader_problem(reader))
        self.status.show(self.session.ctx.base_led)
        self.light.set(Light.IDLE)
        self.journal.event("daemon_start", f"next shot {self.session.next_shot}",
                           session_id=self.journal.current_session())
        log.info("ready: kit %s, next shot %d, roster %d rows", cfg.kit_id, self.session.next_shot,
                 self.roster.count())

    def start_scrub(self) -> threading.Thread:
        """Check every stored bundle's SHA-256 in the background (reads every byte: minutes on a Pi's SD
        card for a full outbox); damage found is posted to the loop, which journals and logs it."""
        def scrub() -> None:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only
            except OSError as exc:
                log.debug("scrub runs at normal priority: %s", exc)
            try:
                self.post(_Scrubbed(self._scrub(deep=True)))
            except Exception:  # a scrub that cannot finish is reported, never fatal
                log.exception("bundle scrub failed")

        thread = threading.Thread(target=scrub, name="scrub", daemon=True)
        thread.start()
        return thread

    def _scrub(self, deep: bool) -> dict[str, str]:
        """Bundles of the outbox that are damaged, by capture id (shallow: records and sizes only)."""
        damaged = {}
        for cid in self.spool.bundle_ids():
            problem = self.spool.check(cid, deep=deep)
            if problem:
                damaged[cid] = problem
        if not deep:
            self._report_damage(damaged, "start-up check")
        return damaged

    def _report_damage(self, damaged: dict[str, str], how: str) -> None:
        for cid, problem in damaged.items():
            log.error("damaged bundle %s (%s): %s — it stays in the outbox; call support", cid, how, problem)
            self.journal.event("bundle_damaged", f"{cid}: {problem} ({how})")
        if how != "start-up check" or not damaged:
            self.journal.event("scrub", f"{how}: {len(damaged)} damaged of {len(self.spool.bundle_ids())} bundles")

    def close(self) -> None:
        for reader in self.devices.readers:
            try:
                reader.stop()
            except Exception:
                log.exception("stopping reader %s", getattr(reader, "name", reader))
        self._worker.shutdown(wait=False, cancel_futures=True)
        self.devices.camera.close()
        for dev in ("trigger", "status", "beeper", "light"):
            if hasattr(self, dev):
                getattr(self, dev).close()
        if hasattr(self, "journal"):
            self.journal.close()
        self._hasher.shutdown(wait=True, cancel_futures=True)
        if hasattr(self, "roster"):
            self.roster.close()
            self._hash_roster.close()
        if hasattr(self, "_lock"):
            self._lock.release()

    @property
    def lock(self) -> datadir.Lock:
        return self._lock

    def change_session(self, action: str, school: str = "", label: str = "") -> str:
        """On the loop (``capturekit session`` while the daemon runs): close the open session, maybe open one."""
        if self.session.state is not State.IDLE:
            raise ValueError(f"a student is at the camera (state {self.session.state}): wait for the idle LED"
                             " or cancel, then try again")
        lines = []
        current = self.journal.current_session()
        if current is not None:
            self.journal.close_session(current)
            lines.append(f"session {current} closed")
        if action == "new":
            lines.append(f"session {self.journal.open_session(school or self.cfg.school, label)} opened")
        return "; ".join(lines) or "no session was open"

    def session_id(self) -> int:
        """The open session (a new one if ``capturekit session close`` ended the last)."""
        sid = self.journal.current_session()
        return sid if sid is not None else self.journal.open_session(self.cfg.school)

    # ---- inputs (any thread)
    def post(self, item: Any) -> None:
        self.queue.put(item)

    def _on_trigger(self) -> None:
        self.post(TriggerPressed(self.clock.monotonic()))

    def present_identity(self, identity: Identity) -> None:
        """An identity from any source (readers, ``capturekit enter``): protected on the hashing thread,
        then queued for the loop with the time it was presented."""
        t = self.clock.monotonic()
        future = self._hasher.submit(self._protect, identity, t)
        with self._jobs_lock:
            self._hashing.add(future)
        future.add_done_callback(self._hashed)

    def _protect(self, identity: Identity, t: float) -> None:
        try:
            key = self._hash_roster.key() or self._spare_key
            self.post(_Read(key.identity(identity), t))
        except Exception as exc:  # never lose a tap silently: the crew gets the reader-problem signal
            log.exception("protecting an identity failed")
            self.post(ReaderProblem("protect_failed", f"identity could not be protected: {exc}", t))

    def _hashed(self, future: Future) -> None:
        with self._jobs_lock:
            self._hashing.discard(future)

    def _reader_identity(self, reader: Reader) -> Callable[[Identity], None]:
        return self.present_identity

    def _reader_problem(self, reader: Reader) -> Callable[[str, str], None]:
        def on_problem(code: str, detail: str) -> None:
            log.warning("reader %s: %s: %s", reader.name, code, detail)
            self.post(ReaderProblem(code, f"{reader.name}: {detail}", self.clock.monotonic(), is_refusal(code)))
        return on_problem

    def cancel(self) -> None:
        self.post(OperatorCancel(self.clock.monotonic()))

    def accept_anyway(self) -> None:
        self.post(AcceptAnyway(self.clock.monotonic()))

    def stop(self) -> None:
        self.post(_Stop())

    # ---- the loop
    def run(self) -> int:
        """Serve until stopped or a fatal error; return the process exit code."""
        notify.ready(f"kit {self.cfg.kit_id}: next shot {self.session.next_shot}")
        while self.exit_code is None:
            self.step(self.tick_s)
            if self.alive():
                notify.watchdog()
        notify.stopping()
        return self.exit_code

    def alive(self) -> bool:
        """Whether the loop may tell systemd it is well: not while a camera call hangs past twice its
        timeout (the session has already given up on it; only a restart frees the camera)."""
        started = self._capture_started
        if started is None or time.monotonic() - started < 2 * self.cfg.camera.timeout_s:
            self._hung_reported = False
            return True
        if not self._hung_reported:
            log.critical("camera call hung for %.0f s: no watchdog pings, so systemd restarts the daemon",
                         time.monotonic() - started)
            self._hung_reported = True
        return False

    def step(self, timeout: float | None) -> None:
        """Handle one queued input, or a Tick if none arrives within ``timeout``.

        Any StorageError — journalling a card read as much as storing a photo — takes the one FAULT path:
        red LED, error beep, "storage failed" in the log, exit code 70.
        """
        try:
            item = self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()
        except queue.Empty:
            item = Tick(self.clock.monotonic())
        if isinstance(item, _Stop):
            self.exit_code = 0
            return
        try:
            if isinstance(item, _Call):
                self._call(item)
                return
            if isinstance(item, _Scrubbed):
                self._report_damage(item.damaged, "background SHA-256 scrub")
                return
            if isinstance(item, _Read):
                item = self._present(item)
            self.dispatch(item)
            if isinstance(item, Tick):
                self._maybe_scan(item.t)
                self._maybe_purge(item.t)
        except StorageError as exc:
            self._storage_failed(exc)

    def _call(self, call: _Call) -> None:
        try:
            call.result.set_result(call.fn())
        except StorageError as exc:
            call.result.set_exception(exc)
            raise
        except Exception as exc:  # reported to the caller (the control client), the loop goes on
            log.exception("control call failed")
            call.result.set_exception(exc)

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """From another thread: run ``fn`` on the loop and return its result (raises what it raised)."""
        result: Future = Future()
        self.post(_Call(fn, result))
        return result.result(timeout=timeout)

    def _storage_failed(self, exc: StorageError) -> None:
        log.critical("storage failed: %s", exc)
        self.exit_code = EXIT_STORAGE
        for action in self.session.handle(StorageFailed(str(exc), self.clock.monotonic())):
            try:
                self._do(action)
            except Exception:  # the devices must still show FAULT; the journal may be what failed
                log.exception("while signalling the storage fault")

    def settle(self, limit: float = 120.0) -> None:
        """Process everything queued, waiting for in-flight captures (simulator and tests)."""
        while True:
            while not self.queue.empty():
                self.step(None)
                if self.exit_code is not None:
                    return
            with self._jobs_lock:
                jobs = list(self._jobs | self._hashing)
            _, pending = wait(jobs, timeout=limit)
            if pending:
                raise TimeoutError("camera worker did not finish")
            if self.queue.empty():
                return

    def tick(self) -> None:
        t = self.clock.monotonic()
        self.dispatch(Tick(t))
        self._maybe_scan(t)
        self._maybe_purge(t)

    def _maybe_purge(self, t: float) -> None:
        """Between students, every ``purge.interval_s``: delete sealed files the centre confirmed."""
        if t - self._last_purge < self.cfg.purge.interval_s or self.session.state is not State.IDLE:
            return
        self._last_purge = t
        self.purge()

    def purge(self) -> list[str]:
        """On the loop: purge now (also ``capturekit purge`` through the control socket)."""
        return purge(self.journal, self.spool, self.cfg.purge)

    def _maybe_scan(self, t: float) -> None:
        """Between shots, hand a preview frame to the camera QR readers (on the camera's own thread)."""
        if (not self._qr_cameras or t - self._last_scan < QR_SCAN_INTERVAL_S or self._jobs
                or self.session.state not in (State.IDLE, State.READY, State.REVIEW)):
            return
        self._last_scan = t
        self._submit(self._scan)

    def _submit(self, fn: Callable[..., None], *args: Any) -> Future:
        future = self._worker.submit(fn, *args)
        with self._jobs_lock:
            self._jobs.add(future)
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, future: Future) -> None:
        with self._jobs_lock:
            self._jobs.discard(future)

    def _scan(self) -> None:
        try:
            frame = self.devices.camera.preview()
            for reader in self._qr_cameras:
                reader.feed(frame)
            self._scan_error = ""
        except Exception as exc:  # logged once per distinct error; captures report camera trouble loudly
            if str(exc) != self._scan_error:
                log.warning("preview for QR failed: %s", exc, exc_info=not isinstance(exc, CameraError))
                self._scan_error = str(exc)

    def _present(self, read: _Read) -> IdentityPresented:
        sid = self.session_id()
        check = check_identity(read.identity, self.roster, self.journal, sid)
        read_id = self.journal.record_read(sid, read.identity, check.status.value, check.detail)
        log.info("identity %s: %s", read.identity, check.status)
        return IdentityPresented(read.identity, check, read_id, read.t)

    def dispatch(self, event: Any) -> None:
        """Feed one event and carry out its actions, plus the events those actions produce."""
        pending = [event]
        while pending:
            ev = pending.pop(0)
            for action in self.session.handle(ev):
                follow = self._do(action)
                if follow is not None:
                    pending.append(follow)

    # ---- actions
    def _do(self, a: Any) -> Any:
        j = self.journal
        match a:
            case OpenShot(shot, read_id):
                j.open_shot(shot, self.session_id(), read_id)
            case ReopenShot(shot, read_id):
                j.event("shot_reopened", f"read {read_id}", shot, self.session_id())
            case VoidShot(shot, reason):
                j.void_shot(shot, reason)
                self._forget_rejects(shot)
                log.info("shot %d void: %s", shot, reason)
            case TakePhoto(shot, frame):
                self._take(shot, frame)
            case StoreFrame():
                return self._store(a)
            case RejectFrame(shot, frame, reasons):
                self._reject(shot, frame, reasons)
            case FrameFailed(shot, frame, reason):
                j.frame_failed(shot, frame, reason)
                self._camera_failed(reason)
            case Note(kind, detail, shot):
                j.event(kind, detail, shot, self.session_id())
            case Beep(tone):
                self.beeper.play(tone)
            case ShowLed(led):
                self.status.show(led)
            case SetLight(level):
                self.light.set(level)
            case Show(text, private):
                self._show(text, private)
            case _:
                raise TypeError(f"unknown action {a!r}")
        return None

    def _show(self, text: str, private: str) -> None:
        """Operator console: the log (journald) gets masked keys only; a roster label (name, class,
        student number) goes only to a local display the school's policy names (``privacy``)."""
        console.info(text)
        if private and self._display is not None:
            try:
                self._display.write(f"{text} — {private}\n")
                self._display.flush()
            except OSError as exc:
                log.warning("local display %s failed: %s", self.cfg.privacy.console_device, exc)

    def _take(self, shot: int, frame: int) -> None:
        if self._capture is not None and not self._capture.done():
            self.post(PhotoFailed(shot, frame, "camera busy: the previous capture has not returned",
                                  self.clock.monotonic()))
            return
        self._capture = self._submit(self._capture_job, shot, frame)  # queued behind a preview scan, if any

    def _capture_job(self, shot: int, frame: int) -> None:
        """Camera thread: capture, then QC; the photo is parked in memory and the results queued."""
        self._capture_started = time.monotonic()
        try:
            photo = self.devices.camera.capture(shot, frame)
        except Exception as exc:  # CameraError, or any bug in an adapter: never lose it silently
            log.error("capture %d/%d failed: %s", shot, frame, exc, exc_info=not isinstance(exc, CameraError))
            self.post(PhotoFailed(shot, frame, str(exc), self.clock.monotonic()))
            return
        finally:
            self._capture_started = None
        captured_at = self.clock.wall()
        try:
            outcome = self.assess(photo)
        except ImageDecodeError as exc:  # the camera handed over something that is not a photo: retake
            log.error("capture %d/%d is not a decodable photo: %s", shot, frame, exc)
            self.post(PhotoFailed(shot, frame, f"photo not decodable: {exc}", self.clock.monotonic()))
            return
        except Exception as exc:  # QualityCheck handles its own errors; this is a bug elsewhere: keep the photo
            log.exception("QC failed on %d/%d", shot, frame)
            outcome = QcOutcome("warn", (f"qc_error: {exc}",))
        self._photos[(shot, frame)] = (photo, outcome, captured_at)
        self.post(PhotoTaken(shot, frame, self.clock.monotonic()))
        self.post(Verdict(shot, frame, outcome.result, outcome.reasons, self.clock.monotonic()))

    def _camera_failed(self, reason: str) -> None:
        self._camera_failures += 1
        if self._camera_failures >= self.cfg.camera.max_failures:
            log.critical("camera failed %d times in a row (%s): exiting for a restart",
                         self._camera_failures, reason)
            self.journal.event("camera_restart", reason, session_id=self.session_id())
            self.exit_code = EXIT_CAMERA

    def _identity_of(self, shot: int) -> dict[str, str]:
        """The clear identity of ``shot`` for its sealed record (in memory only: the pending student), or
        its protected form when the shot is no longer the pending one (a stale frame)."""
        p = self.session.pending
        if p is not None and p.shot == shot:
            return clear_form(p.identity)
        return {**self.journal.shot(shot).identity, "protected": True}

    def _record(self, shot: int, frame: int, photo: Photo, outcome: QcOutcome, captured_at: str,
                verdict: dict[str, Any], supersedes: str | None) -> dict[str, Any]:
        """The capture record sealed into the bundle: who (the clear key, for the centre only), when, how."""
        info = self.journal.shot(shot)
        return {
            "capture_id": self.journal.capture_id(shot, frame),
            "kit_id": self.cfg.kit_id,
            "journal_id": self.journal.journal_id,
            "session": {"id": info.session_id, "school": self.cfg.school},
            "shot": shot,
            "frame": frame,
            "identity": self._identity_of(shot),
            "roster_check": info.check_status,
            "captured_at": captured_at,
            "stored_at": self.clock.wall(),
            "photo": {"width": photo.width, "height": photo.height, "camera": _jsonable(photo.metadata)},
            "verdict": {**verdict, "qc": outcome.report},
            "derivative_error": outcome.derivative_error,
            "frames": [{**f, "status": "stored"} if f["frame"] == frame else f for f in self.journal.frames_of(shot)],
            "supersedes": supersedes,
        }

    def _ident(self, shot: int, frame: int) -> dict[str, Any]:
        return {"kit_id": self.cfg.kit_id, "journal_id": self.journal.journal_id, "shot": shot, "frame": frame}

    def _store(self, a: StoreFrame) -> Stored:
        shot, frame = a.shot, a.frame
        source = self._rejected if a.accepted_by_operator else self._photos
        photo, outcome, captured_at = source.pop((shot, frame))
        self._camera_failures = 0
        supersedes = self.journal.selected_capture_id(shot)
        cid = self.journal.begin_frame(shot, frame, "outbox", a.verdict, a.reasons, a.accepted_by_operator,
                                       supersedes)
        verdict = {"result": a.verdict, "reasons": list(a.reasons), "accepted_by_operator": a.accepted_by_operator}
        record = self._record(shot, frame, photo, outcome, captured_at, verdict, supersedes)
        written = self.spool.write_bundle(cid, self._ident(shot, frame), record, photo.jpeg, outcome.derivative)
        self.journal.finish_frame(shot, frame, written.sha256, written.size, f"outbox/{written.path.name}",
                                  written.photo_sha256, written.derivative_sha256)
        self._forget_rejects(shot)
        log.info("shot %d frame %d stored as %s", shot, frame, cid)
        return Stored(shot, frame, self.clock.monotonic())

    def _reject(self, shot: int, frame: int, reasons: tuple[str, ...]) -> None:
        entry = self._photos.pop((shot, frame), None)
        if entry is None:
            raise StorageError(f"no photo in memory for rejected frame {shot}/{frame}")
        photo, outcome, captured_at = entry
        self._camera_failures = 0
        cid = self.journal.begin_frame(shot, frame, "rejects", "fail", reasons)
        record = self._record(shot, frame, photo, outcome, captured_at,
                              {"result": "fail", "reasons": list(reasons), "accepted_by_operator": False}, None)
        written = self.spool.keep_reject(cid, self._ident(shot, frame), record, photo.jpeg)
        self.journal.finish_frame(shot, frame, written.sha256, written.size, f"rejects/{written.path.name}",
                                  written.photo_sha256)
        self._rejected[(shot, frame)] = entry
        log.info("shot %d frame %d rejected: %s", shot, frame, ", ".join(reasons))

    def _forget_rejects(self, shot: int) -> None:
        for key in [k for k in self._rejected if k[0] == shot]:
            del self._rejected[key]


def _open_display(privacy: Any) -> Any:
    """The local display names may be shown on (a character device such as /dev/tty1), or None."""
    device = privacy.console_device
    if not device:
        log.warning("privacy.show_names is set but no privacy.console_device: names are not shown")
        return None
    try:
        if not stat.S_ISCHR(os.stat(device).st_mode):
            log.error("privacy.console_device %s is not a terminal device: names are not shown", device)
            return None
        return open(device, "w", encoding="utf-8")
    except OSError as exc:
        log.error("privacy.console_device %s cannot be opened (%s): names are not shown", device, exc)
        return None


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        out[k] = list(v) if isinstance(v, tuple) else v if isinstance(v, int | float | str | bool | None) else str(v)
    return out
