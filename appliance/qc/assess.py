"""Run all checks on one shot: from the JPEG (decoded at reduced scale) or from a small frame."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from . import checks as ck
from .config import PhotoSpec, QcConfig
from .decode import Decoded, ImageDecodeError, check_rgb, decode, denom_for, jpeg_size
from .derivative import DerivativeError, plan_crop
from .detector import Detector, default_detector
from .report import CheckResult, FaceGeometry, QcReport, verdict_of

__all__ = ["CHECK_NAMES", "ImageDecodeError", "assess", "assess_array", "lores_to_rgb"]

CHECK_NAMES = (
    "face_count", "face_size", "face_centre", "eye_height", "roll", "yaw", "exposure", "highlights",
    "illumination", "sharpness", "eyes_visible", "eyes_open", "mouth_closed", "background_colour",
    "background_uniformity", "clothing",
)


def lores_to_rgb(frame: np.ndarray, fmt: str) -> np.ndarray:
    """A picamera2 array in libcamera format ``fmt`` as RGB (picamera2's names are byte-order reversed:
    "BGR888" arrays are [R, G, B], "RGB888" arrays are [B, G, R]). On a Pi 4 ``lores`` must be YUV420."""
    if fmt == "YUV420":
        return cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420)
    if fmt == "YVU420":
        return cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_YV12)
    if fmt in ("BGR888", "XBGR8888"):
        return np.ascontiguousarray(frame[..., :3])
    if fmt in ("RGB888", "XRGB8888"):
        return np.ascontiguousarray(frame[..., 2::-1])
    raise ValueError(f"unsupported lores format {fmt!r}")


def assess(jpeg: bytes, cfg: QcConfig | None = None, spec: PhotoSpec | None = None,
           detector: Detector | None = None) -> QcReport:
    """QC of one JPEG shot. With ``spec``, also checks that a compliant derivative can be cut.

    The JPEG is decoded once, at the smallest DCT scale at least ``analysis_min_width`` wide (1/4 for a
    12 MP frame). With ``spec`` it is decoded one scale finer and halved, and the decode is kept in the
    report so that ``make_derivative`` can cut the 480x640 crop from it without decoding again.
    """
    t0 = time.perf_counter()
    cfg = cfg or QcConfig()
    full = jpeg_size(jpeg)
    denom = denom_for(full[0], cfg.analysis_min_width)
    if spec is not None and denom > 1:
        src = decode(jpeg, denom // 2, full)
        h, w = src.rgb.shape[:2]
        rgb = cv2.resize(src.rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    else:
        src = decode(jpeg, denom, full)
        rgb = src.rgb
    return _run(rgb, full, jpeg, src, cfg, spec, detector, t0)


def assess_array(rgb_small: np.ndarray, full_jpeg: bytes | None = None, cfg: QcConfig | None = None,
                 spec: PhotoSpec | None = None, detector: Detector | None = None,
                 full_size: tuple[int, int] | None = None) -> QcReport:
    """QC of a small RGB frame of the same field of view as the still (picamera2 ``lores``).

    ``full_jpeg``, if given, supplies the full frame size and, only when the face is too small in the
    small frame, a reduced-scale decode for the sharpness check. ``full_size`` gives the full frame size
    when no JPEG is passed (for the derivative-feasibility check). A frame that is not H x W x 3 uint8, or
    a JPEG that is not complete, raises ImageDecodeError.
    """
    t0 = time.perf_counter()
    cfg = cfg or QcConfig()
    rgb = check_rgb(rgb_small)
    if full_jpeg is not None:
        full_size = jpeg_size(full_jpeg)
    return _run(rgb, full_size or (rgb.shape[1], rgb.shape[0]), full_jpeg, None, cfg, spec, detector, t0)


def _sharp_source(rgb: np.ndarray, fw: float, jpeg: bytes | None, src: Decoded | None, full: tuple[int, int],
                  cfg: QcConfig) -> tuple[np.ndarray, float] | None:
    """A larger decode of the frame when the face is smaller than the sharpness scale here."""
    if fw >= cfg.sharpness_face_px or full[0] <= rgb.shape[1]:
        return None
    want = rgb.shape[1] * cfg.sharpness_face_px / fw
    if src is not None and src.rgb.shape[1] > rgb.shape[1] and src.rgb.shape[1] >= min(want, full[0]):
        return src.rgb, src.rgb.shape[1] / rgb.shape[1]
    if jpeg is None:
        return None
    big = decode(jpeg, denom_for(full[0], min(full[0], math.ceil(want))), full).rgb
    return big, big.shape[1] / rgb.shape[1]


def _run(rgb: np.ndarray, full: tuple[int, int], jpeg: bytes | None, src: Decoded | None, cfg: QcConfig,
         spec: PhotoSpec | None, detector: Detector | None, t0: float) -> QcReport:
    det = detector or default_detector(cfg.detection_min_confidence)
    h, w = rgb.shape[:2]
    faces = det.faces(rgb)
    lm = det.landmarks(rgb, faces[0]) if faces else None
    results = [ck.face_count(faces, lm, cfg)]
    geometry = None
    if lm is None:
        results += [ck.not_measured(n) for n in CHECK_NAMES[1:]]
        if spec is not None:
            results.append(CheckResult("crop", "fail", None, "compliant derivative possible", "no_face"))
    else:
        sc = ck.Scene(rgb, faces[0], lm, cfg, _sharp_source(rgb, lm.face_width, jpeg, src, full, cfg))
        visible = ck.eyes_visible(sc, cfg)
        results += [
            ck.face_size(sc, cfg), ck.face_centre(sc, cfg), ck.eye_height(sc, cfg), ck.roll(sc, cfg),
            ck.yaw(sc, cfg), ck.exposure(sc, cfg), ck.highlights(sc, cfg), ck.illumination(sc, cfg),
            ck.sharpness(sc, cfg), visible, ck.eyes_open(sc, cfg, visible), ck.mouth_closed(sc, cfg),
            ck.background_colour(sc, cfg), ck.background_uniformity(sc, cfg), ck.clothing(sc, cfg),
        ]
        top = ck.head_top(sc)
        x0, y0, x1, y1 = faces[0].box
        geometry = FaceGeometry(
            box=(x0 / w, y0 / h, x1 / w, y1 / h),
            right_eye=(lm.right_eye[0] / w, lm.right_eye[1] / h),
            left_eye=(lm.left_eye[0] / w, lm.left_eye[1] / h),
            face_width=sc.fw / w, centre_x=sc.cx / w, chin_y=lm.chin[1] / h,
            head_top_y=None if top is None else top / h,
            roll_deg=ck.roll_deg(lm), yaw_deg=ck.yaw_deg(lm),
        )
        if spec is not None:
            results.append(_crop_check(geometry, full, spec))
    elapsed = (time.perf_counter() - t0) * 1000
    return QcReport(verdict_of(results), results, geometry, full, (w, h), elapsed, src)


def _crop_check(face: FaceGeometry, full: tuple[int, int], spec: PhotoSpec) -> CheckResult:
    threshold = "compliant derivative possible"
    try:
        plan = plan_crop(face, full, spec)
    except DerivativeError as e:
        return CheckResult("crop", "fail", None, threshold, e.reason)
    return CheckResult("crop", "pass", plan.face_width_px, threshold, "ok")
