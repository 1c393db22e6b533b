"""Shot-time QC for the daemon: runs :mod:`appliance.qc` on each photo and cuts the diploma derivative.

Runs on the camera thread right after the capture, so the verdict (and the retake signal) comes
within a fraction of a second while the student is still seated. The derivative is made here too,
for every frame that is not rejected, so the bundle is written once, complete.

Contract with the daemon: a shot whose original is not a complete colour JPEG (or whose preview frame is
not an H x W x 3 uint8 array) raises :class:`appliance.qc.ImageDecodeError` with a one-line reason — a failed
capture, retaken. Anything else that goes wrong inside QC never escapes: the photo is kept with a
``warn`` outcome whose reason is ``qc_error: <short text>``, and the traceback is logged once.
"""

from __future__ import annotations

import logging

from .daemon import QcOutcome
from .devices.camera import Photo
from .qc import DerivativeError, ImageDecodeError, PhotoSpec, QcConfig, assess, assess_array, make_derivative
from .qc.decode import check_rgb, jpeg_size
from .qc.detector import default_detector

log = logging.getLogger("capturekit.qc")


class QualityCheck:
    """The daemon's ``assess`` hook backed by the real QC (MediaPipe face models run by OpenCV)."""

    def __init__(self, cfg: QcConfig, spec: PhotoSpec) -> None:
        self.cfg, self.spec = cfg, spec

    def warm_up(self) -> None:
        """Load the face models now (~50 ms) rather than on the first student."""
        default_detector(self.cfg.detection_min_confidence)

    def __call__(self, photo: Photo) -> QcOutcome:
        jpeg_size(photo.jpeg)  # ImageDecodeError: not a complete colour JPEG
        if photo.preview is not None:
            check_rgb(photo.preview)  # ImageDecodeError: 2-D, greyscale or wrong dtype
        try:
            return self._judge(photo)
        except ImageDecodeError:
            raise
        except Exception as exc:  # QC must never lose a photo: keep it, flag it, log it once
            log.error("QC failed on a shot; the photo is kept with a qc_error warning", exc_info=True)
            text = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
            return QcOutcome("warn", (f"qc_error: {text}",), None, None, None)

    def _judge(self, photo: Photo) -> QcOutcome:
        if photo.preview is not None:
            report = assess_array(photo.preview, photo.jpeg, self.cfg, self.spec)
        else:
            report = assess(photo.jpeg, self.cfg, self.spec)
        worst = [c.reason_code for c in report.checks if c.result == report.verdict and c.result != "pass"]
        reasons = tuple(worst) or ("qc_pass",)
        derivative = error = None
        if report.verdict != "fail":
            try:
                derivative = make_derivative(photo.jpeg, report, self.spec)
            except DerivativeError as exc:
                log.warning("no diploma derivative: %s", exc)
                error = f"{exc.reason}: {exc}"
        return QcOutcome(report.verdict, reasons, report.to_dict(), derivative, error)
