"""The diploma-spec derivative: crop the full-resolution original around the face, resize, encode.

The original is never altered. The crop is a pure scale-and-translate (the collection standard forbids
rotating or mirroring the photo), solved so that eye line, head top and face width all land inside the
PhotoSpec ranges; then the JPEG quality is searched so the file size lands in the configured range.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .config import PhotoSpec
from .decode import SCALES, Decoded, ImageDecodeError, decode, jpeg_size
from .report import FaceGeometry, QcReport


class DerivativeError(ValueError):
    """No compliant derivative can be made from this frame. ``reason`` is a stable short code:
    no_face, head_top_not_found, head_proportions, too_near_top, too_near_bottom, too_near_left,
    too_near_right, face_too_small, file_too_large, file_too_small, undecodable, frame_mismatch."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CropPlan:
    """Crop box in full-frame pixels and where the features land in the output (output pixels)."""

    box: tuple[float, float, float, float]
    scale: float  # output px per source px
    eyes_px: float
    head_top_px: float
    face_width_px: float
    centre_px: float


def _interval(lo: float, hi: float) -> tuple[float, float] | None:
    return (lo, hi) if lo <= hi + 1e-9 else None


def plan_crop(face: FaceGeometry, frame_size: tuple[int, int], spec: PhotoSpec) -> CropPlan:
    """Solve the crop for a face in a frame of ``frame_size`` px, or raise DerivativeError."""
    if face.head_top_y is None:
        raise DerivativeError("head_top_not_found", "top of the head not found (cut off or no contrast)")
    W, H = frame_size
    out_w, out_h = spec.width_px, spec.height_px
    fw, cx = face.face_width * W, face.centre_x * W
    ey, top = face.eye_mid[1] * H, face.head_top_y * H
    d = ey - top  # source px from head top to eye line
    tol = spec.max_centre_offset_px
    e0, e1 = spec.eyes_from_top_px
    h0, h1 = spec.head_top_from_top_px
    reasons: list[str] = []
    best: tuple[float, CropPlan] | None = None
    for fw_out in range(spec.face_width_px[0], spec.face_width_px[1] + 1):
        s = fw_out / fw
        if out_w / s < out_w * spec.min_source_scale:
            reasons.append("face_too_small")
            continue
        proportions = _interval(max(e0, h0 + s * d), min(e1, h1 + s * d))
        if proportions is None:
            reasons.append("head_proportions")
            continue
        # eye line in the output such that the crop stays inside the frame vertically
        eyes = _interval(max(proportions[0], out_h - s * (H - ey)), min(proportions[1], s * ey))
        if eyes is None:
            reasons.append("too_near_top" if s * ey < proportions[0] else "too_near_bottom")
            continue
        # face centre in the output such that the crop stays inside horizontally
        centre = _interval(max(out_w / 2 - tol, out_w - s * (W - cx)), min(out_w / 2 + tol, s * cx))
        if centre is None:
            reasons.append("too_near_left" if s * cx < out_w / 2 - tol else "too_near_right")
            continue
        # Each figure's distance from its target, in units of its allowed half-range; the eye line that
        # minimises the sum of squares for this face width, clipped to what is feasible.
        we, wt = 1 / ((e1 - e0) / 2) ** 2, 1 / ((h1 - h0) / 2) ** 2
        ideal = (we * spec.target_eyes_from_top_px + wt * (spec.target_head_top_px + s * d)) / (we + wt)
        eye_out = min(max(ideal, eyes[0]), eyes[1])
        top_out = eye_out - s * d
        f0, f1 = spec.face_width_px
        cost = (we * (eye_out - spec.target_eyes_from_top_px) ** 2 + wt * (top_out - spec.target_head_top_px) ** 2
                + ((fw_out - spec.target_face_width_px) / ((f1 - f0) / 2)) ** 2)
        if best is None or cost < best[0]:
            c_out = min(max(out_w / 2, centre[0]), centre[1])
            x0, y0 = cx - c_out / s, ey - eye_out / s
            plan = CropPlan((x0, y0, x0 + out_w / s, y0 + out_h / s), s, eye_out, top_out, fw_out, c_out)
            best = (cost, plan)
    if best is not None:
        return best[1]
    reason = Counter(reasons).most_common(1)[0][0]
    raise DerivativeError(reason, f"no face width in {spec.face_width_px} px gives a crop inside the frame")


def _encode(img: Image.Image, spec: PhotoSpec) -> bytes:
    """The largest JPEG quality whose file fits under the maximum size (4:2:0, else 4:4:4 if 4:2:0 is too small)."""
    lo_size, hi_size = spec.file_size_bytes
    made: dict[tuple[int, int], bytes] = {}

    def enc(q: int, subsampling: int) -> bytes:
        if (q, subsampling) not in made:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=q, subsampling=subsampling, dpi=(spec.dpi, spec.dpi))
            made[q, subsampling] = buf.getvalue()
        return made[q, subsampling]

    best = b""
    for subsampling in (2, 0):
        q = _largest_fitting(lambda q, ss=subsampling: len(enc(q, ss)), spec.jpeg_quality_min,
                             spec.jpeg_quality_max, hi_size)
        if q is None:  # even the lowest quality is too large
            if subsampling == 2:
                raise DerivativeError("file_too_large", f"> {hi_size} bytes at quality {spec.jpeg_quality_min}")
            break
        best = enc(q, subsampling)
        if len(best) >= lo_size:
            return best
    raise DerivativeError("file_too_small", f"{len(best)} < {lo_size} bytes even at quality {spec.jpeg_quality_max}")


