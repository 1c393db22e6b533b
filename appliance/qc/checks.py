"""The individual checks. Each takes a :class:`Scene` (the analysed image and the main face's landmarks)
and the config, measures one value and judges it. Regions are placed relative to the face width ``fw``
(cheek to cheek) so the checks do not depend on the analysed resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from .config import QcConfig
from .detector import FaceBox, FaceLandmarks
from .report import CheckResult

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# --- judging helpers -------------------------------------------------------------------------------
def above(name: str, value: float, warn: float, fail: float, code: str, unit: str = "") -> CheckResult:
    """Larger is worse: pass <= warn < warn-zone <= fail < fail."""
    result = "fail" if value > fail else "warn" if value > warn else "pass"
    return CheckResult(name, result, value, f"warn > {warn}{unit}, fail > {fail}{unit}",
                       "ok" if result == "pass" else code)


def below(name: str, value: float, warn: float, fail: float, code: str) -> CheckResult:
    """Smaller is worse."""
    result = "fail" if value < fail else "warn" if value < warn else "pass"
    return CheckResult(name, result, value, f"warn < {warn}, fail < {fail}", "ok" if result == "pass" else code)


def within(name: str, value: float, ok: tuple[float, float], limit: tuple[float, float],
           low_code: str, high_code: str) -> CheckResult:
    """Pass inside ``ok``, warn inside ``limit``, fail outside."""
    if ok[0] <= value <= ok[1]:
        result = "pass"
    elif limit[0] <= value <= limit[1]:
        result = "warn"
    else:
        result = "fail"
    code = "ok" if result == "pass" else low_code if value < ok[0] else high_code
    return CheckResult(name, result, value, f"pass {ok[0]}..{ok[1]}, warn {limit[0]}..{limit[1]}", code)


def not_measured(name: str, code: str = "not_measured") -> CheckResult:
    return CheckResult(name, "warn", None, "", code)


# --- colour helpers --------------------------------------------------------------------------------
def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIE Lab float32 (L 0..100)."""
    flat = rgb.reshape(-1, 1, 3).astype(np.float32) / 255
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(rgb.shape)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 colour difference."""
    return np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32), axis=-1)


# --- the scene -------------------------------------------------------------------------------------
@dataclass
class Scene:
    """The analysed image and the main face. ``sharp_source`` optionally supplies a larger decode of the
    same frame (and its scale relative to ``rgb``) for the sharpness check when the face is small."""

    rgb: np.ndarray
    face: FaceBox
    lm: FaceLandmarks
    cfg: QcConfig = field(default_factory=QcConfig)
    sharp_source: tuple[np.ndarray, float] | None = None  # (image, scale relative to rgb)

    @property
    def h(self) -> int:
        return self.rgb.shape[0]

    @property
    def w(self) -> int:
        return self.rgb.shape[1]

    @cached_property
    def fw(self) -> float:
        return max(self.lm.face_width, 1.0)

    @cached_property
    def cx(self) -> float:
        return (self.lm.right_cheek[0] + self.lm.left_cheek[0]) / 2

    @cached_property
    def luma(self) -> np.ndarray:
        return self.rgb.astype(np.float32) @ _LUMA

    @cached_property
    def expected_lab(self) -> np.ndarray:
        """The configured backdrop colour in Lab."""
        return to_lab(np.array(self.cfg.background_rgb, np.uint8).reshape(1, 1, 3)).reshape(3)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        """Slices of a box in pixels, clipped to the frame; None if almost nothing is left."""
        ix0, iy0 = max(0, round(x0)), max(0, round(y0))
        ix1, iy1 = min(self.w, round(x1)), min(self.h, round(y1))
        if ix1 - ix0 < 3 or iy1 - iy0 < 3:
            return None
        return slice(iy0, iy1), slice(ix0, ix1)

    def patch(self, centre: tuple[float, float], half: float) -> np.ndarray:
        s = self.box(centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
        return self.luma[s] if s else np.empty(0, np.float32)

    def polygon_mask(self, pts: tuple[tuple[float, float], ...]) -> tuple[tuple[slice, slice], np.ndarray] | None:
        arr = np.array(pts, np.float32)
        s = self.box(arr[:, 0].min() - 1, arr[:, 1].min() - 1, arr[:, 0].max() + 2, arr[:, 1].max() + 2)
        if s is None:
            return None
        mask = np.zeros((s[0].stop - s[0].start, s[1].stop - s[1].start), np.uint8)
        shifted = np.round((arr - [s[1].start, s[0].start]) * 4).astype(np.int32)
        cv2.fillPoly(mask, [shifted], 1, lineType=cv2.LINE_8, shift=2)
        return s, mask.astype(bool)

    @cached_property
    def face_mask(self) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """The face outline as a mask over its bounding box (several checks use it)."""
        return self.polygon_mask(self.lm.face_outline)

    @cached_property
    def face_luma(self) -> np.ndarray | None:
        """Luma of the skin inside the face outline, eyes and mouth excluded (they are dark in everyone)."""
        return _face_luma(self)

    @cached_property
    def person_mask(self) -> np.ndarray:
        """Where the sitter may be, generously (True = maybe person), on a grid of every ``_BG_STEP``-th pixel:
        the head and hair as an ellipse around the face, the neck, and shoulders widening down to the
        bottom edge. Everything else in the frame is backdrop."""
        st = _BG_STEP
        gh, gw = (self.h + st - 1) // st, (self.w + st - 1) // st
        mask = np.zeros((gh, gw), np.uint8)
        fw, cx = self.fw / st, self.cx / st
        top, chin = self.lm.forehead[1] / st, self.lm.chin[1] / st
        head_cy = (top + chin) / 2 - 0.15 * fw
        axes = (round(0.95 * fw), round((chin - top) / 2 + 0.75 * fw))
        cv2.ellipse(mask, (round(cx), round(head_cy)), axes, math.degrees(roll_rad(self.lm)), 0, 360, 1, -1)
        body = np.array([[cx - 0.55 * fw, chin - 0.2 * fw], [cx + 0.55 * fw, chin - 0.2 * fw],
                         [cx + 1.9 * fw, chin + 0.8 * fw], [cx + 2.3 * fw, gh + fw],
                         [cx - 2.3 * fw, gh + fw], [cx - 1.9 * fw, chin + 0.8 * fw]])
        cv2.fillPoly(mask, [np.round(body).astype(np.int32)], 1)
        return mask.astype(bool)

    @cached_property
    def backdrop_lab(self) -> np.ndarray:
        """Lab pixels of the whole backdrop area (the frame minus where the sitter may be), subsampled."""
        grid = self.rgb[::_BG_STEP, ::_BG_STEP]
        return to_lab(grid[~self.person_mask]).reshape(-1, 3)

    @cached_property
    def background_lab(self) -> np.ndarray | None:
        """Median backdrop colour as measured (None when too little of the backdrop is visible)."""
        px = self.backdrop_lab
        return np.median(px, axis=0) if len(px) >= 50 else None


_BG_STEP = 4  # backdrop statistics on every 4th pixel of the analysed frame


def roll_rad(lm: FaceLandmarks) -> float:
    (rx, ry), (lx, ly) = lm.right_eye, lm.left_eye
    return math.atan2(ly - ry, lx - rx)


# --- checks ----------------------------------------------------------------------------------------
def face_count(faces: list[FaceBox], lm: FaceLandmarks | None, cfg: QcConfig) -> CheckResult:
    threshold = f"exactly 1 face >= {cfg.other_face_min_ratio} x main face width"
    if not faces:
        return CheckResult("face_count", "fail", 0.0, threshold, "no_face")
    main = faces[0].width
    sitters = [f for f in faces if f.width >= cfg.other_face_min_ratio * main]
    if len(sitters) > 1:
        return CheckResult("face_count", "fail", float(len(sitters)), threshold, "multiple_faces")
    if lm is None:
        return CheckResult("face_count", "fail", 1.0, threshold, "landmarks_not_found")
    if len(faces) > 1:
        return CheckResult("face_count", "warn", 1.0, threshold, "background_face")
    return CheckResult("face_count", "pass", 1.0, threshold, "ok")


def face_centre(sc: Scene, cfg: QcConfig) -> CheckResult:
    off = abs(sc.cx / sc.w - 0.5)
    return above("face_centre", off, cfg.centre_offset_warn, cfg.centre_offset_fail, "face_off_centre")


def eye_height(sc: Scene, cfg: QcConfig) -> CheckResult:
    return within("eye_height", sc.lm.eye_mid[1] / sc.h, cfg.eye_height_pass, cfg.eye_height_fail,
                  "eyes_too_high", "eyes_too_low")


def face_size(sc: Scene, cfg: QcConfig) -> CheckResult:
    return within("face_size", sc.fw / sc.w, cfg.face_size_pass, cfg.face_size_fail,
                  "face_too_small", "face_too_large")


def roll_deg(lm: FaceLandmarks) -> float:
    return math.degrees(roll_rad(lm))


def yaw_deg(lm: FaceLandmarks) -> float:
    """Head turn from the cheek points' depth difference (mesh z is on the x scale)."""
    dx = math.hypot(lm.left_cheek[0] - lm.right_cheek[0], lm.left_cheek[1] - lm.right_cheek[1])
    return math.degrees(math.atan2(lm.left_cheek_z - lm.right_cheek_z, dx))


