"""A scripted classroom through the real daemon, journal and spool, with simulated devices.

Students queue in roster order and tap their card; the operator's foot presses the pedal (a real
gpiozero Button on mock pins). A share of students bring the awkward cases the session machine
must handle: walking off before the shot, timing out, a double press, a camera failure, a QC retake,
an operator retake, a bad check digit fixed by manual entry, a visitor not on the roster, a pedal
press before any card, a student coming back, an operator cancel. Time is simulated (a classroom
hour runs in seconds); photos, SQLite and fsyncs are real.

The script keeps its own account of what must have happened and compares it with the journal at
the end: the summary printed is the journal's, and any disagreement is listed and fails the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import idnumber
from .clock import ManualClock
from .config import Config
from .daemon import Daemon, Devices, QcOutcome
from .devices.camera import Photo, SimCamera
from .devices.gpio import SimPedal, pin_factory
from .identity import Identity, Kind, Source, make
from .roster import load_csv
from .session import Led, State

SCENARIOS: dict[str, int] = {  # weight per 100 students
    "normal": 58, "retake": 6, "double_press": 6, "walk_off": 4, "timeout": 3, "camera_fail": 4,
    "qc_fail": 5, "invalid_id": 3, "unknown_visitor": 2, "trigger_first": 3, "comes_back": 4, "cancel": 2,
}


@dataclass
class Student:
    number: int
    id_number: str
    name: str
    klass: str
    scenario: str = "normal"

    def card(self, source: Source = Source.SIM) -> Identity:
        return make(Kind.ID_NUMBER, self.id_number, source, "sim-reader")


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
    names, weights = zip(*SCENARIOS.items(), strict=True)
    out = []
    for i in range(n):
        birth = dt.date(2004, 1, 1) + dt.timedelta(days=rng.randrange(0, 1000))
        number = idnumber.make(f"{rng.choice(['110105', '310104', '440305', '510107'])}{birth:%Y%m%d}{i % 1000:03d}")
        scenario = rng.choices(names, weights)[0] if i else "normal"
        out.append(Student(i + 1, number, f"学生{i + 1:04d}", f"class-{i // 40 + 1}", scenario))
    return out


def write_roster(students: list[Student], path: Path) -> None:
    lines = ["id_number,name,class"] + [f"{s.id_number},{s.name},{s.klass}" for s in students]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Classroom:
    """The simulated crew around a real daemon."""

    def __init__(self, cfg: Config, quiet: bool = True) -> None:
        self.cfg = cfg
        self.clock = ManualClock()
        self.factory = pin_factory("mock")
        self.camera = SimCamera(cfg.camera.width, cfg.camera.height, cfg.camera.jpeg_quality,
                                (cfg.camera.lores_width, cfg.camera.lores_height))
        from .readers.sim import SimReader

        self.reader = SimReader("sim-reader")
        self.qc = SimQc()
        self.daemon = Daemon(cfg, Devices(self.camera, [self.reader], self.factory), self.clock, self.qc)
        self.pedal = SimPedal(self.factory, cfg.trigger)
        self.expected = Expected()

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

    def _shoot_ok(self, retake: bool = False) -> None:
        """Press and expect a stored frame (LED green only after fsync + commit)."""
        self.wait(4.0)  # the operator frames the student
        self.press()
        if self.led is not Led.OK:
            raise SimulationError(f"expected the OK LED after the shot, got {self.led} in {self.state}")
        self.expected.frames_stored += 1

    def student(self, s: Student, again: list[Student], after_walk_off: bool = False) -> None:
        """One student's turn, by scenario."""
        e = self.expected
        self.wait(14.0)  # walks up from the queue, sits down
        sc = s.scenario
        if sc == "trigger_first" and not after_walk_off:  # (a press now would shoot the empty stool)
            self.press()
            self._expect_led(Led.ERROR)
        if sc == "invalid_id":
            bad = s.id_number[:-1] + ("0" if s.id_number[-1] != "0" else "1")
            self.tap(make(Kind.ID_NUMBER, bad, Source.SIM, "sim-reader"))
            self._expect_led(Led.REJECT)
            e.refused += 1
            self.wait(4.0)  # the operator types the number from the student's paper
            self.tap(s.card(Source.MANUAL))
        else:
            self.tap(s.card())
        self._expect_ready()
        if sc == "walk_off":
            e.voids["superseded"] += 1
            again.append(s)
            return
        if sc == "timeout":
            self.wait(self.cfg.session.ready_timeout_s + 1)
            self._expect_led(Led.IDLE)
            e.voids["timeout"] += 1
            self.tap(s.card())
            self._expect_ready()
        if sc == "cancel":
            self.daemon.cancel()
            self.daemon.settle()
            e.voids["operator cancel"] += 1
            self.wait(3.0)
            self.tap(s.card())
            self._expect_ready()
        if sc == "camera_fail":
            self.camera.fail_next("simulated: sensor did not answer")
            self.wait(2.5)
            self.press()
            self._expect_led(Led.ERROR)
            e.frames_failed += 1
        if sc == "qc_fail":
            self.qc.fail_next = ("eyes_closed",)
            self.wait(2.5)
            self.press()
            self._expect_led(Led.RETAKE)
            e.frames_rejected += 1
        if sc == "double_press":
            self.wait(2.5)
            self.pedal.press()
            self.pedal.press()  # bounce / impatient foot: one shot, not two
            self.daemon.settle()
            self._expect_led(Led.OK)
            self.expected.frames_stored += 1
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
            again.append(s)
        self.wait(4.0)  # stands up, leaves

    def comes_back(self, s: Student) -> None:
        """A student returns: walked off earlier (first shot) or wants a retake (warned, same shot)."""
        self.wait(6.0)
        self.tap(s.card())
        if s.scenario == "comes_back":
            self._expect_led(Led.WARN)
            self._shoot_ok()
        else:
            self._expect_ready()
            self._shoot_ok()
            self.expected.captured += 1
        self.wait(3.0)

    def visitor(self, rng: random.Random) -> None:
        body = f"{rng.randrange(110000, 659999)}19990101{rng.randrange(0, 999):03d}"
        self.tap(make(Kind.ID_NUMBER, idnumber.make(body), Source.SIM, "sim-reader"))
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


