"""Raspberry Pi HQ camera through picamera2 (apt ``python3-picamera2`` on Raspberry Pi OS).

Following what breaks in the field (``../shared/reference/field-lessons.md``):

* one long-lived ``Picamera2`` in one still configuration — full-resolution ``main`` for the shot and
  a small ``lores`` stream alongside it for QC/QR — never ``switch_mode`` (CMA fragmentation);
* capture with ``captured_request(wait=timeout, flush=True)``: the request is always released, the
  call always has a deadline, and ``flush`` guarantees a frame exposed after the trigger (with the
  panel at full level), not one queued before it;
* fixed exposure, gain and white balance from config (AE/AWB off), so every shot under the light
  panel looks the same;
* a timeout raises :class:`CameraError`; the daemon counts consecutive failures and, past
  ``camera.max_failures``, exits so systemd restarts it (re-opening rarely cures a frontend timeout).

Not testable without the hardware: ``capturekit selftest`` exercises it on a real kit (hardware.md).
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np

from ..config import CameraConfig
from .camera import CameraError, Photo

log = logging.getLogger("capturekit.camera")


def yuv420_to_rgb(yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Convert picamera2's planar YUV420 lores buffer (height*3/2 rows) to RGB (BT.601 full range)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(yuv[: height * 3 // 2, :width]), cv2.COLOR_YUV2RGB_I420)


class Picamera2Camera:
    """The real camera. Requires picamera2 + libcamera (Raspberry Pi OS Bookworm)."""

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self.cam: Any = None

    def start(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError("picamera2 is not installed (apt install python3-picamera2; venv with "
                              "--system-site-packages)") from exc
        c = self.cfg
        try:
            self.cam = Picamera2()
            config = self.cam.create_still_configuration(
                main={"size": (c.width, c.height)},
                lores={"size": (c.lores_width, c.lores_height), "format": "YUV420"},
                buffer_count=2,
                controls={"AeEnable": False, "ExposureTime": c.exposure_us, "AnalogueGain": c.analogue_gain,
                          "AwbEnable": False, "ColourGains": tuple(c.colour_gains)},
            )
            self.cam.configure(config)
            self.cam.options["quality"] = c.jpeg_quality
            self.cam.start()
        except Exception as exc:  # libcamera raises RuntimeError/OSError variants; all mean "no camera"
            self.close()
            raise CameraError(f"camera did not start: {exc}") from exc
        log.info("camera started: %s", self.cam.camera_properties.get("Model", "?"))

    def capture(self, shot: int, frame: int) -> Photo:
        if self.cam is None:
            raise CameraError("camera not started")
        c = self.cfg
        t0 = time.monotonic()
        try:
            with self.cam.captured_request(wait=c.timeout_s, flush=True) as request:
                buf = io.BytesIO()
                request.save("main", buf, format="jpeg")
                lores = request.make_array("lores")
                meta = request.get_metadata()
        except TimeoutError as exc:
            raise CameraError(f"timeout: no frame within {c.timeout_s:g} s") from exc
        except Exception as exc:
            raise CameraError(f"capture failed: {exc}") from exc
        keep = ("ExposureTime", "AnalogueGain", "ColourGains", "SensorTimestamp", "Lux", "ColourTemperature")
        metadata = {k: meta[k] for k in keep if k in meta}
        metadata["capture_ms"] = round((time.monotonic() - t0) * 1000, 1)
        preview = yuv420_to_rgb(lores, c.lores_width, c.lores_height)
        return Photo(buf.getvalue(), c.width, c.height, preview, metadata)

    def probe(self) -> dict[str, Any]:
        if self.cam is None:
            raise CameraError("camera not started")
        try:
            return dict(self.cam.capture_metadata(wait=self.cfg.timeout_s))
        except Exception as exc:
            raise CameraError(f"probe failed: {exc}") from exc

    def preview(self) -> np.ndarray:
        """The luma plane of the latest lores frame: all a QR decoder needs, no colour conversion."""
        if self.cam is None:
            raise CameraError("camera not started")
        c = self.cfg
        try:
            yuv = self.cam.capture_array("lores", wait=c.timeout_s)
        except Exception as exc:
            raise CameraError(f"preview failed: {exc}") from exc
        return np.ascontiguousarray(yuv[: c.lores_height, : c.lores_width])

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.close()
            except Exception:
                log.exception("camera close failed")
            self.cam = None