def roll(sc: Scene, cfg: QcConfig) -> CheckResult:
    return above("roll", abs(roll_deg(sc.lm)), cfg.roll_warn_deg, cfg.roll_fail_deg, "head_tilted", " deg")


def yaw(sc: Scene, cfg: QcConfig) -> CheckResult:
    return above("yaw", abs(yaw_deg(sc.lm)), cfg.yaw_warn_deg, cfg.yaw_fail_deg, "head_turned", " deg")


def _face_luma(sc: Scene) -> np.ndarray | None:
    pm = sc.face_mask
    if pm is None:
        return None
    s, mask = pm
    for poly in (sc.lm.right_eye_contour, sc.lm.left_eye_contour):
        arr = np.array(poly, np.float32) - [s[1].start, s[0].start]
        c = arr.mean(0)
        grown = np.round((c + (arr - c) * 1.6) * 4).astype(np.int32)  # the eye and its lashes
        m8 = mask.astype(np.uint8)
        cv2.fillPoly(m8, [grown], 0, shift=2)
        mask = m8.astype(bool)
    px = sc.luma[s][mask]
    return px if px.size >= 50 else None


def exposure(sc: Scene, cfg: QcConfig) -> CheckResult:
    """90th percentile of face-skin luma: the lit side of the face, which reaches a similar level for light
    and dark skin under the same light, and drops with the light (a dark face fails, a dark-skinned one
    correctly lit does not)."""
    px = sc.face_luma
    if px is None:
        return not_measured("exposure")
    return within("exposure", float(np.percentile(px, 90)), cfg.face_luma_pass, cfg.face_luma_fail,
                  "face_underexposed", "face_overexposed")


def highlights(sc: Scene, cfg: QcConfig) -> CheckResult:
    pm = sc.face_mask
    if pm is None:
        return not_measured("highlights")
    s, mask = pm
    clipped = (sc.rgb[s].min(axis=2) >= cfg.clip_level)[mask]  # all channels: white glare
    return above("highlights", float(clipped.mean()), cfg.clipped_warn, cfg.clipped_fail, "clipped_highlights")


def illumination_value(sc: Scene) -> float | None:
    """|L - R| / mean of the median luma of two cheek patches (0.2 face widths square, on the mesh's cheek
    points, well inside the face so a slightly turned or tilted face keeps both on skin)."""
    half = 0.1 * sc.fw
    r, lft = sc.patch(sc.lm.right_cheek_patch, half), sc.patch(sc.lm.left_cheek_patch, half)
    if r.size < 4 or lft.size < 4:
        return None
    a, b = float(np.median(r)), float(np.median(lft))
    return abs(a - b) / max((a + b) / 2, 1.0)


def illumination(sc: Scene, cfg: QcConfig) -> CheckResult:
    v = illumination_value(sc)
    if v is None:
        return not_measured("illumination")
    return above("illumination", v, cfg.illumination_warn, cfg.illumination_fail, "uneven_face_light")


def sharpness_value(gray: np.ndarray) -> float:
    """RMS of the Laplacian over the RMS of the gradient of a face image normalised to a fixed width:
    a ratio of fine to coarse detail, ~independent of exposure and contrast."""
    g = cv2.GaussianBlur(gray, (0, 0), 0.6)  # tame sensor noise and JPEG blocking
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=1)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8
    grad = math.sqrt(float(np.mean(gx * gx + gy * gy)))
    return math.sqrt(float(np.mean(lap * lap))) / max(grad, 1e-3)


