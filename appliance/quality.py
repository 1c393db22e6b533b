"""Shot-time QC for the daemon: runs :mod:`appliance.qc` on each photo and cuts the diploma derivative.

Runs on the camera thread right after the capture, so the verdict (and the retake signal) comes
within a fraction of a second while the student is still seated. The derivative is made here too,
for every frame that is not rejected, so the bundle is written once, complete. A QC crash never
loses a photo: the daemon keeps the frame with a ``qc_error`` warning.
"""

from __future__ import annotations

import logging

from .daemon import QcOutcome
from .devices.camera import Photo
from .qc import DerivativeError, PhotoSpec, QcConfig, assess, assess_array, make_derivative
from .qc.detector import default_detector

log = logging.getLogger("capturekit.qc")


class QualityCheck:
    """The daemon's ``assess`` hook backed by the real QC (mediapipe face models shipped in the wheel)."""

    def __init__(self, cfg: QcConfig, spec: PhotoSpec) -> None:
        self.cfg, self.spec = cfg, spec

    def warm_up(self) -> None:
        """Load the face models now (~1 s) rather than on the first student."""
        default_detector()

    def __call__(self, photo: Photo) -> QcOutcome:
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
