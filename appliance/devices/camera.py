"""The camera seam: what the daemon needs from a camera, and the simulated twin.

The real adapter (:mod:`appliance.devices.picamera`) drives a Raspberry Pi HQ camera through
picamera2. :class:`SimCamera` produces real JPEGs of the configured size: a rendered portrait-like
scene (or any scene the simulator supplies) with sensor-like noise, carrying the shot and frame in
a JPEG comment so tests can prove that no photo was ever bound to the wrong shot.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw

SIM_COMMENT = "capturekit-sim shot={shot} frame={frame}"
BACKDROP = (100, 197, 255)  # light blue, the most cited diploma background


class CameraError(RuntimeError):
    """The camera did not deliver a photo; the message says why (timeout, hardware, …)."""


@dataclass(frozen=True)
class Photo:
    jpeg: bytes  # the full-resolution original, exactly as encoded at capture
    width: int
    height: int
    preview: np.ndarray | None = None  # small RGB frame taken with the still (QC, QR), if the camera has one
    metadata: dict[str, Any] = field(default_factory=dict)


class Camera(Protocol):
    def start(self) -> None:
        """Open and configure once; kept open for the life of the daemon."""

    def capture(self, shot: int, frame: int) -> Photo:
        """Take one still; raise CameraError within the configured timeout."""

    def probe(self) -> dict[str, Any]:
        """Cheap liveness check (metadata of the next frame); raise CameraError if dead."""

    def preview(self) -> np.ndarray:
        """The latest small frame (luma or RGB) between shots, for QR codes held up to the camera."""

    def close(self) -> None: ...


def portrait(width: int, height: int) -> Image.Image:
    """A portrait-like scene: backdrop, shoulders, head, hair, eyes — proportions of a diploma shot."""
    img = Image.new("RGB", (width, height), BACKDROP)
    d = ImageDraw.Draw(img)
    cx, u = width / 2, height / 100
    d.ellipse([cx - 34 * u, 72 * u, cx + 34 * u, 140 * u], fill=(30, 34, 48))  # shoulders, dark top
    d.rectangle([cx - 7 * u, 55 * u, cx + 7 * u, 75 * u], fill=(214, 170, 140))  # neck
    d.ellipse([cx - 15 * u, 18 * u, cx + 15 * u, 62 * u], fill=(224, 182, 150))  # face
    d.chord([cx - 16 * u, 12 * u, cx + 16 * u, 44 * u], 180, 360, fill=(25, 20, 18))  # hair
    for ex in (cx - 6 * u, cx + 6 * u):
        d.ellipse([ex - 2.2 * u, 36 * u, ex + 2.2 * u, 39 * u], fill=(250, 250, 250))
        d.ellipse([ex - 1 * u, 36.3 * u, ex + 1 * u, 38.7 * u], fill=(40, 28, 20))
    d.line([cx - 4 * u, 52 * u, cx + 4 * u, 52 * u], fill=(170, 90, 90), width=max(1, int(u * 0.8)))
    return img


def add_noise(img: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """Sensor-like noise, so JPEG sizes and encode times resemble a real photo's."""
    arr = np.asarray(img, dtype=np.int16)
    noise = np.random.default_rng(seed).normal(0, sigma, arr.shape).astype(np.int16)
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))


Scene = Callable[[int, int], Image.Image]  # (shot, frame) -> full-size RGB image


class SimCamera:
    """Simulated camera: real JPEGs at the configured size, with scriptable failures and hangs."""

    def __init__(self, width: int, height: int, quality: int = 92, preview_size: tuple[int, int] = (640, 480),
                 scene: Scene | None = None) -> None:
        self.width, self.height, self.quality = width, height, quality
        self.preview_size = preview_size
        self.scene = scene
        self._base: Image.Image | None = None
        self._preview: np.ndarray | None = None
        self._faults: list[tuple[str, float]] = []
        self._held: Image.Image | None = None
        self._lock = threading.Lock()
        self.started = False
        self.captures = 0
        self.on_capture: Callable[[int, int, bytes], None] | None = None  # the simulator's own record

    def start(self) -> None:
        self.started = True

    def fail_next(self, reason: str = "simulated sensor error") -> None:
        with self._lock:
            self._faults.append((reason, 0.0))

    def hang_next(self, seconds: float) -> None:
        """The next capture blocks this long and then fails (a hung camera)."""
        with self._lock:
            self._faults.append(("simulated hang", seconds))

    def _base_image(self) -> Image.Image:
        if self._base is None:
            self._base = add_noise(portrait(self.width, self.height), 3.0)
        return self._base

    def render(self, shot: int, frame: int) -> Image.Image:
        img = self.scene(shot, frame) if self.scene else self._base_image().copy()
        if img.size != (self.width, self.height):
            img = img.resize((self.width, self.height))
        d = ImageDraw.Draw(img)
        d.text((self.width * 0.02, self.height * 0.95), f"{shot:06d}-{frame:02d}", fill=(255, 255, 255))
        return img

    def capture(self, shot: int, frame: int) -> Photo:
        if not self.started:
            raise CameraError("camera not started")
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault:
            reason, hang = fault
            if hang:
                threading.Event().wait(hang)
            raise CameraError(reason)
        img = self.render(shot, frame)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=self.quality, comment=SIM_COMMENT.format(shot=shot, frame=frame))
        if self.scene or self._preview is None:
            preview = np.asarray(img.resize(self.preview_size, Image.Resampling.BILINEAR))
            if not self.scene:
                self._preview = preview
        else:
            preview = self._preview
        self.captures += 1
        jpeg = buf.getvalue()
        if self.on_capture:
            self.on_capture(shot, frame, jpeg)
        return Photo(jpeg, self.width, self.height, preview, {"sim": True})

    def probe(self) -> dict[str, Any]:
        if not self.started:
            raise CameraError("camera not started")
        return {"sim": True, "size": [self.width, self.height]}

    def show(self, picture: Image.Image | None) -> None:
        """Hold ``picture`` (e.g. a phone showing a QR code) in front of the camera; None takes it away."""
        self._held = picture

    def preview(self) -> np.ndarray:
        if not self.started:
            raise CameraError("camera not started")
        base = Image.new("RGB", self.preview_size, BACKDROP)
        held = self._held
        if held is not None:
            w, h = held.size
            base.paste(held, ((self.preview_size[0] - w) // 2, (self.preview_size[1] - h) // 2))
        return np.asarray(base)

    def close(self) -> None:
        self.started = False
