"""QR-code identity sources: a USB keyboard-wedge scanner (evdev) and the kit's own camera (zxing-cpp).

Both hand each scanned string to :func:`classify_qr`, which decides what it is:

* ``CKMn:…`` (any case) — our signed make-up code: verified, or rejected with a reason;
* exactly 18 characters that pass GB 11643 (valid date and check character) — an ID number
  (legacy ID-number process, e.g. a barcode on an admission slip); optional per kit;
* anything else — a CHSI image-collection code, kept byte for byte (never stripped, never re-cased).

Problems go to ``on_problem(code, detail)``; codes are listed in ``docs/qr-format.md``. Logs never
carry a full key (:func:`appliance.identity.masked`).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import zxingcpp
from evdev import InputDevice, InputEvent, ecodes

from .. import idnumber
from ..identity import Identity, InvalidIdentity, Kind, Source, make
from ..makeup_qr import MakeupQrError, MakeupVerifier, QrRejected, is_makeup_text
from . import OnIdentity, OnProblem

log = logging.getLogger("capturekit.reader.qr")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _looks_like_id_number(text: str) -> bool:
    return len(text) == 18 and text.isascii() and idnumber.is_valid(text)


def classify_qr(text: str, verifier: MakeupVerifier | None, now: datetime, *,
                source: Source = Source.QR_SCANNER, reader: str = "",
                accept_id_numbers: bool = True) -> Identity:
    """The identity a scanned string carries, or :class:`QrRejected` saying why not.

    ``verifier`` is None on a kit not configured for make-up sessions. ``now`` is only used for
    the make-up validity window; this function reads no clock.
    """
    if is_makeup_text(text):
        if verifier is None:
            raise MakeupQrError("not_configured", "make-up code, but the kit has no centre public key")
        payload = verifier.verify(text, now)
        try:
            return make(payload.kind, payload.key, Source.MAKEUP_QR, reader)
        except InvalidIdentity as exc:
            raise MakeupQrError("malformed", f"code {payload.code_id_hex}: {exc.reason}") from None
    if _looks_like_id_number(text):
        if not accept_id_numbers:
            raise QrRejected("id_number_not_accepted", "an ID number; this kit takes collection codes")
        return make(Kind.ID_NUMBER, text, source, reader)
    if not text:
        raise QrRejected("empty", "empty code")
    return Identity(Kind.COLLECTION_CODE, text, Source(source), reader)


def _hint(text: str) -> str:
    """A log-safe description of an unclassified string."""
    return f"{text[:4]}…({len(text)} chars)" if len(text) > 8 else f"({len(text)} chars)"


class _Emitter:
    """Shared classify → callback → log step of both readers."""

    name: str
    source: Source

    def __init__(self, verifier: MakeupVerifier | None, clock: Clock, accept_id_numbers: bool) -> None:
        self.verifier = verifier
        self.clock = clock
        self.accept_id_numbers = accept_id_numbers
        self._on_identity: OnIdentity | None = None
        self._on_problem: OnProblem | None = None

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        try:
            if callback is not None:
                callback(*args)
        except Exception:  # a failing consumer must not kill the reader
            log.exception("%s: callback failed", self.name)

    def _problem(self, code: str, detail: str) -> None:
        log.warning("%s: %s: %s", self.name, code, detail)
        self._call(self._on_problem, code, detail)

    def _emit(self, text: str) -> None:
        try:
            identity = classify_qr(text, self.verifier, self.clock(), source=self.source,
                                   reader=self.name, accept_id_numbers=self.accept_id_numbers)
        except QrRejected as exc:
            self._problem(f"qr_{exc.reason}", f"{exc.detail} [{_hint(text)}]"
                          if exc.reason == "malformed" else exc.detail)
            return
        log.info("%s: read %s", self.name, identity)
        self._call(self._on_identity, identity)


# --- keyboard-wedge scanner -------------------------------------------------------------------

_PLAIN = {
    **{getattr(ecodes, f"KEY_{c.upper()}"): c for c in "abcdefghijklmnopqrstuvwxyz1234567890"},
    ecodes.KEY_MINUS: "-", ecodes.KEY_EQUAL: "=", ecodes.KEY_LEFTBRACE: "[", ecodes.KEY_RIGHTBRACE: "]",
    ecodes.KEY_SEMICOLON: ";", ecodes.KEY_APOSTROPHE: "'", ecodes.KEY_GRAVE: "`",
    ecodes.KEY_BACKSLASH: "\\", ecodes.KEY_COMMA: ",", ecodes.KEY_DOT: ".", ecodes.KEY_SLASH: "/",
    ecodes.KEY_SPACE: " ",
}
_SHIFTED = {
    **{getattr(ecodes, f"KEY_{c.upper()}"): c.upper() for c in "abcdefghijklmnopqrstuvwxyz"},
    **{getattr(ecodes, f"KEY_{d}"): s for d, s in zip("1234567890", "!@#$%^&*()", strict=True)},
    ecodes.KEY_MINUS: "_", ecodes.KEY_EQUAL: "+", ecodes.KEY_LEFTBRACE: "{", ecodes.KEY_RIGHTBRACE: "}",
    ecodes.KEY_SEMICOLON: ":", ecodes.KEY_APOSTROPHE: '"', ecodes.KEY_GRAVE: "~",
    ecodes.KEY_BACKSLASH: "|", ecodes.KEY_COMMA: "<", ecodes.KEY_DOT: ">", ecodes.KEY_SLASH: "?",
    ecodes.KEY_SPACE: " ",
}
# Keypad keys: what a scanner in "keypad emulation" sends; independent of NumLock here.
_KEYPAD = {
    **{getattr(ecodes, f"KEY_KP{d}"): d for d in "0123456789"},
    ecodes.KEY_KPDOT: ".", ecodes.KEY_KPSLASH: "/", ecodes.KEY_KPASTERISK: "*",
    ecodes.KEY_KPMINUS: "-", ecodes.KEY_KPPLUS: "+",
}
_SHIFT = {ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT}
_OTHER_MODIFIERS = {ecodes.KEY_LEFTCTRL, ecodes.KEY_RIGHTCTRL, ecodes.KEY_LEFTALT, ecodes.KEY_RIGHTALT,
                    ecodes.KEY_LEFTMETA, ecodes.KEY_RIGHTMETA}
_ENTER = {ecodes.KEY_ENTER, ecodes.KEY_KPENTER}
KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2


def key_name(code: int) -> str:
    name = ecodes.bytype[ecodes.EV_KEY].get(code, f"KEY_{code}")
    return name[0] if isinstance(name, list | tuple) else name


@dataclass(frozen=True, slots=True)
class ScannedLine:
    """One line from the scanner; ``problem`` is empty when ``text`` is trustworthy."""

    text: str
    problem: str = ""  # "unmapped_key" | "incomplete_line" | "line_too_long"
    detail: str = ""


class KeyDecoder:
    """Turns evdev key events of a US-layout keyboard-wedge scanner into lines (pure, no I/O).

    A line ends at Enter (main or keypad). Shift and Caps Lock are tracked here, not by the OS
    (the device is grabbed). Auto-repeat events are ignored (a scanner never holds a key). A key
    with no US-layout character — or any key while Ctrl/Alt/Meta is held — spoils the line: it
    is reported, never silently dropped, since a collection code must be kept exactly. A partial
    line followed by a gap longer than ``stale_after`` seconds (event timestamps) is returned as
    ``incomplete_line``: the scanner is probably not configured to send an Enter suffix.
    """

    def __init__(self, *, stale_after: float = 1.0, max_len: int = 4096) -> None:
        self.stale_after = stale_after
        self.max_len = max_len
        self._reset()
        self._shift: set[int] = set()
        self._mods: set[int] = set()
        self._caps = False

    def _reset(self) -> None:
        self._chars: list[str] = []
        self._bad: list[str] = []
        self._overflow = False
        self._last: float | None = None

    def _take(self) -> ScannedLine:
        text = "".join(self._chars)
        if self._bad:
            keys = ", ".join(self._bad[:5])
            line = ScannedLine(text, "unmapped_key", f"{len(self._bad)} unmapped key(s): {keys}")
        elif self._overflow:
            line = ScannedLine(text, "line_too_long", f"over {self.max_len} characters")
        else:
            line = ScannedLine(text)
        self._reset()
        return line

    def _char(self, code: int) -> str | None:
        if code in _KEYPAD:
            return _KEYPAD[code]
        plain = _PLAIN.get(code)
        if plain is None:
            return None
        if plain.isalpha():
            return plain.upper() if bool(self._shift) != self._caps else plain
        return _SHIFTED[code] if self._shift else plain

    def feed(self, event: InputEvent) -> ScannedLine | None:
        """Consume one event; return a line when one ends (or a stale one is abandoned)."""
        if event.type != ecodes.EV_KEY:
            return None
        code, value = event.code, event.value
        if code in _SHIFT or code in _OTHER_MODIFIERS:
            held = self._shift if code in _SHIFT else self._mods
            (held.add if value != KEY_UP else held.discard)(code)
            return None
        if value != KEY_DOWN:
            return None
        if code in _ENTER:
            return self._take() if (self._chars or self._bad) else None
        stale = None
        now = event.timestamp()
        if (self._chars or self._bad) and self._last is not None and now - self._last > self.stale_after:
            stale = ScannedLine("".join(self._chars), "incomplete_line",
                                f"{now - self._last:.1f} s gap without Enter; is the Enter suffix on?")
            self._reset()
        self._last = now
        if code == ecodes.KEY_CAPSLOCK:
            self._caps = not self._caps
            return stale
        char = None if self._mods else self._char(code)
        if char is None:
            self._bad.append("+".join([*(key_name(m) for m in sorted(self._mods)), key_name(code)]))
        elif len(self._chars) >= self.max_len:
            self._overflow = True
        else:
            self._chars.append(char)
        return stale


class ScannerReader(_Emitter):
    """A keyboard-wedge QR scanner on an evdev node, grabbed exclusively, read on its own thread.

    ``device_path``: e.g. ``/dev/input/by-id/usb-<vendor>_<model>-event-kbd``. The reader survives
    unplugging: it reports ``reader_unplugged`` and reopens the path when it comes back.
    ``open_device`` exists for tests without a kernel input device.
    """

    source = Source.QR_SCANNER

    def __init__(self, device_path: str, verifier: MakeupVerifier | None = None, *,
                 name: str = "qr_scanner", clock: Clock = utc_now, accept_id_numbers: bool = True,
                 retry_interval: float = 1.0, open_device: Callable[[str], Any] = InputDevice) -> None:
        super().__init__(verifier, clock, accept_id_numbers)
        self.device_path = device_path
        self.name = name
        self.retry_interval = retry_interval
        self._open_device = open_device
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r = self._wake_w = -1
        self.grabbed = threading.Event()  # set while the device is held (for tests and status)

    def start(self, on_identity: OnIdentity, on_problem: OnProblem) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._on_identity, self._on_problem = on_identity, on_problem
        self._stopping.clear()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._thread = None
        self._on_identity = self._on_problem = None

    def _open(self) -> Any:
        device = self._open_device(self.device_path)
        try:
            device.grab()
        except OSError:
            device.close()
            raise
        return device

    def _run(self) -> None:
        last_problem = ""
        while not self._stopping.is_set():
            try:
                device = self._open()
            except OSError as exc:
                code = {errno.ENOENT: "reader_missing", errno.ENODEV: "reader_missing",
                        errno.EACCES: "reader_permission", errno.EPERM: "reader_permission",
                        errno.EBUSY: "reader_busy"}.get(exc.errno or 0, "reader_error")
                if code != last_problem:
                    self._problem(code, f"{self.device_path}: {exc.strerror or exc}")
                    last_problem = code
                self._stopping.wait(self.retry_interval)
                continue
            last_problem = ""
            self.grabbed.set()
            log.info("%s: grabbed %s", self.name, self.device_path)
            try:
                self._pump(device)
            except OSError as exc:
                last_problem = "reader_unplugged"
                self._problem(last_problem, f"{self.device_path}: {exc.strerror or exc}")
            finally:
                self.grabbed.clear()
                device.close()  # closing the fd releases the grab

    def _pump(self, device: Any) -> None:
        decoder = KeyDecoder()
        while not self._stopping.is_set():
            ready, _, _ = select.select([device.fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                events = list(device.read())
            except BlockingIOError:
                continue
            for event in events:
                line = decoder.feed(event)
                if line is not None:
                    self._line(line)

    def _line(self, line: ScannedLine) -> None:
        if line.problem:
            self._problem(f"qr_{line.problem}", line.detail)
        else:
            self._emit(line.text)


# --- camera ------------------------------------------------------------------------------------

def decode_qr(image: Any) -> list[str]:
    """Texts of the valid QR codes in a frame, in reading order, without duplicates.

    ``image``: a PIL image, or a numpy array — 2-D luminance (e.g. the Y plane of a YUV420 preview),
    3-channel BGR/RGB, or 4-channel (XRGB8888 from picamera2; the 4th channel is dropped). The text
    is zxing-cpp's plain transcoding of the code's bytes (no human-readable reformatting).
    """
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) == 3 and shape[2] == 4:
        image = image[:, :, :3].copy()
    results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode,
                                     text_mode=zxingcpp.TextMode.Plain)
    return list(dict.fromkeys(r.text for r in results if r.valid))


class CameraQrReader(_Emitter):
    """Reads QR codes from preview frames the daemon passes to :meth:`feed`.

    Debounce: a code is read when it appears, and again only after it has been out of view for
    ``absent_frames`` consecutive frames. Rejected codes are debounced the same way (one problem
    per presentation).
    """

    source = Source.QR_CAMERA

    def __init__(self, verifier: MakeupVerifier | None = None, *, name: str = "qr_camera",
                 clock: Clock = utc_now, absent_frames: int = 5, accept_id_numbers: bool = True) -> None:
        super().__init__(verifier, clock, accept_id_numbers)
        self.name = name
        self.absent_frames = absent_frames
        self._absent: dict[str, int] = {}  # code in view -> consecutive frames without it

    def start(self, on_identity: OnIdentity, on_problem: OnProblem) -> None:
        self._on_identity, self._on_problem = on_identity, on_problem
        self._absent.clear()

    def stop(self) -> None:
        self._on_identity = self._on_problem = None
        self._absent.clear()

    def feed(self, frame: Any) -> None:
        """Decode one frame and report codes that just came into view."""
        if self._on_identity is None:
            return
        seen = decode_qr(frame)
        for text in self._absent:
            self._absent[text] += 1
        for text in seen:
            if text not in self._absent:
                self._emit(text)
            self._absent[text] = 0
        self._absent = {t: n for t, n in self._absent.items() if n < self.absent_frames}