def sharpness(sc: Scene, cfg: QcConfig) -> CheckResult:
    lm = sc.lm
    img, k = sc.sharp_source if sc.sharp_source else (sc.rgb, 1.0)
    x0, x1 = (lm.right_cheek[0] + 0.12 * sc.fw) * k, (lm.left_cheek[0] - 0.12 * sc.fw) * k
    y0, y1 = (lm.forehead[1] + 0.05 * sc.fw) * k, (lm.chin[1] - 0.1 * sc.fw) * k
    ix0, iy0, ix1, iy1 = max(0, int(x0)), max(0, int(y0)), min(img.shape[1], int(x1)), min(img.shape[0], int(y1))
    if ix1 - ix0 < 8 or iy1 - iy0 < 8:
        return not_measured("sharpness")
    crop = img[iy0:iy1, ix0:ix1].astype(np.float32) @ _LUMA
    target_w = cfg.sharpness_face_px * (1 - 0.24)  # the crop is the face minus 0.12 fw per side
    scale = target_w / crop.shape[1]
    size = (max(8, round(crop.shape[1] * scale)), max(8, round(crop.shape[0] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    value = sharpness_value(cv2.resize(crop, size, interpolation=interp))
    res = below("sharpness", value, cfg.sharpness_warn, cfg.sharpness_fail, "face_blurred")
    if scale > 1.33 and res.result != "pass":  # the face is too small here for the measure to mean much
        return CheckResult("sharpness", "warn", value, res.threshold, "face_too_small_to_judge")
    return res


def eye_openness(lm: FaceLandmarks) -> float:
    def ear(lids: tuple[tuple[float, float], ...]) -> float:
        (ox, oy), (ix, iy), (ux, uy), (lx, ly) = lids
        return math.hypot(ux - lx, uy - ly) / max(math.hypot(ox - ix, oy - iy), 1e-3)

    return min(ear(lm.right_lids), ear(lm.left_lids))


def eye_visibility(sc: Scene) -> float | None:
    face = sc.face_luma
    if face is None:
        return None
    skin = max(float(np.median(face)), 1.0)
    scores = []
    for contour in (sc.lm.right_eye_contour, sc.lm.left_eye_contour):
        pm = sc.polygon_mask(contour)
        if pm is None:
            return None
        s, mask = pm
        px = sc.luma[s][mask]
        if px.size < 6:
            return None
        p10, p90 = np.percentile(px, (10, 90))
        scores.append(float(p90 - p10) / skin)
    return min(scores)


def eyes_visible(sc: Scene, cfg: QcConfig) -> CheckResult:
    v = eye_visibility(sc)
    if v is None:
        return not_measured("eyes_visible")
    return below("eyes_visible", v, cfg.eye_visible_warn, cfg.eye_visible_fail, "eyes_not_visible")


def eyes_open(sc: Scene, cfg: QcConfig, visible: CheckResult) -> CheckResult:
    if visible.result == "fail":  # openness cannot be judged on eyes that cannot be seen
        return not_measured("eyes_open", "eyes_not_visible")
    return below("eyes_open", eye_openness(sc.lm), cfg.eye_open_warn, cfg.eye_open_fail, "eyes_closed")


def mouth_openness(lm: FaceLandmarks) -> float:
    """Gap between the inner lips over the mouth width (mouth aspect ratio): ~0 closed, > 0.1 apart."""
    (rx, ry), (lx, ly), (ux, uy), (dx, dy) = lm.mouth
    return math.hypot(ux - dx, uy - dy) / max(math.hypot(lx - rx, ly - ry), 1e-3)


def mouth_closed(sc: Scene, cfg: QcConfig) -> CheckResult:
    return above("mouth_closed", mouth_openness(sc.lm), cfg.mouth_open_warn, cfg.mouth_open_fail, "mouth_open")


def background_colour(sc: Scene, cfg: QcConfig) -> CheckResult:
    if sc.background_lab is None:
        return not_measured("background_colour")
    de = float(delta_e(sc.background_lab, sc.expected_lab))
    return above("background_colour", de, cfg.background_delta_e_warn, cfg.background_delta_e_fail,
                 "background_wrong_colour", " dE")


def background_uniformity(sc: Scene, cfg: QcConfig) -> CheckResult:
    """Share of the whole backdrop area (the frame minus the sitter's silhouette) that differs from the
    backdrop's median colour by more than ``background_outlier_delta_e``: objects, other people, shadows,
    strong gradients."""
    px = sc.backdrop_lab
    if len(px) < 50:
        return not_measured("background_uniformity")
    off = float((delta_e(px, np.median(px, axis=0)) > cfg.background_outlier_delta_e).mean())
    return above("background_uniformity", off, cfg.background_spread_warn, cfg.background_spread_fail,
                 "background_not_uniform")


def clothing_region(sc: Scene) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The upper body below the neck: a band from 0.45 to 1.5 face widths under the chin, 1.0 face width
    either side of the face centre, without the neck."""
    fw, cx, chin = sc.fw, sc.cx, sc.lm.chin[1]
    s = sc.box(cx - 1.0 * fw, chin + 0.45 * fw, cx + 1.0 * fw, chin + 1.5 * fw)
    if s is None:
        return None
    ys = np.arange(s[0].start, s[0].stop)[:, None]
    xs = np.arange(s[1].start, s[1].stop)[None, :]
    neck = (np.abs(xs - cx) < 0.4 * fw) & (ys < chin + 0.7 * fw)
    return s, ~neck


def clothing(sc: Scene, cfg: QcConfig) -> CheckResult:
    """Share of the upper body whose colour is within ``clothing_like_delta_e`` of the configured backdrop
    colour: a top (or a collar, or a shirt under a jacket) that would merge into the backdrop."""
    region = clothing_region(sc)
    if region is None:
        return not_measured("clothing", "clothing_not_visible")
    s, keep = region
    lab = to_lab(sc.rgb[s][::2, ::2])[keep[::2, ::2]]
    if len(lab) < 50:
        return not_measured("clothing", "clothing_not_visible")
    like = float((delta_e(lab, sc.expected_lab) < cfg.clothing_like_delta_e).mean())
    return above("clothing", like, cfg.clothing_like_warn, cfg.clothing_like_fail, "clothing_like_background")


def head_top(sc: Scene, min_delta_e: float = 15.0, min_fraction: float = 0.25) -> float | None:
    """Top of the hair outline in pixels: scan up from the forehead in a band over the face centre until
    rows stop differing from the background colour. None when no background reference or the head
    reaches the top edge."""
    bg = sc.background_lab
    if bg is None:
        return None
    s = sc.box(sc.cx - 0.25 * sc.fw, 0, sc.cx + 0.25 * sc.fw, sc.lm.forehead[1])
    if s is None:
        return None
    lab = to_lab(sc.rgb[s])
    rows = (delta_e(lab, bg) > min_delta_e).mean(axis=1) >= min_fraction
    gap = max(2, round(0.02 * sc.fw))
    top, misses = len(rows) - 1, 0
    for y in range(len(rows) - 1, -1, -1):
        if rows[y]:
            top, misses = y, 0
        else:
            misses += 1
            if misses >= gap:
                return float(top + s[0].start)
    return None  # reached the top edge while still on the head
