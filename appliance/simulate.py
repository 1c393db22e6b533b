"""A scripted classroom through the real daemon, journal and spool, with simulated devices.

Students queue in roster order and identify themselves the way their school's process says:

* an ID card on the ID-card reader — the real :class:`~appliance.readers.sam.SamReader` talking the
  GA/T 467 protocol to the SAM emulator on a pseudo-terminal;
* a campus card — the simulated card reader (``sim``), keyed by card UID through the roster;
* a CHSI collection code or a signed make-up QR on a phone held up to the camera — the real
  :class:`~appliance.readers.qr.CameraQrReader` decoding the camera's preview with zxing-cpp;
* manual entry over the control socket, when the operator has to type a number.

The operator's foot presses the pedal (a real gpiozero Button on mock pins). The camera renders a
real face photo (``appliance.qc.samples``) and the real shot-time QC judges it, so a blurred or
eyes-hidden frame is a QC retake. A share of students bring the awkward cases: walking off before the
shot, timing out, a double press, a camera failure, a QC retake, an operator retake, a typo in a
typed number, a visitor not on the roster, a pedal press before any card, a student coming back, an
operator cancel. Classroom time is simulated (an hour runs in seconds); photos, SQLite and fsyncs
are real.

The script keeps its own account of what must have happened and compares it with the journal at the
end: the summary printed is the journal's, and any disagreement is listed and fails the run. When the
simulation made the centre's sealing key itself (no ``sealing.public_keys`` configured: it plays the
centre too, keeping the private key outside the kit's data directory), it also opens every bundle with
it and checks each photo and derivative against the SHA-256 the simulated camera and QC produced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import random
import secrets
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from . import idnumber
from .clock import ManualClock
from .config import Config
from .control import ControlServer, send
from .daemon import Daemon, Devices, QcOutcome
from .devices.camera import Photo, SimCamera
from .devices.gpio import SimPedal, pin_factory
from .identity import Identity, Kind, Source, make
from .protect import RosterKey
from .readers.sim import SimReader
from .roster import load_csv
from .session import Led, State

SCENARIOS: dict[str, int] = {  # weight per 100 students
    "normal": 58, "retake": 6, "double_press": 6, "walk_off": 4, "timeout": 3, "camera_fail": 4,
    "qc_fail": 5, "typo": 3, "unknown_visitor": 2, "trigger_first": 3, "comes_back": 4, "cancel": 2,
}
CHANNELS: dict[str, int] = {"id_card": 55, "campus_card": 15, "collection_code": 20, "makeup_qr": 10}
QC_FAULTS = ("blurred", "eyes_occluded", "dark", "blue_shirt")  # sample variants QC must send back
SCHOOL = "90001"


@dataclass
class Student:
    number: int
    id_number: str | None  # None: the school runs the 2023 collection-code process for this student
    name: str
    klass: str
    channel: str
    scenario: str
    card_uid: str = ""
    collection_code: str = ""
    face: int = 0


@dataclass
class Expected:
    """What the script did, hence what the journal must show."""

    captured: int = 0
    voids: Counter = field(default_factory=Counter)
    frames_stored: int = 0
    frames_rejected: int = 0
    frames_failed: int = 0
    refused: int = 0
    retakes: int = 0
    reads: Counter = field(default_factory=Counter)  # identity reads by source


class Produced:
    """What the simulated camera and QC handed to the daemon (kept outside the kit): SHA-256s by capture."""

    def __init__(self, qc: Any) -> None:
        self.qc = qc
        self.photos: dict[tuple[int, int], str] = {}
        self.derivatives: dict[str, str | None] = {}  # photo SHA-256 -> derivative SHA-256

    def __call__(self, photo: Photo) -> QcOutcome:
        outcome = self.qc(photo)
        d = outcome.derivative
        self.derivatives[hashlib.sha256(photo.jpeg).hexdigest()] = hashlib.sha256(d).hexdigest() if d else None
        return outcome

    def camera_hook(self, shot: int, frame: int, jpeg: bytes) -> None:
        self.photos[(shot, frame)] = hashlib.sha256(jpeg).hexdigest()


class SimQc:
    """Simulated twin of shot-time QC: passes every photo unless the script planned a failure."""

    def __init__(self) -> None:
        self.fail_next: tuple[str, ...] = ()

    def __call__(self, photo: Photo) -> QcOutcome:
        if self.fail_next:
            reasons, self.fail_next = self.fail_next, ()
            return QcOutcome("fail", reasons, {"sim": True})
        return QcOutcome("pass", ("qc_sim",), {"sim": True})


def make_students(n: int, seed: int) -> list[Student]:
    rng = random.Random(seed)
    scenarios, weights = zip(*SCENARIOS.items(), strict=True)
    channels, cweights = zip(*CHANNELS.items(), strict=True)
    out = []
    for i in range(n):
        birth = dt.date(2004, 1, 1) + dt.timedelta(days=rng.randrange(0, 1000))
        number = idnumber.make(f"{rng.choice(['110105', '310104', '440305', '510107'])}{birth:%Y%m%d}{i % 1000:03d}")
        channel = rng.choices(channels, cweights)[0] if i else "id_card"
        scenario = rng.choices(scenarios, weights)[0] if i else "normal"
        s = Student(i + 1, number, f"学生{i + 1:04d}", f"class-{i // 40 + 1}", channel, scenario, face=i % 4)
        if channel == "campus_card":
            s.card_uid = f"04{rng.getrandbits(48):012X}"
        if channel == "collection_code":  # opaque to us; no name or ID number reaches the kit
            s.id_number, s.name = None, ""
            s.collection_code = "CHSI" + secrets.token_urlsafe(60)
            if scenario == "typo":
                s.scenario = "normal"
        out.append(s)
    return out


def write_roster(students: list[Student], path: Path) -> None:
    lines = ["id_number,collection_code,card_uid,name,class,school"]
    lines += [f"{s.id_number or ''},{s.collection_code},{s.card_uid},{s.name},{s.klass},{SCHOOL}" for s in students]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _qr_picture(text: str) -> Image.Image:
    """A phone screen showing ``text`` as a QR code."""
    import segno

    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=3, border=4)
    code = Image.open(buf).convert("RGB")
    phone = Image.new("RGB", (code.width + 40, code.height + 120), (20, 20, 24))
    phone.paste(code, (20, 60))
    return phone


class Classroom:
    """The simulated crew around a real daemon.

    ``sources=False`` (tests) gives only the simulated card reader; ``sources=True`` adds the SAM
    emulator with the real SAM reader, the camera QR reader with a make-up signing key, and the
    control socket. ``qc`` is ``"sim"`` (:class:`SimQc`) or ``"real"`` (appliance.qc on face photos).
    """

    def __init__(self, cfg: Config, sources: bool = False, qc: str = "sim") -> None:
        self.clock = ManualClock()
        self.factory = pin_factory("mock")
        self.variant = "good"
        self.face = 0
        self.reader = SimReader("sim-reader")
        readers: list[Any] = [self.reader]
        self.sam = self.qr = self.control = self.signing_key = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        if sources:
            cfg = self._add_sources(cfg, readers)
        self.cfg = cfg
        scene = self._scene if qc == "real" else None
        self.camera = SimCamera(cfg.camera.width, cfg.camera.height, cfg.camera.jpeg_quality,
                                (cfg.camera.lores_width, cfg.camera.lores_height), scene=scene)
        if qc == "real":
            from .quality import QualityCheck

            self.qc: Any = QualityCheck(cfg.qc, cfg.photo_spec)
            self.qc.warm_up()
        else:
            self.qc = SimQc()
        self.produced = Produced(self.qc)
        self.camera.on_capture = self.produced.camera_hook
        self.daemon = Daemon(cfg, Devices(self.camera, readers, self.factory), self.clock, self.produced)
        self.pedal = SimPedal(self.factory, cfg.trigger)
        self.expected = Expected()

    def _add_sources(self, cfg: Config, readers: list[Any]) -> Config:
        from nacl.signing import SigningKey

        from centre.makeup_qr import public_key_b64

        from .factory import makeup_verifier
        from .readers.qr import CameraQrReader
        from .readers.sam import SamReader
        from .readers.sam_emulator import SamEmulator

        self.signing_key = SigningKey.generate()  # the centre's key for this run; the kit gets the public half
        cfg = dataclasses.replace(cfg, school=SCHOOL, makeup_qr=dataclasses.replace(
            cfg.makeup_qr, public_keys=(public_key_b64(self.signing_key),)))
        self._tmp = tempfile.TemporaryDirectory(prefix="capturekit-sim-")
        self.sam = SamEmulator(Path(self._tmp.name)).start()
        readers.append(SamReader(self.sam.path, poll_interval=0.01, name="sim-id-reader", command_timeout=0.5))
        self.qr = CameraQrReader(makeup_verifier(cfg), name="kit-camera", absent_frames=3)
        readers.append(self.qr)
        return cfg

    def start(self) -> None:
        self.daemon.start()
        if self.sam is not None:
            self.control = ControlServer(self.cfg.control_path, self.daemon, self.daemon.lock)
            self.control.start()

    def close(self) -> None:
        if self.control:
            self.control.stop()
        self.daemon.close()
        if self.sam:
            self.sam.stop()
        if self._tmp:
            self._tmp.cleanup()

    def _scene(self, shot: int, frame: int) -> Image.Image:
        from .qc.samples import sample_portrait

        return sample_portrait(self.cfg.camera.width, self.cfg.camera.height, self.variant, self.face)

    # ---- the crew's gestures
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.daemon.tick()
        self.daemon.settle()

    def tap(self, identity: Identity) -> None:
        self.reader.present(identity)
        self.daemon.settle()

    def press(self) -> None:
        self.pedal.press()
        self.daemon.settle()

    @property
    def led(self) -> Led | None:
        return self.daemon.status.state

    @property
    def state(self) -> State:
        return self.daemon.session.state

    def _arrival(self, timeout: float = 3.0) -> None:
        """Wait (real time) for a reader thread or the control socket to hand the daemon an identity."""
        deadline = time.monotonic() + timeout
        while self.daemon.queue.empty():
            if time.monotonic() > deadline:
                raise SimulationError("the identity never reached the daemon")
            time.sleep(0.002)
        self.daemon.settle()

    def present(self, s: Student) -> None:
        """The student identifies themselves through their school's channel."""
        if self.sam is None:  # simulated card reader only: the same keys, one source
            ident = (make(Kind.CARD_UID, s.card_uid, Source.SIM, "sim-reader") if s.card_uid else
                     make(Kind.COLLECTION_CODE, s.collection_code, Source.SIM, "sim-reader") if s.collection_code
                     else make(Kind.ID_NUMBER, s.id_number, Source.SIM, "sim-reader"))
            self.tap(ident)
            self.expected.reads[Source.SIM] += 1
        elif s.channel == "id_card":
            self._sam_tap(s.id_number, s.name)
        elif s.channel == "campus_card":
            self.tap(make(Kind.CARD_UID, s.card_uid, Source.SIM, "sim-campus-card"))
            self.expected.reads[Source.SIM] += 1
        else:
            self.camera.show(_qr_picture(self._qr_text(s)))
            for _ in range(5):  # a few preview frames until the code is read
                self.wait(0.4)
                if self.led in (Led.READY, Led.WARN, Led.REJECT):
                    break
            self.expected.reads[Source.MAKEUP_QR if s.channel == "makeup_qr" else Source.QR_CAMERA] += 1

    def _sam_tap(self, number: str, name: str = "") -> None:
        """An ID card on the ID-card reader: the real SAM reader reads it from the emulator."""
        from .readers.idcard_text import build_text

        self.sam.place(build_text("", number=number, name=name))
        self._arrival()
        self.expected.reads[Source.SAM] += 1

    def _sam_lift(self) -> None:
        self.sam.remove()
        time.sleep(0.05)  # a few reader polls: the reader sees the card lifted

    def _qr_text(self, s: Student) -> str:
        if s.channel == "collection_code":
            return s.collection_code
        from centre.makeup_qr import issue

        now = dt.datetime.now(dt.UTC)
        return issue(self.signing_key, Kind.ID_NUMBER, s.id_number, SCHOOL, issued_at=now - dt.timedelta(days=3),
                     expires_at=now + dt.timedelta(days=27))

    def take_away(self, s: Student) -> None:
        """The card leaves the reader / the phone leaves the camera's view."""
        if self.sam is None:
            return
        if s.channel == "id_card":
            self._sam_lift()
        elif s.channel in ("collection_code", "makeup_qr"):
            self.camera.show(None)
            for _ in range(4):  # out of view for a few frames: the next showing is a new read
                self.wait(0.4)

    def type_number(self, number: str) -> None:
        if self.control is None:
            self.tap(make(Kind.ID_NUMBER, number, Source.MANUAL, "enter:sim-operator"))
            self.expected.reads[Source.MANUAL] += 1
            return
        send(self.cfg.control_path, {"cmd": "identity", "kind": "id_number", "key": number, "source": "manual",
                                     "reader": "enter:sim-operator"})
        self._arrival()
        self.expected.reads[Source.MANUAL] += 1

    def _shoot_ok(self) -> None:
        """Press and expect a stored frame (LED green only after fsync + commit)."""
        self.wait(4.0)  # the operator frames the student
        self.press()
        if self.led is not Led.OK:
            last = self.daemon.journal.db.execute("SELECT status, reasons FROM frames ORDER BY rowid DESC").fetchone()
            raise SimulationError(f"expected the OK LED after the shot, got {self.led} in {self.state}: {last}")
        self.expected.frames_stored += 1

    def again(self, s: Student) -> None:
        self.take_away(s)
        self.wait(2.0)
        self.present(s)
        self._expect_ready()

    def student(self, s: Student, come_back: list[Student], after_walk_off: bool = False,
                rng: random.Random | None = None) -> None:
        """One student's turn, by scenario."""
        e, sc = self.expected, s.scenario
        self.face = s.face
        self.wait(14.0)  # walks up from the queue, sits down
        if sc == "trigger_first" and not after_walk_off:  # (a press now would shoot the empty stool)
            self.press()
            self._expect_led(Led.ERROR)
        if sc == "typo":  # the card does not read; the operator types the number and slips a digit
            bad = s.id_number[:-1] + ("0" if s.id_number[-1] != "0" else "1")
            self.type_number(bad)
            self._expect_led(Led.REJECT)
            e.refused += 1
            self.wait(4.0)
            self.type_number(s.id_number)
        else:
            self.present(s)
        self._expect_ready()
        if sc == "walk_off":
            e.voids["superseded"] += 1
            self.take_away(s)
            come_back.append(s)
            return
        if sc == "timeout":
            self.wait(self.cfg.session.ready_timeout_s + 1)
            self._expect_led(Led.IDLE)
            e.voids["timeout"] += 1
            self.again(s)
        if sc == "cancel":
            self.daemon.cancel()
            self.daemon.settle()
            e.voids["operator cancel"] += 1
            self.again(s)
        if sc == "camera_fail":
            self.camera.fail_next("simulated: sensor did not answer")
            self.wait(2.5)
            self.press()
            self._expect_led(Led.ERROR)
            e.frames_failed += 1
        if sc == "qc_fail":
            self._qc_fault(rng)
            self.wait(2.5)
            self.press()
            self._expect_led(Led.RETAKE)
            self.variant = "good"
            e.frames_rejected += 1
        if sc == "double_press":
            self.wait(2.5)
            self.pedal.press()
            self.pedal.press()  # bounce / impatient foot: one shot, not two
            self.daemon.settle()
            self._expect_led(Led.OK)
            e.frames_stored += 1
        else:
            self._shoot_ok()
        e.captured += 1
        if sc == "retake":
            self.wait(3.0)  # operator saw a blink on the preview
            self.press()
            self._expect_led(Led.OK)
            e.frames_stored += 1
            e.retakes += 1
        if sc == "comes_back":
            come_back.append(s)
        self.take_away(s)
        self.wait(4.0)  # stands up, leaves

    def _qc_fault(self, rng: random.Random | None) -> None:
        fault = (rng or random).choice(QC_FAULTS)
        if isinstance(self.qc, SimQc):
            self.qc.fail_next = (fault,)
        self.variant = fault

    def comes_back(self, s: Student) -> None:
        """A student returns: walked off earlier (first shot) or wants a retake (warned, same shot)."""
        self.face = s.face
        self.wait(6.0)
        self.present(s)
        if s.scenario == "comes_back":
            self._expect_led(Led.WARN)
            self._shoot_ok()
        else:
            self._expect_ready()
            self._shoot_ok()
            self.expected.captured += 1
        self.take_away(s)
        self.wait(3.0)

    def visitor(self, rng: random.Random) -> None:
        """Somebody not on this school's roster taps their ID card."""
        number = idnumber.make(f"{rng.randrange(110000, 659999)}19990101{rng.randrange(0, 999):03d}")
        if self.sam is not None:
            self._sam_tap(number)
            self._sam_lift()
        else:
            self.tap(make(Kind.ID_NUMBER, number, Source.SIM, "sim-reader"))
            self.expected.reads[Source.SIM] += 1
        self._expect_led(Led.REJECT)
        self.expected.refused += 1
        self.wait(3.0)

    def _expect_ready(self) -> None:
        """Ready to shoot: READY, or WARN when the student was photographed in an earlier session."""
        if self.led not in (Led.READY, Led.WARN):
            raise SimulationError(f"expected a ready LED, got {self.led} (state {self.state})")

    def _expect_led(self, led: Led) -> None:
        if self.led is not led:
            raise SimulationError(f"expected LED {led}, got {self.led} (state {self.state})")


