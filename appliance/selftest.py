"""``capturekit selftest``: bring-up of a kit, one check at a time, one PASS/FAIL/SKIP line each.

Meant for the bench and for the first minutes in a classroom (``hardware.md``, "Bring-up checklist"):
storage and free space, the journal's pragmas, the roster, the centre's sealing key, every GPIO pin
claimed, the LED walking through every state, every tone, the light panel ramping, a timed
full-resolution shot, the pedal pressed within the wait, every reader started and answering, the centre
reached with this kit's token, and the clock (synchronised, and its offset to the centre). A FAIL line
says how to fix it. The daemon must not be running (it owns the camera and the GPIO pins).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import datetime as dt
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Config
from .devices.gpio import Beeper, LightPanel, StatusLight, Trigger
from .journal import connect
from .roster import Roster
from .session import Led, Light, Tone

# The centre's kit API (centre/kit_api.py): a heartbeat names the kit (403 for another kit's token) and
# answers with server_time; the key list holds the sealing keys the centre can open.
CENTRE_HEARTBEAT_PATH = "/api/v1/heartbeat"
CENTRE_KEYS_PATH = "/api/v1/keys"
CENTRE_TIMEOUT_S = 10.0
MAX_CLOCK_OFFSET_S = 2.0  # the centre's Date header has 1 s resolution
MIN_FREE_MB = 1024
STOP_DAEMON = "stop the daemon first: sudo systemctl stop capturekit"

Report = Callable[..., None]


def selftest(cfg: Config, wait_trigger_s: float = 10.0, out: Callable[[str], None] = print,
             pause: float = 0.3, *, devices: Any = None, centre_url: str | None = None,
             token_file: str | None = None, sealing_keys: tuple[str, ...] | None = None,
             clock_state: Callable[[], tuple[bool | None, str]] | None = None) -> bool:
    """Run every check; True when none failed. Keyword arguments stand in for config tables this build
    may not have yet (``[sync]``, ``[sealing]``) and for the devices (tests pass simulated twins)."""
    results: list[bool] = []

    def report(name: str, ok: bool | None, detail: str, fix: str = "") -> None:
        word = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        out(f"{word}  {name}: {detail}" + (f" — fix: {fix}" if fix and ok is not True else ""))
        if ok is not None:
            results.append(ok)

    check_storage(cfg, report)
    check_roster(cfg, report)
    check_sealing_key(cfg, report, sealing_keys)
    check_devices(cfg, report, devices, wait_trigger_s, pause, out)
    offset = check_centre(cfg, report, centre_url, token_file)
    check_clock(report, offset, clock_state or kernel_clock_synced)
    return all(results)


# ---- storage, journal, roster


def check_storage(cfg: Config, report: Report) -> None:
    data = cfg.data_path
    try:
        data.mkdir(parents=True, exist_ok=True)
        probe = data / ".selftest"
        probe.write_bytes(b"x")
        fd = os.open(probe, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
        free = shutil.disk_usage(data).free // 2**20
        report("storage", free > MIN_FREE_MB, f"{data} writable, {free} MB free (want > {MIN_FREE_MB} MB)",
               "make room: sync and purge confirmed bundles (capturekit status), or a bigger card / USB SSD")
    except OSError as exc:
        report("storage", False, f"{data}: {exc}",
               "is the data partition mounted and owned by capturekit? (ansible roles/kit_app creates it)")
    journal = data / "journal.sqlite"
    if journal.exists():
        db = connect(journal)
        mode, sync = db.execute("PRAGMA journal_mode").fetchone()[0], db.execute("PRAGMA synchronous").fetchone()[0]
        db.conn.close()
        report("journal", mode == "wal" and sync == 2, f"journal_mode={mode} synchronous={sync} (want wal, 2=FULL)",
               "a journal not written by capturekit? move it aside and let the daemon create one")


def check_roster(cfg: Config, report: Report) -> None:
    try:
        rows = Roster(cfg.roster_path).count()
    except Exception as exc:  # a damaged or foreign file: say so, keep checking the rest
        report("roster", False, f"{cfg.roster_path}: {exc}", "capturekit roster load ROSTER.csv")
        return
    report("roster", rows > 0, f"{rows} students in {cfg.roster_path}", "capturekit roster load ROSTER.csv")


# ---- the centre's public sealing key


def parse_public_key(entry: str) -> tuple[str, bytes]:
    """``"<key_id>:<base64 of 32 bytes>"`` -> (key id, key); ValueError if it is not that."""
    key_id, sep, b64 = entry.partition(":")
    if not sep or not key_id.strip():
        raise ValueError("expected <key_id>:<base64>")
    try:
        key = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not base64") from None
    if len(key) != 32:
        raise ValueError(f"the key is {len(key)} bytes, a Curve25519 public key is 32")
    try:
        from .bundle import key_id_of
    except ImportError:  # a build without sealed bundles: the id cannot be checked
        return key_id.strip(), key
    if key_id.strip() != key_id_of(key):
        raise ValueError(f"key id {key_id.strip()!r} does not belong to this key (expected {key_id_of(key)})")
    return key_id.strip(), key


def check_sealing_key(cfg: Config, report: Report, override: tuple[str, ...] | None) -> None:
    fix = "put the centre's public key (capturekit centre keygen: <key_id>.pub) in [sealing] public_keys " \
          "(ansible: vault_centre_sealing_public_key)"
    keys = override
    if keys is None:
        sealing = getattr(cfg, "sealing", None)
        if sealing is None:
            report("centre public key", None, "this build has no [sealing] configuration yet")
            return
        keys = tuple(getattr(sealing, "public_keys", ()))
    if not keys:
        report("centre public key", False, "none configured: bundles cannot be sealed", fix)
        return
    try:
        key_id, _ = parse_public_key(keys[0])
    except ValueError as exc:
        report("centre public key", False, f"[sealing] public_keys[0]: {exc}", fix)
        return
    report("centre public key", True, f"key {key_id} (first of {len(keys)}) seals new bundles")


# ---- GPIO, LED, buzzer, light panel, camera, trigger, readers


def check_devices(cfg: Config, report: Report, devices: Any, wait_trigger_s: float, pause: float,
                  out: Callable[[str], None]) -> None:
    if devices is None:
        from .factory import build_devices

        try:
            devices = build_devices(cfg)
        except Exception as exc:  # lgpio cannot open the chip, a reader library missing, …
            report("devices", False, f"cannot build the configured devices: {exc}",
                   f"{STOP_DAEMON}; check gpio.pin_factory and [[readers]] (capturekit config)")
            return
    f = devices.pin_factory
    claimed: list[Any] = []
    pressed = threading.Event()
    try:
        try:
            led = StatusLight(cfg.status_led, f)
            claimed.append(led)
            beeper = Beeper(cfg.buzzer, f)
            claimed.append(beeper)
            light = LightPanel(cfg.light, f)
            claimed.append(light)
            trig = Trigger(cfg.trigger, f, pressed.set)
            claimed.append(trig)
        except Exception as exc:
            report("GPIO pins claimed", False, f"{type(exc).__name__}: {exc}",
                   f"{STOP_DAEMON}; no other program may hold these pins (see hardware.md, GPIO map)")
            return
        s = cfg.status_led
        report("GPIO pins claimed", True, f"trigger BCM {cfg.trigger.pin}, LED {s.red}/{s.green}/{s.blue}, "
               f"buzzer {cfg.buzzer.pin}, light {cfg.light.pin}")
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
        check_light_ramp(light, report, pause)
        check_camera(devices.camera, light, report)
        if wait_trigger_s > 0:
            out(f"      press the pedal within {wait_trigger_s:g} s …")
            report("trigger", pressed.wait(wait_trigger_s), f"BCM {cfg.trigger.pin}",
                   "check the pedal's lead and plug (GPIO 17 to GND); trigger.pull_up for the switch type")
        else:
            report("trigger", None, "not waited for (--wait-trigger 0)")
        check_readers(devices.readers, report)
    finally:
        for dev in claimed:
            dev.close()
        if hasattr(f, "close"):
            f.close()


def check_light_ramp(light: LightPanel, report: Report, pause: float) -> None:
    """Ramp the panel 0 → 100 % and back to idle, reading each level back from the pin."""
    steps = [i / 10 for i in range(11)]
    wrong = []
    for v in steps:
        light.pwm.value = v
        if abs(light.pwm.value - v) > 0.01:
            wrong.append(f"{v:.1f}->{light.pwm.value:.2f}")
        time.sleep(pause / 3)
    light.set(Light.IDLE)
    report("light panel ramp", not wrong, "0 → 100 % in 11 steps, read back from the pin" if not wrong else
           "levels not taken: " + ", ".join(wrong), "check light.pin and the driver's DIM input (hardware.md)")


def check_camera(cam: Any, light: LightPanel, report: Report) -> None:
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
        report("camera", False, str(exc) or type(exc).__name__,
               f"{STOP_DAEMON}; reseat the ribbon (contacts), check dtoverlay=imx477 in /boot/firmware/config.txt, "
               "then `rpicam-hello --list-cameras`")
    finally:
        cam.close()


def check_readers(readers: list[Any], report: Report) -> None:
    for reader in readers:
        problems: list[str] = []

        def on_problem(code: str, detail: str, problems: list[str] = problems) -> None:
            problems.append(f"{code}: {detail}")

        name = f"reader {getattr(reader, 'name', reader)}"
        try:
            reader.start(lambda i: None, on_problem)
            time.sleep(1.0)
            reader.stop()
            report(name, not problems, "; ".join(problems) or "started, no problem reported",
                   "plug the reader in; PC/SC: systemctl status pcscd.socket; serial: ls -l /dev/idcard")
        except Exception as exc:
            report(name, False, str(exc), "plug the reader in and check its [[readers]] options")


# ---- the centre and the clock


def _sync_settings(cfg: Config, centre_url: str | None, token_file: str | None) -> tuple[str, str, str, str]:
    """(centre_url, token_file, inline token, CA file) from the arguments, else ``[sync]``."""
    sync = getattr(cfg, "sync", None)
    return (centre_url if centre_url is not None else getattr(sync, "centre_url", "") or "",
            token_file if token_file is not None else getattr(sync, "token_file", "") or "",
            "" if token_file is not None else getattr(sync, "token", "") or "",
            getattr(sync, "ca_file", "") or "")


def _call(url: str, token: str, ca_file: str, body: dict[str, Any] | None = None) -> tuple[int, Any, str]:
    """One request to the centre: (status, parsed JSON or None, content type); HTTPError for 4xx/5xx."""
    import ssl

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                              **({"Content-Type": "application/json"} if data else {})})
    context = ssl.create_default_context(cafile=ca_file or None) if url.startswith("https:") else None
    with urllib.request.urlopen(request, timeout=CENTRE_TIMEOUT_S, context=context) as resp:
        raw, ctype = resp.read(1 << 20), resp.headers.get("Content-Type", "")
    try:
        return resp.status, json.loads(raw) if "json" in ctype else None, ctype
    except ValueError:
        return resp.status, None, ctype


def check_centre(cfg: Config, report: Report, centre_url: str | None, token_file: str | None) -> float | None:
    """A heartbeat to the centre with this kit's token (the centre refuses another kit's id with 403), then
    its key list compared with the kit's sealing key. Returns the clock offset (centre - kit, s) or None."""
    url, token_path, token, ca_file = _sync_settings(cfg, centre_url, token_file)
    if not url:
        why = "no [sync] centre_url configured" if getattr(cfg, "sync", None) is not None or centre_url is not None \
            else "this build has no [sync] configuration yet"
        report("centre", None, why)
        return None
    if not token:
        try:
            token = Path(token_path).read_text().strip() if token_path else ""
        except OSError as exc:
            report("centre", False, f"token file {token_path}: {exc.strerror}",
                   "ansible puts the kit's token (vault) there, 0640 root:capturekit; run selftest as the daemon's "
                   "user (the crew's `capturekit` does)")
            return None
    if not token:
        report("centre", False, f"no token in {token_path or '[sync] token_file'}",
               "capturekit centre add-kit NAME on the centre prints it once; store it in the vault")
        return None
    base = url.rstrip("/")
    beat = {"kit_id": cfg.kit_id, "kit_time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
    t0 = time.time()
    try:
        status, answer, ctype = _call(base + CENTRE_HEARTBEAT_PATH, token, ca_file, beat)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            report("centre", False, f"{url}: the centre refused this kit's token (401)",
                   "the token is revoked or unknown: capturekit centre add-kit NAME (or rotate-token), update the "
                   "vault, rerun ansible")
        elif exc.code == 403:
            report("centre", False, f"{url}: this token belongs to another kit, not {cfg.kit_id} (403)",
                   "each kit has its own token: check vault_kit_tokens for this kit's name")
        else:
            report("centre", False, f"{url}: HTTP {exc.code} {exc.reason}",
                   "check the centre (journalctl -u capturekit-centre) and [sync] centre_url")
        return None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        report("centre", False, f"{url}: unreachable ({reason})",
               "check the network (ip addr; the school's Wi-Fi login?), DNS and [sync] centre_url")
        return None
    t1 = time.time()
    server_time = answer.get("server_time") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(server_time, str):
        report("centre", False, f"{url}: answered HTTP {status} ({ctype or 'no type'}) but not as the centre",
               "a captive portal or proxy in the way (log in to the network), or the wrong centre_url")
        return None
    try:
        offset = dt.datetime.fromisoformat(server_time).timestamp() - (t0 + t1) / 2
    except ValueError:
        offset = None
    report("centre", True, f"{url} took this kit's heartbeat ({cfg.kit_id}) in {(t1 - t0) * 1000:.0f} ms")
    _compare_keys(cfg, report, base, token, ca_file)
    return offset


def _compare_keys(cfg: Config, report: Report, base: str, token: str, ca_file: str) -> None:
    mine = tuple(getattr(getattr(cfg, "sealing", None), "public_keys", ()) or ())
    if not mine:
        return
    try:
        _, answer, _ = _call(base + CENTRE_KEYS_PATH, token, ca_file)
    except (urllib.error.URLError, OSError) as exc:
        report("centre holds the kit's key", False, f"GET {CENTRE_KEYS_PATH}: {exc}", "check the centre")
        return
    theirs = answer.get("sealing_public_keys") if isinstance(answer, dict) else None
    if not isinstance(theirs, list):
        report("centre holds the kit's key", False, "the centre's answer has no sealing_public_keys",
               "a proxy in the way, or an old centre")
        return
    key_id = mine[0].partition(":")[0]
    ok = mine[0].strip() in [str(k).strip() for k in theirs]
    report("centre holds the kit's key", ok, f"key {key_id} {'is' if ok else 'is not'} among the centre's "
           f"{len(theirs)} sealing key(s)", "the kit seals to a key the centre cannot open: put the centre's "
           "current <key_id>.pub in [sealing] public_keys (vault) and rerun ansible")


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_padding", ctypes.c_int * 11)]


STA_UNSYNC = 0x0040
TIME_ERROR = 5


def kernel_clock_synced() -> tuple[bool | None, str]:
    """What ``timedatectl``'s "System clock synchronized" reads: the kernel's NTP state (adjtimex), as
    set by chrony or systemd-timesyncd. (None, why) where it cannot be read."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError) as exc:
        return None, f"cannot read the kernel clock state: {exc}"
    if state < 0:
        return None, f"adjtimex failed: {os.strerror(ctypes.get_errno())}"
    synced = state != TIME_ERROR and not tx.status & STA_UNSYNC
    return synced, f"kernel clock {'synchronised' if synced else 'not synchronised'} " \
                   f"(max error {tx.maxerror / 1000:.0f} ms)"


def check_clock(report: Report, centre_offset: float | None,
                clock_state: Callable[[], tuple[bool | None, str]]) -> None:
    synced, detail = clock_state()
    fix = "shot times come from this clock: check chrony (chronyc tracking; chronyc sources) and the network"
    if centre_offset is not None:
        detail += f", {centre_offset:+.1f} s from the centre"
        if abs(centre_offset) > MAX_CLOCK_OFFSET_S:
            report("clock", False, detail + f" (want within ±{MAX_CLOCK_OFFSET_S:g} s)", fix)
            return
    else:
        detail += ", offset to the centre unknown (centre not reached)"
    report("clock", synced, detail, fix)
