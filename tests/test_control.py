"""The control socket survives any input, serves several clients at once, and decides source and reader itself."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from conftest import STUDENTS

from appliance.control import CLIENT_TIMEOUT_S, MAX_REQUEST, ControlError, ControlServer, send
from appliance.session import Led


@pytest.fixture
def server(room):
    s = ControlServer(room.cfg.control_path, room.daemon, room.daemon.lock)
    s.start()
    yield s
    s.stop()


def raw(path, payload: bytes, shut: bool = True) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(CLIENT_TIMEOUT_S + 5)
        s.connect(str(path))
        if payload:
            s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return json.loads(s.makefile("rb").readline())


@pytest.mark.parametrize(("payload", "error"), [
    (b"[1, 2]\n", "must be a JSON object"),
    (b'"cancel"\n', "must be a JSON object"),
    (b"{not json\n", "not JSON"),
    (b"\xff\xfe\xfa\n", "not UTF-8"),
    (b"\n", "empty request"),
    (b'{"cmd": "identity", "kind": "id_number", "key": 123}\n', "as strings"),
    (b'{"cmd": "identity", "kind": ["id_number"], "key": "x"}\n', "as strings"),
    (b'{"cmd": "identity", "kind": "passport", "key": "x"}\n', "bad identity"),
    (b'{"cmd": 7}\n', "unknown command"),
    (b'{"cmd": "session", "action": "reboot"}\n', "session needs"),
])
def test_bad_requests_get_a_clear_refusal(server, room, payload, error):
    reply = raw(server.path, payload)
    assert reply["ok"] is False and error in reply["error"]
    assert raw(server.path, b'{"cmd": "cancel"}\n') == {"ok": True}  # the control thread lives on


def test_a_huge_line_is_refused_without_reading_it_all(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(server.path))
        sent = 0
        try:
            while sent < 50 * MAX_REQUEST:  # the server stops reading after MAX_REQUEST and answers
                s.sendall(b"x" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = json.loads(s.makefile("rb").readline())
    assert reply["ok"] is False and "longer than" in reply["error"]
    assert raw(server.path, b'{"cmd": "cancel"}\n') == {"ok": True}


def test_a_silent_client_times_out_and_does_not_block_others(server):
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(str(server.path))
    try:
        t0 = time.monotonic()
        assert raw(server.path, b'{"cmd": "cancel"}\n') == {"ok": True}  # served while the silent one waits
        assert time.monotonic() - t0 < CLIENT_TIMEOUT_S
        silent.settimeout(CLIENT_TIMEOUT_S + 5)
        reply = json.loads(silent.makefile("rb").readline())
        assert reply["ok"] is False and "no complete request" in reply["error"]
    finally:
        silent.close()


def test_many_clients_at_once(server):
    replies = []

    def one():
        replies.append(raw(server.path, b'{"cmd": "cancel"}\n'))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert replies == [{"ok": True}] * 20


def test_a_client_that_hangs_up_early_costs_nothing(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(server.path))
        s.sendall(b'{"cmd": "cancel"}\n')
    assert raw(server.path, b'{"cmd": "cancel"}\n') == {"ok": True}


def test_source_and_reader_are_the_kits_not_the_clients(server, room):
    reply = raw(server.path, json.dumps({"cmd": "identity", "kind": "id_number", "key": STUDENTS[1],
                                         "source": "sam", "reader": "sam:/dev/ttyUSB0"}).encode() + b"\n")
    assert reply == {"ok": True}
    room.daemon.settle()
    assert room.led is Led.READY
    (source, reader), = room.daemon.journal.db.execute("SELECT source, reader FROM reads").fetchall()
    assert source == "manual" and reader.startswith("control:") and "sam" not in reader


def test_session_through_the_daemon_refuses_while_a_student_is_pending(server, room):
    send(server.path, {"cmd": "identity", "kind": "id_number", "key": STUDENTS[2]})
    room.daemon.settle()
    done = {}

    def ask():
        try:
            done["reply"] = send(server.path, {"cmd": "session", "action": "new", "school": "1"})
        except ControlError as exc:
            done["error"] = exc

    t = threading.Thread(target=ask)
    t.start()
    while t.is_alive():
        room.daemon.settle()  # the loop runs the request (the in-process daemon is stepped by hand)
        time.sleep(0.01)
    assert "a student is at the camera" in str(done["error"]) and done["error"].code == 2
    send(server.path, {"cmd": "cancel"})
    room.daemon.settle()
    t = threading.Thread(target=ask)
    t.start()
    while t.is_alive():
        room.daemon.settle()
        time.sleep(0.01)
    assert "opened" in done["reply"]


def test_socket_needs_the_lock(room, tmp_path):
    from appliance.datadir import Lock
    from appliance.errors import StartRefused

    with pytest.raises(StartRefused, match="does not hold"):
        ControlServer(tmp_path / "x.sock", room.daemon, Lock(tmp_path / "other.lock")).start()
