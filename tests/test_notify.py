"""The daemons under a real ``$NOTIFY_SOCKET``: an AF_UNIX datagram socket this test binds and reads.

systemd's side of ``Type=notify`` + ``WatchdogSec=`` is exactly this: it sets ``NOTIFY_SOCKET`` and
``WATCHDOG_USEC`` and reads datagrams. READY=1 must arrive, WATCHDOG=1 must keep arriving while the main
loop turns and must stop when the loop is stuck (a camera call hung; for sync, an upload stalled on a
socket), so that systemd restarts the unit. CI has no running systemd; this is the part it can test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import STUDENTS, card

from appliance import notify
from appliance.daemon import Daemon
from appliance.session import State
from appliance.simulate import Classroom

CAPTUREKIT = Path(sys.executable).with_name("capturekit")


class NotifySocket:
    """What systemd listens on: collects every datagram with the time it arrived."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def wait_for(self, message: str, timeout: float, after: float = 0.0,
                 proc: subprocess.Popen | None = None) -> float:
        """Time ``message`` arrived (the first one after ``after``), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in list(self.messages):
                if m == message and t >= after:
                    return t
            if proc is not None and proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"exited with {proc.returncode} before {message}:\n{out}")
            time.sleep(0.02)
        raise AssertionError(f"no {message} within {timeout} s; got {[m for _, m in self.messages][-10:]}")

    def pings(self, start: float, end: float) -> list[float]:
        return [t for t, m in list(self.messages) if m == "WATCHDOG=1" and start <= t < end]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if not self.address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    sock = NotifySocket(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # WatchdogSec=0.2 s: pings at most every 0.1 s
    monkeypatch.setattr(notify, "_last_ping", 0.0)
    yield sock
    sock.close()


def _help() -> str:
    try:
        return subprocess.run([str(CAPTUREKIT), "--help"], capture_output=True, text=True, timeout=60).stdout
    except OSError:
        return ""


def _has_command(*words: str) -> bool:
    """Whether ``capturekit WORDS... --help`` exists (the sync daemon and the centre are being built)."""
    try:
        out = subprocess.run([str(CAPTUREKIT), *words, "--help"], capture_output=True, text=True, timeout=60)
    except OSError:
        return False
    return out.returncode == 0


# ---- the protocol itself


def test_messages_reach_a_path_socket(notify_socket):
    notify.ready("kit test: next shot 1")
    notify.watchdog()
    notify.stopping()
    notify_socket.wait_for("STOPPING=1", 2)
    lines = [m for _, m in notify_socket.messages]
    assert lines == ["READY=1", "STATUS=kit test: next shot 1", "WATCHDOG=1", "STOPPING=1"]


def test_abstract_socket_and_rate_limit(monkeypatch):
    sock = NotifySocket(f"@capturekit-test-{os.getpid()}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # 2 s: at most one ping per second
        monkeypatch.setattr(notify, "_last_ping", 0.0)
        for _ in range(50):
            notify.watchdog()
        t = sock.wait_for("WATCHDOG=1", 2)
        time.sleep(0.2)
        assert len(sock.pings(t - 1, t + 10)) == 1
    finally:
        sock.close()


def test_no_socket_no_messages(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notify.ready()
    notify.watchdog()  # a laptop or a test: nothing to talk to, nothing raised


# ---- the capture daemon, in process: its real loop, a camera that hangs


def _run_in_thread(daemon: Daemon) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    thread.start()
    return thread, result


def _wait_state(room: Classroom, states: tuple[State, ...], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while room.daemon.session.state not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"daemon stayed in {room.daemon.session.state}, wanted {states}")
        time.sleep(0.01)


def test_capture_pings_while_alive_and_stops_when_the_camera_hangs(kit_config, notify_socket):
    timeout_s = 0.5  # the daemon gives up pinging after ~2 x camera.timeout_s = 1 s inside one camera call
    cfg = dataclasses.replace(kit_config, camera=dataclasses.replace(kit_config.camera, timeout_s=timeout_s))
    room = Classroom(cfg)
    room.daemon.tick_s = 0.05
    room.daemon.start()
    thread, result = _run_in_thread(room.daemon)
    try:
        ready = notify_socket.wait_for("READY=1", 5)
        time.sleep(1.0)
        alive = notify_socket.pings(ready, ready + 1.0)
        assert len(alive) >= 5, f"expected pings every ~0.1 s while the loop turns, got {len(alive)}"

        # a student, the pedal, and a camera that blocks for 4 s inside the capture call
        room.camera.hang_next(4.0)
        room.reader.present(card(STUDENTS[0]))
        _wait_state(room, (State.READY,))
        pressed = time.monotonic()
        room.pedal.press()
        time.sleep(3.5)
        stalled = notify_socket.pings(pressed + 2 * timeout_s + 0.3, pressed + 3.5)
        assert stalled == [], f"pings went on while the camera call hung: {len(stalled)}"
        before = notify_socket.pings(pressed, pressed + 2 * timeout_s - 0.2)
        assert before, "the loop itself kept turning until the hang passed the limit"

        # the hung call returns (and fails): the loop is healthy again and says so
        notify_socket.wait_for("WATCHDOG=1", 5, after=pressed + 4.0)
        assert thread.is_alive() and not result
    finally:
        room.daemon.stop()
        thread.join(10)
        room.daemon.close()
    assert result == [0]
    notify_socket.wait_for("STOPPING=1", 2)


def test_capture_pings_stop_when_the_loop_stalls(kit_config, notify_socket):
    """A loop stuck in one step (here: blocked on a lock it will not get) sends nothing."""
    room = Classroom(kit_config)
    room.daemon.tick_s = 0.05
    room.daemon.start()
    gate = threading.Event()
    real_step = room.daemon.step

    def step(timeout):
        if room.daemon.queue.qsize() == 0 and stall.is_set():
            gate.wait(10)
        return real_step(timeout)

    stall = threading.Event()
    room.daemon.step = step
    thread, _ = _run_in_thread(room.daemon)
    try:
        ready = notify_socket.wait_for("READY=1", 5)
        time.sleep(0.5)
        assert notify_socket.pings(ready, ready + 0.5)
        stall.set()
        stalled_at = time.monotonic()
        time.sleep(1.5)
        assert notify_socket.pings(stalled_at + 0.3, stalled_at + 1.5) == []
        stall.clear()
        gate.set()
        notify_socket.wait_for("WATCHDOG=1", 3, after=stalled_at + 1.5)
    finally:
        gate.set()
        room.daemon.stop()
        thread.join(10)
        room.daemon.close()


# ---- the real command, as systemd starts it


def _sealing_toml() -> str:
    """A [sealing] table with a fresh centre key, when this build seals bundles (it then refuses to run without)."""
    try:
        from nacl.public import PrivateKey

        from appliance.bundle import CentreKey, key_id_of
    except ImportError:
        return ""
    public = bytes(PrivateKey.generate().public_key)
    return f'\n[sealing]\npublic_keys = ["{CentreKey(key_id_of(public), public)}"]\n'


def _kit_toml(path: Path, data_dir: Path, extra: str = "") -> Path:
    path.write_text(f'kit_id = "kit-notify"\ndata_dir = "{data_dir}"\n\n[qc]\nenabled = false\n'
                    f'{_sealing_toml()}{extra}')
    return path


def _env(sock: NotifySocket, config: Path, watchdog_usec: int = 400000) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(NOTIFY_SOCKET=sock.address, WATCHDOG_USEC=str(watchdog_usec), CAPTUREKIT_CONFIG=str(config),
               MPLBACKEND="Agg")
    return env


def _stop(proc: subprocess.Popen, timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


def test_capturekit_run_under_notify_socket(tmp_path):
    sock = NotifySocket(str(tmp_path / "notify"))
    data = tmp_path / "data"
    data.mkdir()
    config = _kit_toml(tmp_path / "kit.toml", data)
    proc = subprocess.Popen([str(CAPTUREKIT), "run"], env=_env(sock, config), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        ready = sock.wait_for("READY=1", 60, proc=proc)
        time.sleep(2.0)
        assert len(sock.pings(ready, ready + 2.0)) >= 3  # WatchdogSec 0.4 s: a ping every >= 0.2 s
        assert (data / "control.sock").is_socket()
    finally:
        rc = _stop(proc)
        output = proc.stdout.read() if proc.stdout else ""
        sock.close()
    assert rc == 0, output
    assert any(m == "STOPPING=1" for _, m in sock.messages), output


# ---- the sync daemon and the centre: written against their commands, skipped until they exist


class StalledCentre:
    """A 'centre' on loopback that accepts connections, reads what it is sent and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = threading.Event()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self.server.settimeout(0.2)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            self.accepted.set()
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._stop.is_set() and conn.recv(65536):
                pass

    def close(self) -> None:
        self._stop.set()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()
        self.server.close()


