"""The whole engine: real daemon loop, real journal file, real JPEG bundles, gpiozero mock pins."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import STUDENTS, card, opened
from PIL import Image

from appliance.control import ControlServer, send
from appliance.daemon import EXIT_CAMERA, EXIT_STORAGE, Daemon, Devices
from appliance.devices.camera import SimCamera
from appliance.devices.gpio import LED_PATTERNS
from appliance.identity import Source
from appliance.session import Led, State


def q(room, sql, *params):
    return room.daemon.journal.db.execute(sql, params).fetchall()


def bundle(room, cid: str, directory: str = "outbox") -> tuple[dict, bytes]:
    """The sealed record and photo of a bundle (or kept reject), opened with the centre's key."""
    b = opened(room.daemon.spool.root / directory / f"{cid}.bundle")
    return b.record, b.photo


def jpeg_tag(data: bytes) -> str:
    return Image.open(io.BytesIO(data)).info["comment"].decode()


def led_pins(room) -> tuple[int, int, int]:
    f, c = room.factory, room.cfg.status_led
    return tuple(int(f.pin(p).state) for p in (c.red, c.green, c.blue))


def test_normal_flow_writes_a_verified_bundle(room):
    room.wait(5)
    room.tap(card(STUDENTS[0]))
    assert room.led is Led.READY and led_pins(room) == LED_PATTERNS[Led.READY][0]  # real pins: cyan
    assert q(room, "SELECT number, status FROM shots") == [(1, "open")]  # durable before the shutter
    room.wait(3)
    room.press()
    assert room.led is Led.OK and led_pins(room) == (0, 1, 0)
    (cid, status, sha, path, photo_sha), = q(room, "SELECT capture_id, status, sha256, path, photo_sha256"
                                             " FROM frames")
    assert status == "stored" and cid.endswith("-000001-01") and path == f"outbox/{cid}.bundle"
    raw = (room.daemon.spool.root / path).read_bytes()
    assert b"\xff\xd8\xff" not in raw and STUDENTS[0].encode() not in raw  # sealed: no JPEG, no ID number
    rec, data = bundle(room, cid)
    assert hashlib.sha256(data).hexdigest() == rec["photo"]["sha256"] == photo_sha
    assert room.daemon.spool.header(cid).sealed_sha256 == sha
    assert rec["shot"] == 1 and rec["frame"] == 1 and rec["capture_id"] == cid
    assert rec["identity"] == {"kind": "id_number", "key": STUDENTS[0], "source": "sim", "reader": "test-reader"}
    assert "name" not in json.dumps(rec)  # nothing beyond the identity key leaves the roster
    assert Image.open(io.BytesIO(data)).size == (640, 480) and jpeg_tag(data) == "capturekit-sim shot=1 frame=1"
    assert q(room, "SELECT status, selected_frame FROM shots") == [("captured", 1)]
    buzzer = room.factory.pin(room.cfg.buzzer.pin)
    assert any(s.state for s in buzzer.states)  # the buzzer pin really toggled


def test_light_panel_levels_follow_the_shot(room):
    pwm = room.factory.pin(room.cfg.light.pin)
    room.tap(card(STUDENTS[0]))
    assert pwm.state == pytest.approx(room.cfg.light.preview)
    pwm.clear_states()
    room.press()
    levels = [s.state for s in pwm.states]
    assert pytest.approx(room.cfg.light.shot) in levels  # full level during the exposure
    assert pwm.state == pytest.approx(room.cfg.light.idle)


def test_trigger_without_identity_records_no_shot(room):
    room.press()
    assert room.led is Led.ERROR and led_pins(room) == (1, 0, 0)
    assert q(room, "SELECT COUNT(*) FROM shots") == [(0,)]
    assert q(room, "SELECT kind FROM events WHERE kind='trigger_without_identity'")
    assert room.camera.captures == 0


def test_retake_keeps_every_frame_and_selects_the_latest(room):
    room.tap(card(STUDENTS[0]))
    room.wait(3)
    room.press()
    room.wait(2)  # inside the 5 s window
    room.press()
    frames = q(room, "SELECT frame, status, capture_id, supersedes FROM frames ORDER BY frame")
    assert [(f, s) for f, s, _, _ in frames] == [(1, "stored"), (2, "stored")]
    assert frames[1][3] == frames[0][2]  # the second bundle says which it supersedes
    assert q(room, "SELECT selected_frame FROM shots") == [(2,)]
    rec, data = bundle(room, frames[1][2])
    assert rec["supersedes"] == frames[0][2] and jpeg_tag(data).endswith("shot=1 frame=2")
    assert [f["frame"] for f in rec["frames"]] == [1, 2]
    assert len(room.daemon.spool.bundle_ids()) == 2


