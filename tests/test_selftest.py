"""``capturekit selftest`` against the simulated twins: mock GPIO pins, the simulated camera and card reader,
and a real HTTP "centre" on loopback (the right kit, a refused token, a captive portal, a skewed clock)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gpiozero import LED

from appliance import config as config_mod
from appliance.daemon import Devices
from appliance.devices.camera import SimCamera
from appliance.devices.gpio import pin_factory
from appliance.readers.sim import SimReader
from appliance.selftest import (
    CENTRE_HEARTBEAT_PATH,
    CENTRE_KEYS_PATH,
    kernel_clock_synced,
    parse_public_key,
    selftest,
)

try:
    from appliance.bundle import key_id_of
except ImportError:  # a build without sealed bundles
    def key_id_of(public: bytes) -> str:
        return "centre-2025a"

KEY_ID = key_id_of(bytes(range(32)))
KEY = f"{KEY_ID}:" + base64.b64encode(bytes(range(32))).decode()
TOKEN = "kit-token-0123456789"


def with_key(cfg, key: str):
    """``cfg`` sealing to ``key`` (when this build has a [sealing] table)."""
    if getattr(cfg, "sealing", None) is None:
        return cfg
    return dataclasses.replace(cfg, sealing=dataclasses.replace(cfg.sealing, public_keys=(key,)))


def twins(camera: SimCamera | None = None):
    cam = camera or SimCamera(640, 480)
    return Devices(cam, [SimReader("sim-reader")], pin_factory("mock"))


def press_soon(devices, pin: int = 17, after: float = 0.3) -> threading.Thread:
    def press():
        time.sleep(after)
        p = devices.pin_factory.pin(pin)
        p.drive_low()
        p.drive_high()

    t = threading.Thread(target=press, daemon=True)
    t.start()
    return t


class Centre:
    """A loopback stand-in for the centre's kit API (centre/kit_api.py): POST heartbeat and GET keys, with the
    bearer token checked; ``owner`` is the kit the token belongs to; ``mode="portal"`` answers HTML to all."""

    def __init__(self, owner: str, mode: str = "ok", skew_s: float = 0.0, keys: tuple[str, ...] = (KEY,)) -> None:
        centre = self
        self.requests: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _authorised(self) -> bool:
                centre.requests.append({"method": self.command, "path": self.path,
                                        "auth": self.headers.get("Authorization", "")})
                if mode == "portal":  # a captive portal: 200 and HTML to everything
                    self._send(200, b"<html><body>Please log in</body></html>", "text/html")
                    return False
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, b'{"error": "bad_token", "detail": "unknown or revoked kit token"}')
                    return False
                return True

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self._authorised():
                    return
                if self.path != CENTRE_HEARTBEAT_PATH:
                    self._send(404, b'{"error": "not_found"}')
                elif body.get("kit_id") != owner:
                    self._send(403, b'{"error": "not_your_kit"}')
                else:
                    now = dt.datetime.fromtimestamp(time.time() + skew_s, dt.UTC)
                    self._send(200, json.dumps({"server_time": now.isoformat(timespec="milliseconds"),
                                                "received": True}).encode())

            def do_GET(self):
                if not self._authorised():
                    return
                if self.path != CENTRE_KEYS_PATH:
                    self._send(404, b'{"error": "not_found"}')
                else:
                    self._send(200, json.dumps({"sealing_public_keys": list(keys), "makeup_public_keys": []}).encode())

            def _send(self, code, body, ctype="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token(tmp_path):
    path = tmp_path / "kit.token"
    path.write_text(TOKEN + "\n")
    return str(path)


def run(cfg, **kw):
    lines: list[str] = []
    kw.setdefault("clock_state", lambda: (True, "kernel clock synchronised"))
    kw.setdefault("pause", 0.0)
    ok = selftest(cfg, out=lines.append, **kw)
    return ok, lines


def line(lines: list[str], name: str) -> str:
    found = [x for x in lines if x[6:].startswith(name + ":")]
    assert len(found) == 1, f"{name}: {found} in\n" + "\n".join(lines)
    return found[0]


def test_every_check_passes_on_a_healthy_simulated_kit(kit_config, token):
    cfg = with_key(kit_config, KEY)
    centre = Centre(kit_config.kit_id)
    devices = twins()
    press_soon(devices)
    try:
        ok, lines = run(cfg, wait_trigger_s=5, devices=devices, centre_url=centre.url, token_file=token,
                        sealing_keys=(KEY,))
    finally:
        centre.close()
    assert ok, "\n".join(lines)
    names = ["storage", "roster", "centre public key", "GPIO pins claimed", "status LED, buzzer, light panel",
             "light panel ramp", "camera", "trigger", "reader sim-reader", "centre", "clock"]
    if getattr(cfg, "sealing", None) is not None:
        names.append("centre holds the kit's key")
    for name in names:
        assert line(lines, name).startswith("PASS"), name
    assert "640x480 JPEG" in line(lines, "camera")
    assert f"key {KEY_ID}" in line(lines, "centre public key")
    assert "s from the centre" in line(lines, "clock")
    assert centre.requests[0] == {"method": "POST", "path": CENTRE_HEARTBEAT_PATH, "auth": f"Bearer {TOKEN}"}
    assert not [x for x in lines if "fix:" in x], "a PASS line carries no fix"


def test_missing_sync_and_sealing_config_is_not_passed(kit_config):
    _, lines = run(kit_config, wait_trigger_s=0, devices=twins())
    assert line(lines, "centre").startswith("SKIP") and "no [sync]" in line(lines, "centre")
    sealing = getattr(kit_config, "sealing", None)
    if sealing is None:
        assert line(lines, "centre public key").startswith("SKIP")
    elif sealing.public_keys:  # the kit's own configuration names the key
        assert line(lines, "centre public key").startswith("PASS")
    if sealing is not None:  # the table exists but names no key: bundles could not be sealed
        cfg = dataclasses.replace(kit_config, sealing=dataclasses.replace(sealing, public_keys=()))
        _, lines = run(cfg, wait_trigger_s=0, devices=twins())
        assert line(lines, "centre public key").startswith("FAIL")
    assert line(lines, "trigger").startswith("SKIP")
    assert "offset to the centre unknown" in line(lines, "clock")


@pytest.mark.parametrize("keys, why", [((), "none configured"), (("no-colon",), "<key_id>:<base64>"),
                                       (("k1:" + base64.b64encode(b"short").decode(),), "5 bytes"),
                                       (("k1:%%%",), "not base64"),
                                       ((KEY.replace(KEY_ID, "0" * 16 if KEY_ID != "0" * 16 else "1" * 16),),
                                        "does not belong")])
def test_a_missing_or_malformed_centre_key_fails_with_the_fix(kit_config, keys, why):
    ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(), sealing_keys=keys)
    assert not ok
    text = line(lines, "centre public key")
    assert text.startswith("FAIL") and why in text and "fix: put the centre's public key" in text


def test_the_centre_refusing_the_token(kit_config, tmp_path):
    centre = Centre(kit_config.kit_id)
    bad = tmp_path / "other.token"
    bad.write_text("someone-elses-token")
    try:
        ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(), centre_url=centre.url, token_file=str(bad))
    finally:
        centre.close()
    assert not ok
    assert "refused this kit's token (401)" in line(lines, "centre") and "add-kit" in line(lines, "centre")


def test_a_captive_portal_is_not_the_centre(kit_config, token):
    portal = Centre(kit_config.kit_id, mode="portal")
    try:
        ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(), centre_url=portal.url, token_file=token)
    finally:
        portal.close()
    assert not ok
    assert line(lines, "centre").startswith("FAIL") and "captive portal" in line(lines, "centre")


def test_another_kits_token(kit_config, token):
    centre = Centre("kit-other")
    try:
        ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(), centre_url=centre.url, token_file=token)
    finally:
        centre.close()
    assert not ok and "belongs to another kit, not kit-test (403)" in line(lines, "centre")


@pytest.mark.skipif(not hasattr(config_mod.Config(), "sealing"), reason="this build has no [sealing]")
def test_a_kit_sealing_to_a_key_the_centre_does_not_hold(kit_config, token):
    other = f"{key_id_of(bytes(32))}:{base64.b64encode(bytes(32)).decode()}"
    cfg = with_key(kit_config, other)
    centre = Centre(kit_config.kit_id, keys=(KEY,))
    try:
        ok, lines = run(cfg, wait_trigger_s=0, devices=twins(), centre_url=centre.url, token_file=token)
    finally:
        centre.close()
    assert not ok and line(lines, "centre").startswith("PASS")
    held = line(lines, "centre holds the kit's key")
    assert held.startswith("FAIL") and "is not among the centre's 1 sealing key(s)" in held


def test_an_unreachable_centre_and_a_missing_token(kit_config, tmp_path, token):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(), centre_url=f"http://127.0.0.1:{port}",
                    token_file=token)
    assert not ok and "unreachable" in line(lines, "centre") and "fix: check the network" in line(lines, "centre")
    ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(), centre_url=f"http://127.0.0.1:{port}",
                    token_file=str(tmp_path / "absent.token"))
    assert not ok and "token file" in line(lines, "centre")


def test_clock_off_the_centre_fails_even_when_ntp_says_synchronised(kit_config, token):
    centre = Centre(kit_config.kit_id, skew_s=30)
    try:
        ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(), centre_url=centre.url, token_file=token)
    finally:
        centre.close()
    assert not ok
    clock = line(lines, "clock")
    offset = float(re.search(r"([+-]\d+\.\d) s from the centre", clock).group(1))
    assert clock.startswith("FAIL") and 28.5 <= offset <= 31 and "chronyc" in clock  # Date: 1 s resolution
    assert line(lines, "centre").startswith("PASS")


def test_unsynchronised_clock_fails(kit_config):
    ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(),
                    clock_state=lambda: (False, "kernel clock not synchronised"))
    assert not ok and line(lines, "clock").startswith("FAIL")


def test_the_real_kernel_clock_state_reads():
    synced, detail = kernel_clock_synced()
    assert synced in (True, False, None) and "clock" in detail


def test_pins_held_by_someone_else(kit_config):
    devices = twins()
    holder = LED(kit_config.light.pin, pin_factory=devices.pin_factory)  # e.g. the daemon still running
    try:
        ok, lines = run(kit_config, wait_trigger_s=0, devices=devices)
    finally:
        holder.close()
    assert not ok
    text = line(lines, "GPIO pins claimed")
    assert text.startswith("FAIL") and "systemctl stop capturekit" in text
    assert not [x for x in lines if x[6:].startswith("camera:")], "no device check runs on pins it could not claim"


def test_a_trigger_nobody_presses(kit_config):
    ok, lines = run(kit_config, wait_trigger_s=0.3, devices=twins())
    assert not ok and line(lines, "trigger").startswith("FAIL") and "GPIO 17 to GND" in line(lines, "trigger")


def test_a_dead_camera(kit_config):
    cam = SimCamera(640, 480)
    cam.fail_next("simulated: frontend timeout")
    ok, lines = run(kit_config, wait_trigger_s=0, devices=twins(cam))
    assert not ok
    assert "frontend timeout" in line(lines, "camera") and "imx477" in line(lines, "camera")


def test_light_panel_ramp_reads_levels_back(kit_config):
    devices = twins()
    _, lines = run(kit_config, wait_trigger_s=0, devices=devices)
    assert line(lines, "light panel ramp").startswith("PASS")


def test_parse_public_key():
    assert parse_public_key(KEY) == (KEY_ID, bytes(range(32)))
    with pytest.raises(ValueError):
        parse_public_key(":" + KEY.split(":")[1])


def test_no_roster_fails(kit_config, tmp_path):
    cfg = dataclasses.replace(kit_config, roster=dataclasses.replace(kit_config.roster,
                                                                     path=str(tmp_path / "none.sqlite")))
    ok, lines = run(cfg, wait_trigger_s=0, devices=twins())
    assert not ok and "fix: capturekit roster load" in line(lines, "roster")


def _has_centre_serve() -> bool:
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("capturekit")
    try:
        return subprocess.run([str(exe), "centre", "serve", "--help"], capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _has_centre_serve(), reason="centre not built yet (no `capturekit centre serve`)")
def test_selftest_against_the_real_centre(kit_config, tmp_path):
    """`capturekit centre serve` on loopback, this kit added with `centre add-kit`: heartbeat, key, clock."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("capturekit"))
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    keys = tmp_path / "keys"
    conf = tmp_path / "centre.toml"
    conf.write_text(f'data_dir = "{tmp_path / "centre"}"\nlisten_host = "127.0.0.1"\nlisten_port = {port}\n'
                    f'keys_dir = "{keys}"\n')
    env = {**os.environ, "CAPTUREKIT_CENTRE_CONFIG": str(conf)}
    subprocess.run([exe, "centre", "keygen", "--out", str(keys)], env=env, check=True, capture_output=True, timeout=60)
    added = subprocess.run([exe, "centre", "add-kit", kit_config.kit_id], env=env, check=True, capture_output=True,
                           text=True, timeout=60).stdout.splitlines()
    kit_token = added[next(i for i, x in enumerate(added) if "token" in x.lower()) + 1].strip()
    (tmp_path / "kit.token").write_text(kit_token + "\n")
    public = next(keys.glob("*.pub")).read_text().strip()
    server = subprocess.Popen([exe, "centre", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if \
                    server.stdout else ""
                time.sleep(0.2)
        _ok, lines = run(with_key(kit_config, public), wait_trigger_s=0, devices=twins(),
                        centre_url=f"http://127.0.0.1:{port}", token_file=str(tmp_path / "kit.token"))
        wrong = tmp_path / "wrong.token"
        wrong.write_text("not-a-token\n")
        _, refused = run(kit_config, wait_trigger_s=0, devices=twins(), centre_url=f"http://127.0.0.1:{port}",
                         token_file=str(wrong))
    finally:
        server.terminate()
        server.wait(20)
    assert line(lines, "centre").startswith("PASS"), "\n".join(lines)
    if getattr(kit_config, "sealing", None) is not None:
        assert line(lines, "centre holds the kit's key").startswith("PASS")
    offset = float(re.search(r"([+-]\d+\.\d) s from the centre", line(lines, "clock")).group(1))
    assert abs(offset) < 1.0  # same machine, same clock
    assert line(refused, "centre").startswith("FAIL") and "(401)" in line(refused, "centre")
