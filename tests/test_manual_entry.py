"""`capturekit enter`: a typed ID number reaches a running daemon as a manual identity, checked like a card."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import STUDENTS

from appliance.control import ControlServer
from appliance.session import Led


def enter(room, stdin: str = "", *args: str) -> subprocess.CompletedProcess:
    toml = room.cfg.data_path / "kit.toml"
    toml.write_text(f'kit_id = "kit-test"\ndata_dir = "{room.cfg.data_dir}"\n')
    return subprocess.run([sys.executable, "-m", "appliance.cli", "--config", str(toml), "enter", *args],
                          input=stdin, capture_output=True, text=True, timeout=60, env=os.environ)


def test_interactive_entry_validates_then_sends(room):
    server = ControlServer(room.cfg.control_path, room.daemon, room.daemon.lock)
    server.start()
    try:
        bad = STUDENTS[3][:-1] + ("0" if STUDENTS[3][-1] != "0" else "1")
        out = enter(room, f"{bad}\n{STUDENTS[3]}\nStudent 3\n\n")
        assert out.returncode == 0, out.stderr
        assert "check_digit" in out.stdout and "sent" in out.stdout
        room.daemon.settle()
        assert room.led is Led.READY
        row = room.daemon.journal.db.execute("SELECT kind, key, source, reader FROM reads").fetchall()
        assert row == [("id_number", STUDENTS[3], "manual", row[0][3])] and row[0][3].startswith("control:")
        assert "Student" not in str(row)  # the typed name is a cross-check only, never stored
    finally:
        server.stop()


def test_name_that_contradicts_the_roster_is_not_sent(room):
    server = ControlServer(room.cfg.control_path, room.daemon, room.daemon.lock)
    server.start()
    try:
        out = enter(room, "", "--id-number", STUDENTS[4], "--name", "Somebody Else")
        assert out.returncode == 2 and "another name" in out.stdout
        room.daemon.settle()
        assert room.daemon.journal.db.execute("SELECT COUNT(*) FROM reads").fetchone() == (0,)
        out = enter(room, "", "--id-number", STUDENTS[4], "--name", "Student 4")
        assert out.returncode == 0
        room.daemon.settle()
        assert room.led is Led.READY
    finally:
        server.stop()


def test_no_daemon_is_a_clear_error(room):
    out = enter(room, "", "--id-number", STUDENTS[0])
    assert out.returncode == 5 and "not reachable" in out.stderr
