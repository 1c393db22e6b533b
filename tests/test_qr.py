"""QR identity sources: make-up code format and verification, classifier, keyboard-wedge decoder
and reader, camera decoding and debounce, the centre's issuing CLI.

Real libraries throughout: PyNaCl signs and verifies, segno renders, PIL composes scenes and writes
real JPEGs, zxing-cpp decodes, evdev supplies the InputEvent objects. The one stand-in is the
kernel input device for the reader thread (this kernel has no uinput, see the skipped test).
"""

from __future__ import annotations

import base64
import errno
import gzip
import io
import logging
import os
import queue
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import segno
from evdev import InputDevice, InputEvent, ecodes
from nacl.signing import SigningKey
from PIL import Image, ImageDraw, ImageFilter

from appliance import idnumber
from appliance.identity import Identity, Kind, Source
from appliance.makeup_qr import (
    PREFIX,
    MakeupPayload,
    MakeupQrError,
    MakeupVerifier,
    QrRejected,
    encode_text,
    key_id,
    pack_body,
    split_text,
)
from appliance.readers.qr import CameraQrReader, KeyDecoder, ScannerReader, classify_qr, decode_qr
from centre.makeup_qr import issue, public_key_b64

ROOT = Path(__file__).resolve().parents[1]
SCOPE = "90001"  # fictional school code
T0 = datetime(2025, 6, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=30)
DURING = T0 + timedelta(days=3)
ID_NUMBER = idnumber.make("11010520000101123")  # fictional, valid check character
# Opaque stand-in for a CHSI image-collection code: mixed case, base64 punctuation, a space.
COLLECTION_CODE = "Qm9vdDM=xK7+/fA9 zz" + "aB3dE5gH7jK9mN1pQ3sT5vX7zZ9" * 4 + "=="


def key(seed_byte: int) -> SigningKey:
    return SigningKey(bytes([seed_byte]) * 32)


CENTRE = key(1)
OTHER = key(2)
assert key_id(bytes(CENTRE.verify_key)) != key_id(bytes(OTHER.verify_key))


@pytest.fixture
def verifier() -> MakeupVerifier:
    return MakeupVerifier([public_key_b64(CENTRE)], [SCOPE])


def makeup(kind: Kind = Kind.ID_NUMBER, value: str = ID_NUMBER, *, signer: SigningKey = CENTRE,
           scope: str = SCOPE, issued: datetime = T0, expires: datetime = T1) -> str:
    return issue(signer, kind, value, scope, issued_at=issued, expires_at=expires,
                 code_id=bytes.fromhex("a1b2c3d4e5f6"))


def reason(text: str, verifier: MakeupVerifier | None, now: datetime = DURING) -> str:
    with pytest.raises(QrRejected) as info:
        classify_qr(text, verifier, now)
    return info.value.reason


# --- images -----------------------------------------------------------------------------------