class SimulationError(AssertionError):
    """The kit did not react as the script expected."""


def run(cfg: Config, students: int, seed: int = 1, qc: str = "real", sources: bool = True,
        school_csv: Path | None = None) -> dict[str, Any]:
    """Run a classroom of ``students`` through a real daemon in ``cfg.data_dir``; return the summary.

    ``sources=False`` presents every identity through the simulated card reader (no reader threads,
    no real-time waits: what the crash test wants).
    """
    data = cfg.data_path
    data.mkdir(parents=True, exist_ok=True)
    cfg, keys = with_centre_key(cfg)
    people = make_students(students, seed)
    with tempfile.TemporaryDirectory(prefix="capturekit-school-") as school:  # the school's file, not the kit's
        write_roster(people, Path(school) / "roster.csv")
        load_csv(Path(school) / "roster.csv", cfg.roster_path, new_key=RosterKey.new(*cfg.roster_key_cost()))
        if school_csv is not None:  # the same file for the centre (the demo plays the school too)
            shutil.copyfile(Path(school) / "roster.csv", school_csv)
    room = Classroom(cfg, sources=sources, qc=qc)
    dm = room.daemon
    wall0 = time.monotonic()
    room.start()
    try:
        earlier = dm.journal.current_session()
        if earlier is not None:  # a fresh session per run
            dm.journal.close_session(earlier)
        session = dm.session_id()
        rng = random.Random(seed + 1)
        come_back: list[Student] = []
        walked_off: Student | None = None
        for s in people:
            if s.scenario == "unknown_visitor":
                room.visitor(rng)
            room.student(s, come_back, after_walk_off=walked_off is not None, rng=rng)
            walked_off = s if s.scenario == "walk_off" else None
        if walked_off is not None:  # nobody came after the last walk-off: their number times out
            room.wait(cfg.session.ready_timeout_s + 1)
            room.expected.voids["superseded"] -= 1
            room.expected.voids["timeout"] += 1
        room.wait(cfg.session.retake_window_s + 1)
        for s in come_back:
            room.comes_back(s)
        room.wait(cfg.session.retake_window_s + 1)
        summary = summarise(room, session, wall=time.monotonic() - wall0, keys=keys)
    finally:
        room.close()
    return summary


