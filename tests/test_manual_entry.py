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


def test_interactive_entry_validates_twice_then_sends(room):
    server = ControlServer(room.cfg.control_path, room.daemon, room.daemon.lock)
    server.start()
    try:
        bad = STUDENTS[3][:-1] + ("0" if STUDENTS[3][-1] != "0" else "1")
        other = STUDENTS[4]
        out = enter(room, f"{bad}\n{STUDENTS[3]}\n{other}\n{STUDENTS[3]}\n{STUDENTS[3]}\n\n")
        assert out.returncode == 0, out.stderr
        assert "check_digit" in out.stdout and "the two entries differ: nothing sent" in out.stdout
        assert out.stdout.count("sent — watch") == 1
        room.daemon.settle()
        assert room.led is Led.READY
        row = room.daemon.journal.db.execute("SELECT kind, key, source, reader FROM reads").fetchall()
        assert len(row) == 1 and row[0][0] == "id_number" and row[0][2] == "manual"
        assert row[0][1] != STUDENTS[3] and len(row[0][1]) == 64  # the protected form, never the number
        assert row[0][3].startswith("control:")
    finally:
        server.stop()


def test_a_number_not_on_the_roster_is_warned(room):
    from appliance import idnumber

    server = ControlServer(room.cfg.control_path, room.daemon, room.daemon.lock)
    server.start()
    try:
        out = enter(room, "", "--id-number", idnumber.make("11010519990101123"))
        assert out.returncode == 0 and "not on this school's roster" in out.stdout
        room.daemon.settle()
        assert room.led is Led.REJECT
    finally:
        server.stop()


def test_no_daemon_is_a_clear_error(room):
    out = enter(room, "", "--id-number", STUDENTS[0])
    assert out.returncode == 5 and "not reachable" in out.stderr