def test_second_identity_voids_the_first(room):
    room.tap(card(STUDENTS[0]))
    room.wait(8)
    room.tap(card(STUDENTS[1]))
    room.press()
    rows = q(room, "SELECT number, status, void_reason FROM shots ORDER BY number")
    assert rows[0][:2] == (1, "void") and rows[0][2].startswith("superseded")
    assert rows[1][:2] == (2, "captured")
    rec, data = bundle(room, room.daemon.spool.bundle_ids()[0])
    assert rec["identity"]["key"] == STUDENTS[1] and jpeg_tag(data).endswith("shot=2 frame=1")


def test_timeout_voids_with_reason_and_idles(room):
    room.tap(card(STUDENTS[0]))
    room.wait(room.cfg.session.ready_timeout_s + 1)
    assert room.led is Led.IDLE and room.state is State.IDLE
    (status, reason), = q(room, "SELECT status, void_reason FROM shots")
    assert status == "void" and reason.startswith("timeout")


def test_double_trigger_takes_one_photo(room):
    room.tap(card(STUDENTS[0]))
    room.wait(3)
    room.pedal.press()
    room.pedal.press()
    room.pedal.press()
    room.daemon.settle()
    assert room.camera.captures == 1 and q(room, "SELECT COUNT(*) FROM frames") == [(1,)]


def test_camera_failure_then_retry(room):
    room.tap(card(STUDENTS[0]))
    room.camera.fail_next("sensor error")
    room.press()
    assert room.led is Led.ERROR and led_pins(room) == (1, 0, 0)
    assert q(room, "SELECT status FROM shots") == [("open",)]
    room.wait(2)
    room.press()
    assert room.led is Led.OK
    assert q(room, "SELECT frame, status FROM frames ORDER BY frame") == [(1, "failed"), (2, "stored")]
    rec, data = bundle(room, room.daemon.spool.bundle_ids()[0])
    assert jpeg_tag(data).endswith("shot=1 frame=2") and rec["frames"][0]["status"] == "failed"


def test_hung_camera_times_out_and_repeated_failures_ask_for_a_restart(room):
    room.tap(card(STUDENTS[0]))
    room.camera.hang_next(0.6)  # real seconds: the worker is stuck in the camera call
    room.pedal.press()
    room.daemon.step(None)  # the trigger: TakePhoto goes to the worker, which hangs
    room.clock.advance(room.cfg.session.capture_timeout_s + 0.1)
    room.daemon.tick()  # the session's capture deadline passes
    assert room.led is Led.ERROR and room.state is State.READY
    room.clock.advance(2)
    room.pedal.press()
    room.daemon.step(None)  # retry while the camera is still stuck: refused at once, not queued
    room.daemon.settle()
    frames = q(room, "SELECT frame, status, detail FROM frames ORDER BY frame")
    assert [f[:2] for f in frames] == [(1, "failed"), (2, "failed")] and "busy" in frames[1][2]
    assert room.daemon.exit_code is None
    room.camera.fail_next("still broken")
    room.wait(2)
    room.press()
    assert room.daemon.exit_code == EXIT_CAMERA  # three in a row: let systemd restart the daemon
    assert q(room, "SELECT kind FROM events WHERE kind='camera_restart'")