_LOG_SIZE_PER_Q = 0.025  # typical d ln(file size) / d quality near q 75 (libjpeg, 480x640 portraits)


def _largest_fitting(size: Callable[[int], int], lo: int, hi: int, limit: int) -> int | None:
    """The largest q in [lo, hi] with size(q) <= limit, or None if none fits; size must grow with q.

    A secant search on ln(size) takes two or three encodes where bisection of 60..95 takes six; every probe
    narrows the bracket, and after four probes it bisects, so it ends in at most a few more on any input.
    """
    fit, over = lo - 1, hi + 1  # largest q known to fit, smallest q known not to
    q, last, probes = (lo + hi + 1) // 2, None, 0
    while True:
        n = size(q)
        probes += 1
        if n <= limit:
            fit = q
        else:
            over = q
        if over - fit <= 1:
            return fit if fit >= lo else None
        ln = math.log(max(n, 1))
        slope = _LOG_SIZE_PER_Q
        if last is not None and (ln - last[1]) / (q - last[0]) > 0:
            slope = (ln - last[1]) / (q - last[0])
        last = (q, ln)
        guess = math.floor(q + (math.log(limit) - ln) / slope) if probes < 4 else (fit + over) // 2
        q = min(over - 1, max(fit + 1, guess))


def make_derivative(jpeg: bytes, report: QcReport, spec: PhotoSpec) -> bytes:
    """The diploma-spec JPEG cut from the full-resolution ``jpeg`` using the face found by QC.

    The crop is cut from the cheapest JPEG decode scale that still has ``min_source_scale`` source pixels per
    output pixel (reusing the decode QC made when it is fine enough), so the time does not grow when the
    face, and so the crop, is small. Never raises anything but DerivativeError.
    """
    if report.face is None:
        raise DerivativeError("no_face", "QC found no face")
    try:
        full = jpeg_size(jpeg)
    except ImageDecodeError as e:
        raise DerivativeError("undecodable", str(e)) from e
    if report.frame_size != full:
        raise DerivativeError("frame_mismatch", f"QC judged a {report.frame_size} frame, the JPEG is {full}")
    plan = plan_crop(report.face, full, spec)
    x0, _, x1, _ = plan.box
    need = spec.width_px * spec.min_source_scale  # source px across the crop at the decode scale
    denom = next((d for d in SCALES if (x1 - x0) / d >= need - 1e-6), 1)
    src = report.source if isinstance(report.source, Decoded) and report.source.full == full else None
    if src is None or src.denom > denom:
        try:
            src = decode(jpeg, denom, full)
        except ImageDecodeError as e:
            raise DerivativeError("undecodable", str(e)) from e
    out = _cut(src, plan.box, spec)
    return _encode(Image.fromarray(out), spec)


def _cut(src: Decoded, box: tuple[float, float, float, float], spec: PhotoSpec) -> np.ndarray:
    """Scale-and-translate the full-frame ``box`` of ``src`` to the output size.

    A Gaussian pre-filter sized to the reduction (sigma = (1/scale - 1) / 2, as scikit-image's rescale) then one
    bilinear warp: the anti-aliasing of an area filter at about a fifth of its cost for a fractional scale.
    """
    h, w = src.rgb.shape[:2]
    kx, ky = w / src.full[0], h / src.full[1]
    x0, y0, x1, y1 = box[0] * kx, box[1] * ky, box[2] * kx, box[3] * ky
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise DerivativeError("face_too_small", "crop is empty at the decode scale")
    sx, sy = spec.width_px / (x1 - x0), spec.height_px / (y1 - y0)
    sigma_x, sigma_y = max(0.0, (1 / sx - 1) / 2), max(0.0, (1 / sy - 1) / 2)
    pad = int(np.ceil(3 * max(sigma_x, sigma_y))) + 2  # the filter's support plus the bilinear neighbour
    ix0, iy0 = max(0, int(np.floor(x0)) - pad), max(0, int(np.floor(y0)) - pad)
    ix1, iy1 = min(w, int(np.ceil(x1)) + pad), min(h, int(np.ceil(y1)) + pad)
    crop = src.rgb[iy0:iy1, ix0:ix1]
    if sigma_x > 0.05 or sigma_y > 0.05:
        crop = cv2.GaussianBlur(crop, (0, 0), sigmaX=max(sigma_x, 0.05), sigmaY=max(sigma_y, 0.05),
                                borderType=cv2.BORDER_REPLICATE)
    # output pixel u's centre is source x0 + (u + 0.5) / sx - 0.5 (pixel centres at integers)
    m = np.array([[1 / sx, 0, x0 - ix0 + 0.5 / sx - 0.5], [0, 1 / sy, y0 - iy0 + 0.5 / sy - 0.5]], np.float64)
    return cv2.warpAffine(crop, m, (spec.width_px, spec.height_px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