def centre_keys_dir(data: Path) -> Path:
    """Where a simulation keeps the centre's key it made: beside the kit's data directory, never in it."""
    return data.with_name(data.name + ".centre-keys")


def with_centre_key(cfg: Config) -> tuple[Config, Path | None]:
    """The config with a centre sealing key: the configured one, else one this simulation makes (and whose
    private half it keeps in :func:`centre_keys_dir`, playing the centre)."""
    if cfg.sealing.public_keys:
        return cfg, None
    from centre.sealing import keygen

    keys = centre_keys_dir(cfg.data_path)
    existing = sorted(keys.glob("*.pub"))
    public = existing[0] if existing else keygen(keys)[2]
    return dataclasses.replace(cfg, sealing=dataclasses.replace(
        cfg.sealing, public_keys=(public.read_text().strip(),))), keys


def summarise(room: Classroom, session: int, wall: float, keys: Path | None = None) -> dict[str, Any]:
    j = room.daemon.journal
    counts = j.counts(session)
    voids = Counter(_void_kind(r) for _, r in j.voids(session))
    reads = dict(j.db.execute("SELECT source, COUNT(*) FROM reads WHERE session_id = ? GROUP BY source",
                              [session]).fetchall())
    e = room.expected
    sim_minutes = room.clock.monotonic() / 60
    observed = {
        "shots_captured": counts.get("shots_captured", 0), "voids": dict(voids),
        "frames_stored": counts.get("frames_stored", 0), "frames_rejected": counts.get("frames_rejected", 0),
        "frames_failed": counts.get("frames_failed", 0), "reads": reads,
    }
    expected = {
        "shots_captured": e.captured, "voids": {k: v for k, v in e.voids.items() if v},
        "frames_stored": e.frames_stored, "frames_rejected": e.frames_rejected, "frames_failed": e.frames_failed,
        "reads": {str(k): v for k, v in e.reads.items() if v},
    }
    mismatches = [f"{k}: journal {observed[k]} != script {expected[k]}" for k in observed if observed[k] != expected[k]]
    spool = room.daemon.spool
    stored = [r for r in j.db.execute(
        "SELECT f.capture_id, f.shot, f.frame, f.sha256 FROM frames f JOIN shots s ON s.number = f.shot"
        " WHERE s.session_id = ? AND f.status = 'stored'", [session])]
    bad = {cid: spool.verify(cid) for cid, *_ in stored}
    mismatches += [f"bundle {cid}: {problem}" for cid, problem in bad.items() if problem]
    bundles = sum(1 for p in bad.values() if p is None)
    opened = derivatives = None
    if keys is not None:
        opened, derivatives, problems = _open_all(room, stored, keys)
        mismatches += problems
    qc_reasons = Counter(r for (text,) in j.db.execute(
        "SELECT f.reasons FROM frames f JOIN shots s ON s.number = f.shot WHERE s.session_id = ?"
        " AND f.status = 'rejected'", [session]) for r in json.loads(text))
    open_shots = counts.get("shots_open", 0)
    if open_shots:
        mismatches.append(f"{open_shots} shots still open")
    ctx = room.daemon.session.ctx.counts
    return {
        "session": session, "data_dir": str(room.cfg.data_path), **observed,
        "shots": counts.get("shots", 0), "retakes": ctx.get("retakes", 0), "qc_retakes": ctx.get("qc_retakes", 0),
        "qc_reasons": dict(qc_reasons), "triggers_ignored": ctx.get("triggers_ignored", 0),
        "refused_identities": e.refused, "bundles": bundles, "opened": opened, "derivatives": derivatives,
        "centre_keys": str(keys) if keys else None,
        "classroom_minutes": round(sim_minutes, 1),
        "students_per_minute": round(e.captured / sim_minutes, 2) if sim_minutes else 0.0,
        "wall_seconds": round(wall, 1), "engine_shots_per_minute": round(e.captured / wall * 60, 1) if wall else 0.0,
        "mismatches": mismatches,
    }


