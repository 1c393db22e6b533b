"""Shot-time quality checks and the diploma-spec derivative (a pure library: no I/O, no threads).

    report = assess(jpeg, QcConfig(), PhotoSpec())      # or assess_array(lores_rgb, jpeg, ...)
    if report.verdict != "fail":
        small = make_derivative(jpeg, report, PhotoSpec())

See docs/qc.md for the checks and docs/photo-spec.md for the figures.

The names below are loaded on first use (PEP 562): ``appliance.qc.config``, which every process reads with the
kit's configuration, must not pull in OpenCV, NumPy and the face models — the sync daemon never needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_HOME = {
    "CHECK_NAMES": "assess", "assess": "assess", "assess_array": "assess", "lores_to_rgb": "assess",
    "PhotoSpec": "config", "QcConfig": "config", "ImageDecodeError": "decode",
    "CropPlan": "derivative", "DerivativeError": "derivative", "make_derivative": "derivative",
    "plan_crop": "derivative", "CheckResult": "report", "FaceGeometry": "report", "QcReport": "report",
}
__all__ = [
    "CHECK_NAMES", "CheckResult", "CropPlan", "DerivativeError", "FaceGeometry", "ImageDecodeError",
    "PhotoSpec", "QcConfig", "QcReport", "assess", "assess_array", "lores_to_rgb", "make_derivative", "plan_crop",
]

if TYPE_CHECKING:
    from .assess import CHECK_NAMES, assess, assess_array, lores_to_rgb
    from .config import PhotoSpec, QcConfig
    from .decode import ImageDecodeError
    from .derivative import CropPlan, DerivativeError, make_derivative, plan_crop
    from .report import CheckResult, FaceGeometry, QcReport


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = import_module(f".{_HOME[name]}", __name__)
    # every name of that module at once: importing ``.assess`` binds the *module* as this package's ``assess``,
    # and the function of that name must win (as an eager ``from .assess import assess`` made it)
    globals().update({n: getattr(home, n) for n, where in _HOME.items() if where == _HOME[name]})
    return globals()[name]