def run(cfg: Config, students: int, seed: int = 1, log=print) -> dict[str, Any]:
    """Run a classroom of ``students`` through a real daemon in ``cfg.data_dir``; return the summary."""
    data = cfg.data_path
    data.mkdir(parents=True, exist_ok=True)
    people = make_students(students, seed)
    write_roster(people, data / "roster.csv")
    load_csv(data / "roster.csv", cfg.roster_path)
    room = Classroom(cfg)
    dm = room.daemon
    wall0 = time.monotonic()
    dm.start()
    try:
        earlier = dm.journal.current_session()
        if earlier is not None:  # a fresh session per run
            dm.journal.close_session(earlier)
        session = dm.session_id()
        rng = random.Random(seed + 1)
        again: list[Student] = []
        pending_walk_off: Student | None = None
        for s in people:
            if s.scenario == "unknown_visitor":
                room.visitor(rng)
            room.student(s, again, after_walk_off=pending_walk_off is not None)
            pending_walk_off = s if s.scenario == "walk_off" else None
        if room.state is not State.IDLE:
            room.wait(cfg.session.ready_timeout_s + 1)  # the last walk-off times out rather than being superseded
            if pending_walk_off is not None:
                room.expected.voids["superseded"] -= 1
                room.expected.voids["timeout"] += 1
        for s in again:
            room.comes_back(s)
        room.wait(cfg.session.retake_window_s + 1)
        summary = summarise(room, session, wall=time.monotonic() - wall0)
    finally:
        dm.close()
    return summary


def summarise(room: Classroom, session: int, wall: float) -> dict[str, Any]:
    j = room.daemon.journal
    counts = j.counts(session)
    voids = Counter(_void_kind(r) for _, r in j.voids(session))
    e = room.expected
    sim_minutes = room.clock.monotonic() / 60
    observed = {
        "shots_captured": counts.get("shots_captured", 0), "voids": dict(voids),
        "frames_stored": counts.get("frames_stored", 0), "frames_rejected": counts.get("frames_rejected", 0),
        "frames_failed": counts.get("frames_failed", 0),
    }
    expected = {
        "shots_captured": e.captured, "voids": {k: v for k, v in e.voids.items() if v},
        "frames_stored": e.frames_stored, "frames_rejected": e.frames_rejected, "frames_failed": e.frames_failed,
    }
    mismatches = [f"{k}: journal {observed[k]} != script {expected[k]}" for k in observed if observed[k] != expected[k]]
    spool = room.daemon.spool
    stored = [r[0] for r in j.db.execute(
        "SELECT f.capture_id FROM frames f JOIN shots s ON s.number = f.shot"
        " WHERE s.session_id = ? AND f.status = 'stored'", [session])]
    bad = {cid: spool.verify(cid) for cid in stored}
    mismatches += [f"bundle {cid}: {problem}" for cid, problem in bad.items() if problem]
    bundles = sum(1 for p in bad.values() if p is None)
    open_shots = counts.get("shots_open", 0)
    if open_shots:
        mismatches.append(f"{open_shots} shots still open")
    return {
        "session": session, "data_dir": str(room.cfg.data_path), **observed,
        "shots": counts.get("shots", 0), "retakes": room.daemon.session.ctx.counts.get("retakes", 0),
        "qc_retakes": room.daemon.session.ctx.counts.get("qc_retakes", 0),
        "triggers_ignored": room.daemon.session.ctx.counts.get("triggers_ignored", 0),
        "refused_identities": e.refused, "bundles": bundles,
        "classroom_minutes": round(sim_minutes, 1),
        "students_per_minute": round(e.captured / sim_minutes, 2) if sim_minutes else 0.0,
        "wall_seconds": round(wall, 1), "engine_shots_per_minute": round(e.captured / wall * 60, 1) if wall else 0.0,
        "mismatches": mismatches,
    }


def _void_kind(reason: str) -> str:
    for kind in ("superseded", "timeout", "operator cancel", "interrupted"):
        if reason.startswith(kind):
            return kind
    return reason


def format_summary(s: dict[str, Any]) -> str:
    rows = [
        ("shot numbers used", s["shots"]), ("captured", s["shots_captured"]),
        ("void", ", ".join(f"{k} {v}" for k, v in s["voids"].items()) or "0"),
        ("frames stored", f"{s['frames_stored']} ({s['bundles']} bundles in the outbox, SHA-256 verified)"),
        ("operator retakes", s["retakes"]), ("QC retakes", s["qc_retakes"]),
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
