"""``capturekit selftest``: bring-up of a kit, one device at a time, with a PASS/FAIL line for each.

Meant for the bench and for the first minutes in a classroom: the LED walks through every state,
the buzzer plays every tone, the panel ramps, the camera takes a timed full-resolution shot, the
pedal must be pressed within the wait, readers are started and report what they see. The daemon
must not be running (it owns the camera and GPIO).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable

from .config import Config
from .devices.gpio import Beeper, LightPanel, StatusLight, Trigger
from .factory import build_devices
from .journal import connect
from .roster import Roster
from .session import Led, Light, Tone


def selftest(cfg: Config, wait_trigger_s: float = 10.0, out: Callable[[str], None] = print,
             pause: float = 0.3) -> bool:
    results: list[bool] = []

    def report(name: str, ok: bool | None, detail: str) -> None:
        out(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}  {name}: {detail}")
        if ok is not None:
            results.append(ok)

    data = cfg.data_path
    try:
        data.mkdir(parents=True, exist_ok=True)
        probe = data / ".selftest"
        probe.write_bytes(b"x")
        os.fsync(os.open(probe, os.O_RDONLY))
        probe.unlink()
        free = shutil.disk_usage(data).free // 2**20
        report("storage", free > 1024, f"{data} writable, {free} MB free (want > 1024 MB)")
    except OSError as exc:
        report("storage", False, f"{data}: {exc}")
    journal = data / "journal.sqlite"
    if journal.exists():
        db = connect(journal)
        mode, sync = db.execute("PRAGMA journal_mode").fetchone()[0], db.execute("PRAGMA synchronous").fetchone()[0]
        db.conn.close()
        report("journal", mode == "wal" and sync == 2, f"journal_mode={mode} synchronous={sync} (want wal, 2=FULL)")
    rows = Roster(cfg.roster_path).count()
    report("roster", rows > 0, f"{rows} students in {cfg.roster_path}")

    devices = build_devices(cfg)
    f = devices.pin_factory
    try:
        led, beeper, light = StatusLight(cfg.status_led, f), Beeper(cfg.buzzer, f), LightPanel(cfg.light, f)
        for state in Led:
            led.show(state)
            time.sleep(pause)
        for tone in Tone:
            beeper.play(tone)
            time.sleep(pause)
        for level in Light:
            light.set(level)
            time.sleep(pause)
        led.show(Led.IDLE)
        report("status LED, buzzer, light panel", True, "every state, tone and level driven (check by eye and ear)")
        cam = devices.camera
        try:
            cam.start()
            cam.probe()
            light.set(Light.SHOT)
            t0 = time.monotonic()
            photo = cam.capture(0, 0)
            ms = (time.monotonic() - t0) * 1000
            light.set(Light.IDLE)
            report("camera", True, f"{photo.width}x{photo.height} JPEG {len(photo.jpeg) // 1024} KB in {ms:.0f} ms")
        except Exception as exc:
            report("camera", False, str(exc))
        finally:
            cam.close()
        if wait_trigger_s > 0:
            pressed = threading.Event()
            trig = Trigger(cfg.trigger, f, pressed.set)
            out(f"      press the pedal within {wait_trigger_s:g} s …")
            report("trigger", pressed.wait(wait_trigger_s), f"BCM {cfg.trigger.pin}")
            trig.close()
        else:
            report("trigger", None, "not waited for (--wait-trigger 0)")
        for reader in devices.readers:
            problems: list[str] = []

            def on_problem(code: str, detail: str, problems: list[str] = problems) -> None:
                problems.append(f"{code}: {detail}")

            try:
                reader.start(lambda i: None, on_problem)
                time.sleep(1.0)
                reader.stop()
                report(f"reader {reader.name}", not problems, "; ".join(problems) or "started, no problem reported")
            except Exception as exc:
                report(f"reader {reader.name}", False, str(exc))
        for dev in (led, beeper, light):
            dev.close()
    finally:
        if hasattr(f, "close"):
            f.close()
    return all(results)