def _open_all(room: Classroom, stored: list, keys: Path) -> tuple[int, int, list[str]]:
    """Open every stored bundle as the centre would; check photo and derivative against what was produced."""
    from centre.sealing import BundleRefused, KeyRing, open_bundle_file

    ring, opened, derivatives, problems = KeyRing.load(keys), 0, 0, []
    for cid, shot, frame, sha in stored:
        try:
            b = open_bundle_file(room.daemon.spool.path(cid), ring)
        except BundleRefused as exc:
            problems.append(f"bundle {cid} does not open: {exc}")
            continue
        photo_sha = hashlib.sha256(b.photo).hexdigest()
        if b.header.sealed_sha256 != sha or photo_sha != room.produced.photos.get((shot, frame)):
            problems.append(f"bundle {cid}: not the photo the camera took for shot {shot} frame {frame}")
        want = room.produced.derivatives.get(photo_sha)
        got = hashlib.sha256(b.derivative).hexdigest() if b.derivative else None
        if got != want:
            problems.append(f"bundle {cid}: derivative differs from the one QC made")
        opened += 1
        derivatives += b.derivative is not None
    return opened, derivatives, problems


def _void_kind(reason: str) -> str:
    for kind in ("superseded", "timeout", "operator cancel", "interrupted"):
        if reason.startswith(kind):
            return kind
    return reason


