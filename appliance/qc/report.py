"""What QC hands back: one result per check, the face geometry, and a verdict. JSON-ready."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

Result = Literal["pass", "warn", "fail"]
_RANK = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class CheckResult:
    """One check: its outcome, the measured value (None when it could not be measured), the threshold
    it was judged against (human-readable) and a stable machine-readable reason code."""

    name: str
    result: Result
    value: float | None
    threshold: str
    reason_code: str


@dataclass(frozen=True)
class FaceGeometry:
    """The main face, resolution-independent: x as a fraction of the frame width, y of its height.

    ``face_width`` is cheek to cheek as a fraction of the frame width. ``head_top_y`` is the top of the
    hair outline (None when not found, e.g. cut off by the top edge). Derivatives of any resolution of
    the same frame (same field of view) map these back to pixels.
    """

    box: tuple[float, float, float, float]
    right_eye: tuple[float, float]
    left_eye: tuple[float, float]
    face_width: float
    centre_x: float
    chin_y: float
    head_top_y: float | None
    roll_deg: float
    yaw_deg: float

    @property
    def eye_mid(self) -> tuple[float, float]:
        return ((self.right_eye[0] + self.left_eye[0]) / 2, (self.right_eye[1] + self.left_eye[1]) / 2)


@dataclass(frozen=True)
class QcReport:
    verdict: Result
    checks: list[CheckResult]
    face: FaceGeometry | None
    frame_size: tuple[int, int]  # (w, h) of the full frame the geometry refers to
    analysed_size: tuple[int, int]  # (w, h) of the image the checks ran on
    elapsed_ms: float
    # the decode QC made (appliance.qc.decode.Decoded), reused by make_derivative; never serialised
    source: object = field(default=None, repr=False, compare=False)

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.result == "fail"]

    def to_dict(self) -> dict:
        """Plain dict for JSON: floats rounded, NaN/inf replaced by None."""
        return _clean({f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "source"})


def _plain(v: object) -> object:
    if isinstance(v, list):
        return [asdict(x) for x in v]
    return asdict(v) if hasattr(v, "__dataclass_fields__") else v


def verdict_of(checks: list[CheckResult]) -> Result:
    worst = max((_RANK[c.result] for c in checks), default=0)
    return next(k for k, v in _RANK.items() if v == worst)


def _clean(obj: object) -> object:
    if isinstance(obj, float):
        return round(obj, 5) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj
