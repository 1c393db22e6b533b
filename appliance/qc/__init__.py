"""Shot-time quality checks and the diploma-spec derivative (a pure library: no I/O, no threads).

    report = assess(jpeg, QcConfig(), PhotoSpec())      # or assess_array(lores_rgb, jpeg, ...)
    if report.verdict != "fail":
        small = make_derivative(jpeg, report, PhotoSpec())

See docs/qc.md for the checks and docs/photo-spec.md for the figures.
"""

from .assess import CHECK_NAMES, assess, assess_array, lores_to_rgb
from .config import PhotoSpec, QcConfig
from .decode import ImageDecodeError
from .derivative import CropPlan, DerivativeError, make_derivative, plan_crop
from .report import CheckResult, FaceGeometry, QcReport

__all__ = [
    "CHECK_NAMES", "CheckResult", "CropPlan", "DerivativeError", "FaceGeometry", "ImageDecodeError",
    "PhotoSpec", "QcConfig", "QcReport", "assess", "assess_array", "lores_to_rgb", "make_derivative", "plan_crop",
]