def format_summary(s: dict[str, Any]) -> str:
    rows = [
        ("shot numbers used", s["shots"]), ("captured", s["shots_captured"]),
        ("void", ", ".join(f"{k} {v}" for k, v in s["voids"].items()) or "0"),
        ("identities read", ", ".join(f"{k} {v}" for k, v in sorted(s["reads"].items()))),
        ("frames stored", f"{s['frames_stored']} ({s['bundles']} sealed bundles in the outbox, SHA-256 verified)"),
        ("opened as the centre", "no centre key here (sealed to the configured key)" if s["opened"] is None else
         f"{s['opened']} bundles opened with the key in {s['centre_keys']}: photos identical to the camera's,"
         f" {s['derivatives']} with a diploma derivative"),
        ("operator retakes", s["retakes"]),
        ("QC retakes", f"{s['qc_retakes']} ({', '.join(f'{k} {v}' for k, v in sorted(s['qc_reasons'].items()))})"),
        ("camera failures", s["frames_failed"]), ("ignored pedal presses", s["triggers_ignored"]),
        ("refused identities", s["refused_identities"]),
        ("classroom time", f"{s['classroom_minutes']} min → {s['students_per_minute']} students/min"
                           f" ({s['students_per_minute'] * 60:.0f}/h)"),
        ("engine (wall clock)", f"{s['wall_seconds']} s → {s['engine_shots_per_minute']} students/min"),
    ]
    width = max(len(k) for k, _ in rows)
    text = "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
    verdict = "journal matches the script" if not s["mismatches"] else "MISMATCH:\n    " + "\n    ".join(
        s["mismatches"])
    return f"simulated classroom, session {s['session']} in {s['data_dir']}\n{text}\n  {verdict}"


def sim_config(cfg: Config, data_dir: Path, size: tuple[int, int] | None) -> Config:
    """The configuration a simulation runs with: simulated devices whatever the file says."""
    camera = cfg.camera if size is None else dataclasses.replace(cfg.camera, width=size[0], height=size[1])
    return dataclasses.replace(cfg, data_dir=str(data_dir), camera=dataclasses.replace(camera, backend="sim"),
                               gpio=dataclasses.replace(cfg.gpio, pin_factory="mock"))