class GatedCamera(SimCamera):
    """A camera whose first capture returns only when the test opens the gate."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.gate = threading.Event()
        self.first = True

    def capture(self, shot, frame):
        if self.first:
            self.first = False
            self.gate.wait(5)
        return super().capture(shot, frame)


def test_late_photo_is_kept_as_reject_and_never_bound(kit_config):
    from appliance.simulate import Classroom

    room = Classroom(kit_config)
    room.camera = GatedCamera(640, 480)
    room.daemon.devices.camera = room.camera
    room.daemon.start()
    try:
        room.tap(card(STUDENTS[0]))
        room.pedal.press()
        room.daemon.step(None)
        room.clock.advance(room.cfg.session.capture_timeout_s + 0.1)
        room.daemon.tick()  # frame 1 timed out
        room.camera.gate.set()  # ... and now arrives
        room.daemon.settle()
        room.wait(2)
        room.press()  # frame 2
        rows = q(room, "SELECT frame, status, dest, reasons FROM frames ORDER BY frame")
        assert rows[0][:3] == (1, "rejected", "rejects") and "stale" in rows[0][3]
        assert rows[1][:2] == (2, "stored")
        _, data = bundle(room, room.daemon.spool.bundle_ids()[0])
        assert jpeg_tag(data).endswith("frame=2")
        _, late = bundle(room, f"{kit_config.kit_id}-{room.daemon.journal.journal_id}-000001-01", "rejects")
        assert jpeg_tag(late).endswith("frame=1")
    finally:
        room.daemon.close()


def test_same_student_twice_is_warned_and_reopens_their_shot(room):
    room.tap(card(STUDENTS[0]))
    room.press()
    room.wait(10)
    room.tap(card(STUDENTS[1]))
    room.press()
    room.wait(10)
    room.tap(card(STUDENTS[0]))
    assert room.led is Led.WARN and room.daemon.beeper.last.value == "warn"
    room.press()
    assert q(room, "SELECT COUNT(*) FROM shots") == [(2,)]
    assert q(room, "SELECT shot, frame, status FROM frames ORDER BY shot, frame") == [
        (1, 1, "stored"), (1, 2, "stored"), (2, 1, "stored")]
    assert q(room, "SELECT check_status FROM reads ORDER BY id")[-1] == ("shot_this_session",)


def test_invalid_check_digit_and_unknown_are_refused(room):
    bad = STUDENTS[0][:-1] + ("0" if STUDENTS[0][-1] != "0" else "1")
    room.tap(card(bad))
    assert room.led is Led.REJECT and room.daemon.beeper.last.value == "invalid"
    room.wait(3)
    from appliance import idnumber

    room.tap(card(idnumber.make("11010519990101123")))  # valid, but not on this school's roster
    assert room.led is Led.REJECT and room.daemon.beeper.last.value == "unknown"
    assert q(room, "SELECT check_status FROM reads ORDER BY id") == [("invalid",), ("not_on_roster",)]
    assert q(room, "SELECT COUNT(*) FROM shots") == [(0,)]
    room.tap(card(STUDENTS[0], Source.MANUAL))  # the operator types the right number
    assert room.led is Led.READY
    assert q(room, "SELECT source FROM reads ORDER BY id")[-1] == ("manual",)


def test_qc_retake_keeps_reject_and_operator_can_accept_it(room):
    room.tap(card(STUDENTS[0]))
    room.qc.fail_next = ("eyes_closed",)
    room.press()
    assert room.led is Led.RETAKE
    (cid, status, sha), = q(room, "SELECT capture_id, status, sha256 FROM frames")
    assert status == "rejected"
    assert room.daemon.spool.header(cid, room.daemon.spool.rejects).sealed_sha256 == sha
    rec, photo = bundle(room, cid, "rejects")
    assert rec["verdict"]["reasons"] == ["eyes_closed"] and jpeg_tag(photo).endswith("frame=1")
    assert room.daemon.spool.bundle_ids() == []
    room.daemon.accept_anyway()
    room.daemon.settle()
    assert room.led is Led.OK
    rec, _ = bundle(room, cid)
    assert rec["verdict"]["accepted_by_operator"] is True and rec["verdict"]["result"] == "fail"


def test_fsync_failure_fails_the_capture_loudly_and_recovery_settles_it(room, monkeypatch):
    real = os.fsync
    room.tap(card(STUDENTS[0]))

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    room.press()
    monkeypatch.setattr(os, "fsync", real)
    assert room.daemon.exit_code == EXIT_STORAGE and room.state is State.FAULT
    assert room.led is Led.FAULT
    assert room.daemon.spool.bundle_ids() == []
    assert q(room, "SELECT status FROM frames") == [("storing",)]
    room.daemon.close()
    # restart: recovery finds the interrupted frame and the open shot
    again = Daemon(room.cfg, Devices(SimCamera(640, 480), [], room.factory), room.clock)
    again.start()
    try:
        db = again.journal.db
        assert db.execute("SELECT status FROM frames").fetchall() == [("lost",)]
        (status, reason), = db.execute("SELECT status, void_reason FROM shots").fetchall()
        assert status == "void" and reason.startswith("interrupted")
        assert not list(again.spool.outbox.iterdir())  # no half-written bundle left behind
        assert again.session.next_shot == 2  # the number is never reused
    finally:
        again.close()


def test_control_socket_cancel_and_manual_entry(room, tmp_path):
    server = ControlServer(tmp_path / "c.sock", room.daemon, room.daemon.lock)
    server.start()
    try:
        assert send(server.path, {"cmd": "identity", "kind": "id_number", "key": STUDENTS[2],
                                  "source": "manual"}) == "ok"
        room.daemon.settle()
        assert room.led is Led.READY
        send(server.path, {"cmd": "cancel"})
        room.daemon.settle()
        assert q(room, "SELECT status, void_reason FROM shots") == [("void", "operator cancel")]
        from appliance.control import ControlError

        with pytest.raises(ControlError, match="unknown command"):
            send(server.path, {"cmd": "reboot"})
        with pytest.raises(ControlError, match="bad identity"):
            send(server.path, {"cmd": "identity", "kind": "passport", "key": "x"})
    finally:
        server.stop()


def test_journal_pragmas_on_every_connection(room):
    db = room.daemon.journal.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_journal_is_readable_while_the_daemon_writes(room):
    room.tap(card(STUDENTS[0]))
    other = sqlite3.connect(Path(room.cfg.data_dir) / "journal.sqlite")
    assert other.execute("SELECT status FROM shots").fetchall() == [("open",)]
    room.press()
    assert other.execute("SELECT status FROM shots").fetchall() == [("captured",)]
    other.close()


# ---- the log never carries a name; a QC that cannot read the photo is a retake; storage faults are one path
def test_names_classes_and_student_numbers_never_reach_the_log(kit_config, caplog):
    import dataclasses
    import logging
    import pty

    from appliance.roster import load_csv
    from appliance.simulate import Classroom

    csv = kit_config.data_path.parent / "named.csv"
    csv.write_text("id_number,name,class,student_no\n" + "".join(
        f"{n},张同学{i},电子3班,S2026{i:04d}\n" for i, n in enumerate(STUDENTS)), encoding="utf-8")
    report = load_csv(csv, kit_config.roster_path)
    assert report.dropped == ["class", "name", "student_no"]  # read to validate, never kept on the kit
    master, slave = pty.openpty()  # the school's local display, as policy allows
    cfg = dataclasses.replace(kit_config, privacy=dataclasses.replace(
        kit_config.privacy, show_names=True, console_device=os.ttyname(slave)))
    room = Classroom(cfg)
    room.daemon.start()
    try:
        with caplog.at_level(logging.DEBUG):
            for i, n in enumerate(STUDENTS[:3]):
                room.tap(dataclasses.replace(card(n), display=f"张同学{i}"))  # a SAM reader passing the name
                room.wait(2)
                room.press()
                room.wait(6)
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "shot 1 ready: id_number#" in text  # the console line is logged, with no character of the key
        for secret in ("张同学", "电子3班", "S2026", STUDENTS[0], STUDENTS[1], STUDENTS[0][-4:], STUDENTS[0][6:14]):
            assert secret not in text
        shown = os.read(master, 65536).decode()
        assert "张同学0" in shown and "张同学2" in shown  # only on the local display
    finally:
        room.daemon.close()
        os.close(master)
        os.close(slave)
    raw = b"".join(p.read_bytes() for p in kit_config.data_path.rglob("*") if p.is_file())
    assert "张同学".encode() not in raw and b"S2026" not in raw


def test_an_undecodable_photo_is_a_failed_capture_not_a_stored_one(kit_config):
    from appliance.qc import ImageDecodeError
    from appliance.simulate import Classroom

    def broken_qc(photo):
        raise ImageDecodeError("truncated JPEG")

    room = Classroom(kit_config)
    room.daemon.assess = broken_qc
    room.daemon.start()
    try:
        room.tap(card(STUDENTS[0]))
        room.wait(2)
        room.press()
        assert room.led is Led.ERROR and room.state is State.READY  # the camera-error path: press again
        (status, detail), = room.daemon.journal.db.execute("SELECT status, detail FROM frames").fetchall()
        assert status == "failed" and "photo not decodable" in detail
        assert not room.daemon.spool.bundle_ids()
    finally:
        room.daemon.close()


def test_storage_error_while_journalling_a_card_read_is_the_fault_path(room, caplog, monkeypatch):
    from appliance.errors import StorageError

    def full(*args, **kwargs):
        raise StorageError("journal write failed: database or disk is full")

    monkeypatch.setattr(room.daemon.journal, "record_read", full)
    room.reader.present(card(STUDENTS[0]))
    room.daemon.settle()
    assert room.daemon.exit_code == EXIT_STORAGE and room.led is Led.FAULT
    assert any("storage failed" in r.getMessage() for r in caplog.records)


def test_watchdog_stops_while_a_camera_call_hangs(room):
    import dataclasses
    import time

    cfg = room.daemon.cfg = dataclasses.replace(room.cfg, camera=dataclasses.replace(room.cfg.camera, timeout_s=0.5))
    room.tap(card(STUDENTS[0]))
    assert room.daemon.alive()
    room.camera.hang_next(2 * cfg.camera.timeout_s + 1.5)
    room.pedal.press()
    room.daemon.step(None)  # TakePhoto: the camera thread is now stuck in capture()
    time.sleep(2 * cfg.camera.timeout_s + 0.5)
    assert not room.daemon.alive()  # no pings: systemd restarts the daemon
    room.daemon.settle(limit=10)
    assert room.daemon.alive()