@pytest.mark.skipif(not _has_command("sync"), reason="sync daemon not built yet (no `capturekit sync`)")
def test_sync_pings_stop_while_an_upload_stalls(tmp_path):
    data = tmp_path / "data"
    token = tmp_path / "kit.token"
    token.write_text("test-token\n")
    centre = StalledCentre()
    config = _kit_toml(tmp_path / "kit.toml", data,
                       f'\n[sync]\ncentre_url = "http://127.0.0.1:{centre.port}"\ntoken_file = "{token}"\n')
    # a few stored captures in the outbox for sync to upload
    sim = subprocess.run([str(CAPTUREKIT), "simulate", "-n", "3", "--size", "640x480", "--qc", "sim",
                          "--readers", "sim", "--data-dir", str(data)], env={**os.environ, "CAPTUREKIT_CONFIG":
                         str(config)}, capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    sock = NotifySocket(str(tmp_path / "notify"))
    proc = subprocess.Popen([str(CAPTUREKIT), "sync"], env=_env(sock, config, watchdog_usec=2_000_000),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sock.wait_for("READY=1", 60, proc=proc)
        deadline = time.monotonic() + 60
        while not centre.accepted.wait(0.2):
            if proc.poll() is not None:
                raise AssertionError(f"sync exited with {proc.returncode} before it reached the centre:\n"
                                     f"{proc.stdout.read() if proc.stdout else ''}")
            assert time.monotonic() < deadline, "sync never connected to the centre"
        connected = time.monotonic()
        assert proc.poll() is None
        # WatchdogSec=2 s: a loop alive pings every >= 1 s; stuck on the silent socket it must go quiet
        time.sleep(8)
        last = max(sock.pings(0, connected + 8), default=0.0)
        assert last < connected + 8 - 4, "sync kept pinging while its upload was stalled on a silent centre"
        assert proc.poll() is None, "sync must wait on the socket (its inactivity timeout), not die"
    finally:
        centre.close()  # the stalled connections drop: sync sees the error and can stop promptly
        _stop(proc, timeout=60)
        sock.close()


@pytest.mark.skipif(not _has_command("centre", "serve"), reason="centre not built yet (no `capturekit centre serve`)")
def test_centre_serve_under_notify_socket(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    config = tmp_path / "centre.toml"
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    config.write_text(f'data_dir = "{tmp_path / "centre"}"\nlisten_host = "127.0.0.1"\nlisten_port = {port}\n'
                      f'keys_dir = "{keys}"\n')
    subprocess.run([str(CAPTUREKIT), "centre", "keygen", "--out", str(keys)], check=True, timeout=60)
    sock = NotifySocket(str(tmp_path / "notify"))
    env = _env(sock, tmp_path / "kit.toml", watchdog_usec=2_000_000)  # its loop ticks once a second
    env["CAPTUREKIT_CENTRE_CONFIG"] = str(config)
    proc = subprocess.Popen([str(CAPTUREKIT), "centre", "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        ready = sock.wait_for("READY=1", 60, proc=proc)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # READY means listening
        time.sleep(4.0)
        assert len(sock.pings(ready, ready + 4.0)) >= 3  # WatchdogSec 2 s: a ping every >= 1 s
    finally:
        rc = _stop(proc)
        sock.close()
    # uvicorn re-raises SIGTERM after its graceful shutdown; systemd counts SIGTERM as a clean stop
    assert rc in (0, -signal.SIGTERM), rc
    assert any(m == "STOPPING=1" for _, m in sock.messages)