def qr_image(text: str, scale: int = 6) -> Image.Image:
    buf = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def scene(size: tuple[int, int] = (2028, 1520), seed: int = 7) -> Image.Image:
    """A classroom-ish frame: lit wall gradient, blue backdrop, a head and shoulders, sensor noise."""
    w, h = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.8, 1.1, w)[None, :, None] * np.linspace(1.05, 0.85, h)[:, None, None]
    img = Image.fromarray(np.clip(np.array([170, 165, 150]) * ramp, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([w * 0.25, 0, w * 0.75, h * 0.9], fill=(70, 120, 190))  # backdrop
    draw.ellipse([w * 0.42, h * 0.2, w * 0.58, h * 0.5], fill=(214, 170, 140))  # head
    draw.rounded_rectangle([w * 0.3, h * 0.5, w * 0.7, h * 1.05], radius=int(w * 0.05), fill=(40, 40, 50))
    noisy = np.array(img.filter(ImageFilter.GaussianBlur(2)), dtype=np.int16) + rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def phone(code: Image.Image) -> Image.Image:
    """The code shown on a phone: white screen, black bezel, slightly off-white and soft."""
    pad = code.width // 8
    body = Image.new("RGB", (code.width + 2 * pad, int(code.height * 1.9)), (15, 15, 18))
    screen = Image.new("RGB", (code.width + pad, int(code.height * 1.75)), (236, 240, 244))
    screen.paste(code, (pad // 2, screen.height // 3))
    body.paste(screen, (pad // 2, int(code.height * 0.075)))
    return body.filter(ImageFilter.GaussianBlur(0.8))


def _perspective(w: int, h: int, skew: float) -> list[float]:
    """Coefficients mapping output to input for a mild keystone (top edge narrower)."""
    dst = [(w * skew, 0), (w * (1 - skew), 0), (w, h), (0, h)]
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return list(np.linalg.solve(np.array(rows, float), np.array(rhs, float)))


def place(frame: Image.Image, obj: Image.Image, at: tuple[int, int], angle: float,
          skew: float) -> Image.Image:
    obj = obj.convert("RGBA").transform(obj.size, Image.Transform.PERSPECTIVE,
                                        _perspective(*obj.size, skew), Image.Resampling.BICUBIC)
    obj = obj.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    out = frame.copy()
    out.paste(obj, at, obj)
    return out


def jpeg(img: Image.Image, path: Path, quality: int = 80) -> Image.Image:
    img.save(path, "JPEG", quality=quality)
    return Image.open(path)


def frame_with(text: str, size: tuple[int, int] = (640, 480), scale: int = 3) -> np.ndarray:
    """A small preview frame (BGR numpy, as picamera2 gives) holding ``text`` as a QR code."""
    img = place(scene(size, seed=3), qr_image(text, scale), (size[0] // 3, size[1] // 5), 4, 0.0)
    return np.ascontiguousarray(np.array(img)[:, :, ::-1])


# --- make-up code: through a camera photo ----------------------------------------------------

@pytest.mark.parametrize("how", ["phone", "printout"])
def test_makeup_code_in_a_jpeg_photo_verifies(how: str, tmp_path: Path, verifier: MakeupVerifier) -> None:
    text = makeup()
    code = qr_image(text, scale=6)
    if how == "phone":
        shot = place(scene(), phone(code), (1150, 520), angle=-9, skew=0.06)
    else:
        paper = Image.new("RGB", (code.width + 120, code.height + 200), (245, 243, 236))
        paper.paste(code, (60, 60))
        shot = place(scene(seed=11), paper.filter(ImageFilter.GaussianBlur(1.2)), (300, 700), 6, 0.1)
    photo = jpeg(shot, tmp_path / f"{how}.jpg", quality=80)
    assert photo.size == (2028, 1520) and photo.format == "JPEG"
    [scanned] = decode_qr(photo)
    assert scanned == text
    identity = classify_qr(scanned, verifier, DURING, source=Source.QR_CAMERA, reader="qr_camera")
    assert identity == Identity(Kind.ID_NUMBER, ID_NUMBER, Source.MAKEUP_QR, "qr_camera")


def test_collection_code_round_trips_byte_for_byte_through_a_jpeg(tmp_path: Path) -> None:
    shot = place(scene(), phone(qr_image(COLLECTION_CODE, 5)), (900, 400), angle=4, skew=0.03)
    [scanned] = decode_qr(jpeg(shot, tmp_path / "chsi.jpg"))
    assert scanned.encode() == COLLECTION_CODE.encode()
    identity = classify_qr(scanned, None, DURING, source=Source.QR_CAMERA, reader="cam0")
    assert identity == Identity(Kind.COLLECTION_CODE, COLLECTION_CODE, Source.QR_CAMERA, "cam0")


def test_decode_qr_accepts_every_frame_layout() -> None:
    text = makeup()
    bgr = frame_with(text)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    gray = np.array(Image.fromarray(rgb).convert("L"))
    xrgb = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    for frame in (bgr, rgb, gray, xrgb, Image.fromarray(rgb)):
        assert decode_qr(frame) == [text]
    assert decode_qr(np.array(scene((640, 480)))) == []


def test_typical_payload_is_a_version_7_m_symbol() -> None:
    text = makeup()
    qr = segno.make(text, error="m", micro=False)
    assert (len(text), qr.version, qr.error, qr.mode) == (172, 7, "M", "alphanumeric")
    assert qr.symbol_size(border=0) == (45, 45)


# --- make-up code: rejections -----------------------------------------------------------------

def test_one_changed_body_byte_breaks_the_signature(verifier: MakeupVerifier) -> None:
    body, sig = split_text(makeup())
    tampered = bytearray(body)
    tampered[-1] ^= 0x01  # last digit of the ID number
    assert reason(encode_text(bytes(tampered), sig), verifier) == "bad_signature"


def test_no_single_character_substitution_is_accepted(verifier: MakeupVerifier) -> None:
    text = makeup()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    seen = set()
    for i in range(len(PREFIX), len(text)):
        other = alphabet[(alphabet.index(text[i]) + 1) % 32]
        seen.add(reason(text[:i] + other + text[i + 1:], verifier))
    assert seen <= {"bad_signature", "unknown_key", "malformed"} and "bad_signature" in seen


def test_wrong_key(verifier: MakeupVerifier) -> None:
    assert reason(makeup(signer=OTHER), verifier) == "unknown_key"
    # A forger who copies our key id still cannot produce our signature.
    body = pack_body(MakeupPayload(Kind.ID_NUMBER, ID_NUMBER, SCOPE, T0, T1, b"\0" * 6,
                                   key_id(bytes(CENTRE.verify_key))))
    forged = encode_text(body, OTHER.sign(PREFIX.encode() + body).signature)
    assert reason(forged, verifier) == "bad_signature"


def test_validity_window_with_leeway(verifier: MakeupVerifier) -> None:
    text = makeup()
    assert reason(text, verifier, T0 - timedelta(minutes=11)) == "not_yet_valid"
    assert classify_qr(text, verifier, T0 - timedelta(minutes=9)).key == ID_NUMBER
    assert classify_qr(text, verifier, T1 + timedelta(minutes=9)).key == ID_NUMBER
    assert reason(text, verifier, T1 + timedelta(minutes=10)) == "expired"
    with pytest.raises(ValueError, match="timezone-aware"):
        classify_qr(text, verifier, datetime(2025, 6, 2))


@pytest.mark.parametrize("text", [
    "CKM1:", "CKM1:!!!!", "CKM1:AFLACAQD", "CKM1:" + "A" * 9,
    "CKM1:" + base64.urlsafe_b64encode(bytes(range(130, 250))).decode(),  # base64url is not our encoding
])
def test_malformed(text: str, verifier: MakeupVerifier) -> None:
    assert reason(text, verifier) == "malformed"


def test_truncated_codes_are_rejected(verifier: MakeupVerifier) -> None:
    text = makeup()
    reasons = {reason(text[:n], verifier) for n in range(len(PREFIX), len(text))}
    assert reasons <= {"malformed", "bad_signature", "unknown_key"}


def test_other_rejections(verifier: MakeupVerifier) -> None:
    assert reason("CKM2:AAAA", verifier) == "unsupported_version"
    assert reason(makeup(), None) == "not_configured"
    assert reason(makeup(scope="90002"), verifier) == "wrong_scope"
    revoking = MakeupVerifier([bytes(CENTRE.verify_key)], [SCOPE], revoked=["A1B2C3D4E5F6"])
    assert reason(makeup(), revoking) == "revoked"


def test_error_details_never_carry_the_key(verifier: MakeupVerifier) -> None:
    for text, now in [(makeup(), T1 + timedelta(days=1)), (makeup(scope="90002"), DURING)]:
        with pytest.raises(MakeupQrError) as info:
            classify_qr(text, verifier, now)
        assert ID_NUMBER not in str(info.value) and "a1b2c3d4e5f6" in info.value.detail


def test_lower_case_rendering_still_verifies(verifier: MakeupVerifier) -> None:
    """Some wedge scanners convert case; base32 does not care."""
    identity = classify_qr(makeup().lower(), verifier, DURING)
    assert (identity.kind, identity.key, identity.source) == (Kind.ID_NUMBER, ID_NUMBER, Source.MAKEUP_QR)


def test_makeup_code_may_carry_a_collection_code(verifier: MakeupVerifier) -> None:
    identity = classify_qr(makeup(Kind.COLLECTION_CODE, COLLECTION_CODE), verifier, DURING)
    assert identity == Identity(Kind.COLLECTION_CODE, COLLECTION_CODE, Source.MAKEUP_QR, "")


def test_verifier_from_kit_config() -> None:
    config = {"public_keys": [public_key_b64(OTHER), public_key_b64(CENTRE)], "scopes": [SCOPE, "90009"],
              "leeway_seconds": 0}
    v = MakeupVerifier.from_config(config)
    assert classify_qr(makeup(), v, DURING).key == ID_NUMBER
    assert reason(makeup(), v, T0 - timedelta(seconds=1)) == "not_yet_valid"


def test_worked_example_in_docs_is_current(verifier: MakeupVerifier) -> None:
    doc = (ROOT / "docs" / "qr-format.md").read_text()
    seed = bytes(range(32))
    text = issue(SigningKey(seed), Kind.ID_NUMBER, ID_NUMBER, SCOPE, issued_at=T0, expires_at=T1,
                 code_id=bytes.fromhex("010203040506"))
    body, sig = split_text(text)
    assert text in doc and public_key_b64(SigningKey(seed)) in doc
    assert body.hex(" ") in doc and sig.hex() in doc


# --- classifier: everything that is not ours --------------------------------------------------

def test_collection_codes_are_never_altered() -> None:
    for text in [COLLECTION_CODE, "  padded  ", "lower and UPPER", "ckm1-not-a-prefix", "x"]:
        assert classify_qr(text, None, DURING).key == text


def test_id_number_looking_strings() -> None:
    identity = classify_qr(ID_NUMBER, None, DURING, reader="wedge")
    assert identity == Identity(Kind.ID_NUMBER, ID_NUMBER, Source.QR_SCANNER, "wedge")
    x_number = idnumber.make("11010520000101018")
    assert x_number.endswith("X") and classify_qr(x_number.lower(), None, DURING).key == x_number
    bad_check = ID_NUMBER[:-1] + str((int(ID_NUMBER[-1]) + 1) % 10)
    assert classify_qr(bad_check, None, DURING).kind is Kind.COLLECTION_CODE
    with pytest.raises(QrRejected) as info:
        classify_qr(ID_NUMBER, None, DURING, accept_id_numbers=False)
    assert info.value.reason == "id_number_not_accepted"
    assert reason("", None) == "empty"


# --- keyboard-wedge decoder on real evdev events -----------------------------------------------

SHIFTED = {"!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8", "(": "9",
           ")": "0", "_": "MINUS", "+": "EQUAL", ":": "SEMICOLON", '"': "APOSTROPHE", "?": "SLASH"}
PLAIN = {"-": "MINUS", "=": "EQUAL", ";": "SEMICOLON", "/": "SLASH", ".": "DOT", " ": "SPACE", ",": "COMMA"}


def keystrokes(text: str, t: float = 1000.0, enter: bool = True) -> list[InputEvent]:
    """What a US-layout wedge scanner emits for ``text``: MSC_SCAN + key + SYN, Shift around capitals."""
    events: list[InputEvent] = []

    def ev(etype: int, code: int, value: int) -> None:
        nonlocal t
        t += 0.0008
        events.append(InputEvent(int(t), int(t % 1 * 1e6), etype, code, value))

    def tap(code: int) -> None:
        for value in (1, 0):
            ev(ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code)
            ev(ecodes.EV_KEY, code, value)
            ev(ecodes.EV_SYN, ecodes.SYN_REPORT, 0)

    for ch in text + ("\n" if enter else ""):
        shift = ch.isupper() or ch in SHIFTED
        name = "ENTER" if ch == "\n" else SHIFTED.get(ch) or PLAIN.get(ch) or ch.upper()
        if shift:
            ev(ecodes.EV_KEY, ecodes.KEY_LEFTSHIFT, 1)
        tap(ecodes.ecodes[f"KEY_{name}"])
        if shift:
            ev(ecodes.EV_KEY, ecodes.KEY_LEFTSHIFT, 0)
    return events


def decode(events: list[InputEvent], decoder: KeyDecoder | None = None) -> list:
    decoder = decoder or KeyDecoder()
    return [line for e in events if (line := decoder.feed(e)) is not None]


def test_decoder_reads_shifted_and_plain_characters() -> None:
    text = 'Az09!@#$%^&*()_+:"?-=;/., ' + COLLECTION_CODE
    [line] = decode(keystrokes(text))
    assert (line.text, line.problem) == (text, "")


def test_decoder_reads_a_makeup_code_and_keypad_enter() -> None:
    text = makeup()
    events = keystrokes(text, enter=False)
    events += [InputEvent(1001, 0, ecodes.EV_KEY, ecodes.KEY_KPENTER, v) for v in (1, 0)]
    [line] = decode(events)
    assert line.text == text


def test_decoder_unmapped_keys_spoil_the_line() -> None:
    events = keystrokes("AB", enter=False)
    events += [InputEvent(1000, 900000, ecodes.EV_KEY, ecodes.KEY_F13, v) for v in (1, 0)]
    events += [InputEvent(1000, 910000, ecodes.EV_KEY, ecodes.KEY_LEFTCTRL, 1),
               InputEvent(1000, 910100, ecodes.EV_KEY, ecodes.KEY_J, 1),
               InputEvent(1000, 910200, ecodes.EV_KEY, ecodes.KEY_J, 0),
               InputEvent(1000, 910300, ecodes.EV_KEY, ecodes.KEY_LEFTCTRL, 0)]
    events += keystrokes("C", t=1000.92)
    [line] = decode(events)
    assert line.problem == "unmapped_key" and line.text == "ABC"
    assert "KEY_F13" in line.detail and "KEY_LEFTCTRL+KEY_J" in line.detail
    # The next line is clean again.
    [after] = decode(keystrokes("ok", t=1002.0), KeyDecoder())
    assert after.text == "ok"


def test_decoder_ignores_autorepeat_and_tracks_caps_lock() -> None:
    events = [InputEvent(5, 0, ecodes.EV_KEY, ecodes.KEY_CAPSLOCK, 1),
              InputEvent(5, 10, ecodes.EV_KEY, ecodes.KEY_CAPSLOCK, 0)]
    events += keystrokes("aB", t=5.001, enter=False)  # caps on: a -> A, Shift+b -> b
    events.insert(4, InputEvent(5, 500, ecodes.EV_KEY, ecodes.KEY_A, 2))  # kernel auto-repeat
    events += keystrokes("1", t=5.1)
    [line] = decode(events)
    assert line.text == "Ab1"


def test_decoder_reports_a_line_without_enter_suffix() -> None:
    decoder = KeyDecoder(stale_after=1.0)
    first = decode(keystrokes("first", t=10.0, enter=False), decoder)
    later = decode(keystrokes("second", t=20.0), decoder)
    assert first == []
    assert [(x.text, x.problem) for x in later] == [("first", "incomplete_line"), ("second", "")]


def test_decoder_caps_line_length() -> None:
    [line] = decode(keystrokes("x" * 20), KeyDecoder(max_len=10))
    assert line.problem == "line_too_long" and line.text == "x" * 10


# --- keyboard-wedge reader thread ------------------------------------------------------------

class PipeDevice:
    """Stand-in for an evdev InputDevice: a real fd for select(), real InputEvents, grab flag."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        self.pending: queue.SimpleQueue[InputEvent] = queue.SimpleQueue()
        self.grabbed = self.unplugged = False

    def grab(self) -> None:
        self.grabbed = True

    def type(self, events: list[InputEvent]) -> None:
        for e in events:
            self.pending.put(e)
        os.write(self._w, b"x")

    def unplug(self) -> None:
        self.unplugged = True
        os.write(self._w, b"x")

    def read(self):
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        os.read(self.fd, 4096)
        while not self.pending.empty():
            yield self.pending.get()

    def close(self) -> None:
        for fd in (self.fd, self._w):
            os.close(fd)
        self.grabbed = False


class Collector:
    def __init__(self) -> None:
        self.identities: queue.Queue[Identity] = queue.Queue()
        self.problems: queue.Queue[tuple[str, str]] = queue.Queue()

    def on_identity(self, identity: Identity) -> None:
        self.identities.put(identity)

    def on_problem(self, code: str, detail: str) -> None:
        self.problems.put((code, detail))


def test_scanner_reader_thread_grabs_reads_and_survives_unplug(verifier: MakeupVerifier) -> None:
    devices: list[PipeDevice] = []
    plugged = threading.Event()
    plugged.set()

    def open_device(path: str) -> PipeDevice:
        assert path == "/dev/input/by-id/usb-test-event-kbd"
        if not plugged.is_set():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        devices.append(PipeDevice())
        return devices[-1]

    out = Collector()
    reader = ScannerReader("/dev/input/by-id/usb-test-event-kbd", verifier, clock=lambda: DURING,
                           retry_interval=0.02, open_device=open_device)
    reader.start(out.on_identity, out.on_problem)
    try:
        assert reader.grabbed.wait(2) and devices[0].grabbed
        devices[0].type(keystrokes(makeup()))
        assert out.identities.get(timeout=2) == Identity(Kind.ID_NUMBER, ID_NUMBER, Source.MAKEUP_QR,
                                                         "qr_scanner")
        devices[0].type(keystrokes(makeup(expires=T0 + timedelta(days=1))))
        assert out.problems.get(timeout=2)[0] == "qr_expired"

        plugged.clear()
        devices[0].unplug()
        assert out.problems.get(timeout=2)[0] == "reader_unplugged"
        assert out.problems.get(timeout=2)[0] == "reader_missing"
        plugged.set()
        while len(devices) < 2 or not reader.grabbed.is_set():
            threading.Event().wait(0.01)
        assert out.problems.empty()  # "missing" reported once, not every retry
        devices[1].type(keystrokes(COLLECTION_CODE))
        assert out.identities.get(timeout=2).key == COLLECTION_CODE
    finally:
        reader.stop()
    assert not reader.grabbed.is_set()


def _uinput_skip_reason() -> str | None:
    if os.path.exists("/dev/uinput"):
        return None
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            if "# CONFIG_INPUT_UINPUT is not set" in f.read():
                return "no /dev/uinput: this kernel is built without CONFIG_INPUT_UINPUT (no module to load)"
    except OSError:
        pass
    return "no /dev/uinput: load the uinput module (modprobe uinput) to run this test"


@pytest.mark.skipif(_uinput_skip_reason() is not None, reason=_uinput_skip_reason() or "")
def test_scanner_reader_on_a_virtual_uinput_keyboard(verifier: MakeupVerifier) -> None:
    from evdev import UInput

    try:
        ui = UInput({ecodes.EV_KEY: list(range(1, 120)), ecodes.EV_MSC: [ecodes.MSC_SCAN]},
                    name="capturekit test scanner")
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a uinput device: {exc}")
    with ui:
        path = ui.device.path
        out = Collector()
        reader = ScannerReader(path, verifier, clock=lambda: DURING)
        reader.start(out.on_identity, out.on_problem)
        try:
            assert reader.grabbed.wait(2)
            bystander = InputDevice(path)  # e.g. the console: must see nothing while grabbed
            with pytest.raises(OSError):
                bystander.grab()
            for e in keystrokes(makeup()) + keystrokes(COLLECTION_CODE):
                if e.type != ecodes.EV_SYN:
                    ui.write(e.type, e.code, e.value)
                    ui.syn()
            assert out.identities.get(timeout=3).key == ID_NUMBER
            assert out.identities.get(timeout=3).key == COLLECTION_CODE
            assert bystander.read_one() is None
            bystander.close()
        finally:
            reader.stop()


# --- camera reader: debounce ------------------------------------------------------------------

def test_camera_reader_debounces_a_held_code(verifier: MakeupVerifier) -> None:
    code, blank = frame_with(makeup()), np.array(scene((640, 480), seed=5))[:, :, ::-1].copy()
    out = Collector()
    reader = CameraQrReader(verifier, clock=lambda: DURING, absent_frames=3)
    reader.feed(code)  # not started: ignored
    reader.start(out.on_identity, out.on_problem)
    for frame in [code] * 4 + [blank] * 2 + [code] * 2:  # a 2-frame dropout (hand shake) is not a new read
        reader.feed(frame)
    assert out.identities.qsize() == 1
    for frame in [blank] * 3 + [code]:  # out of view for 3 frames, then shown again
        reader.feed(frame)
    assert out.identities.qsize() == 2
    assert out.identities.get().source is Source.MAKEUP_QR and out.problems.empty()


def test_camera_reader_reports_a_rejection_once_and_each_code(verifier: MakeupVerifier) -> None:
    expired = frame_with(makeup(expires=T0 + timedelta(days=1)))
    out = Collector()
    reader = CameraQrReader(verifier, clock=lambda: DURING, absent_frames=2)
    reader.start(out.on_identity, out.on_problem)
    for _ in range(4):
        reader.feed(expired)
    assert [out.problems.get_nowait()[0]] == ["qr_expired"] and out.problems.empty()
    reader.feed(frame_with(COLLECTION_CODE, scale=2))
    got = out.identities.get_nowait()
    assert got == Identity(Kind.COLLECTION_CODE, COLLECTION_CODE, Source.QR_CAMERA, "qr_camera")
    reader.stop()


def test_logs_never_hold_a_full_key(caplog: pytest.LogCaptureFixture, verifier: MakeupVerifier) -> None:
    caplog.set_level(logging.DEBUG, logger="capturekit.reader.qr")
    reader = CameraQrReader(verifier, clock=lambda: DURING)
    reader.start(lambda _: None, lambda *_: None)
    for text in (makeup(), COLLECTION_CODE, makeup(expires=T0 + timedelta(days=1))):
        reader.feed(frame_with(text, scale=2))
    assert len(caplog.records) == 3
    assert ID_NUMBER not in caplog.text and COLLECTION_CODE[:12] not in caplog.text


# --- centre CLI -------------------------------------------------------------------------------

def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "centre.makeup_qr", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=30)


def test_centre_cli_keygen_issue_and_kit_verification(tmp_path: Path) -> None:
    keyfile, png = tmp_path / "centre.key", tmp_path / "code.png"
    made = run_cli("keygen", "--out", str(keyfile))
    assert made.returncode == 0 and oct(keyfile.stat().st_mode & 0o777) == "0o600"
    public = made.stdout.strip()
    assert run_cli("pubkey", "--signing-key", str(keyfile)).stdout.strip() == public
    assert run_cli("keygen", "--out", str(keyfile)).returncode != 0  # never overwrites a key

    issued = run_cli("issue", "--signing-key", str(keyfile), "--kind", "id_number", "--value", "-",
                     "--scope", SCOPE, "--valid-days", "2", "--png", str(png), stdin=ID_NUMBER + "\n")
    assert issued.returncode == 0, issued.stderr
    text = issued.stdout.strip()
    assert re.search(r"QR version 7\b", issued.stderr)
    assert decode_qr(Image.open(png)) == [text]
    kit = MakeupVerifier.from_config({"public_keys": [public], "scopes": [SCOPE]})
    identity = classify_qr(text, kit, datetime.now(UTC))
    assert (identity.kind, identity.key) == (Kind.ID_NUMBER, ID_NUMBER)

    bad = run_cli("issue", "--signing-key", str(keyfile), "--kind", "id_number", "--value",
                  ID_NUMBER[:-1] + "0" if ID_NUMBER[-1] != "0" else ID_NUMBER[:-1] + "1", "--scope", SCOPE)
    assert bad.returncode == 2 and "check_digit" in bad.stderr
