"""The individual checks. Each takes a :class:`Scene` (the analysed image and the main face's landmarks)
and the config, measures one value and judges it. Regions are placed relative to the face width ``fw``
(cheek to cheek) so the checks do not depend on the analysed resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

    # Regions around the head (left, right, above) used for the background checks.
    @cached_property
    def background_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """(Lab pixels of the side regions, Lab pixels of all regions incl. above the head)."""
        ey, fw, cx = self.lm.eye_mid[1], self.fw, self.cx
        sides = [self.box(cx - 1.45 * fw, ey - 0.9 * fw, cx - 0.85 * fw, ey + 0.2 * fw),
                 self.box(cx + 0.85 * fw, ey - 0.9 * fw, cx + 1.45 * fw, ey + 0.2 * fw)]
        top = self.box(cx - 0.4 * fw, ey - 1.75 * fw, cx + 0.4 * fw, ey - 1.3 * fw)
        side_px = [to_lab(self.rgb[s]).reshape(-1, 3) for s in sides if s]
        top_px = [to_lab(self.rgb[top]).reshape(-1, 3)] if top else []
        empty = np.empty((0, 3), np.float32)
        side = np.concatenate(side_px) if side_px else empty
        both = np.concatenate(side_px + top_px) if side_px or top_px else empty
        return side, both

    @cached_property
    def background_lab(self) -> np.ndarray | None:
        side, both = self.background_pixels
        px = side if len(side) >= 50 else both
        return np.median(px, axis=0) if len(px) >= 50 else None


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
    (rx, ry), (lx, ly) = lm.right_eye, lm.left_eye
    return math.degrees(math.atan2(ly - ry, lx - rx))


def yaw_deg(lm: FaceLandmarks) -> float:
    """Head turn from the cheek points' depth difference (mesh z is on the x scale)."""
    dx = math.hypot(lm.left_cheek[0] - lm.right_cheek[0], lm.left_cheek[1] - lm.right_cheek[1])
    return math.degrees(math.atan2(lm.left_cheek_z - lm.right_cheek_z, dx))


def roll(sc: Scene, cfg: QcConfig) -> CheckResult:
    return above("roll", abs(roll_deg(sc.lm)), cfg.roll_warn_deg, cfg.roll_fail_deg, "head_tilted", " deg")


def yaw(sc: Scene, cfg: QcConfig) -> CheckResult:
    return above("yaw", abs(yaw_deg(sc.lm)), cfg.yaw_warn_deg, cfg.yaw_fail_deg, "head_turned", " deg")


def _cheeks(sc: Scene) -> tuple[float, float] | None:
    half = 0.07 * sc.fw
    r, lft = sc.patch(sc.lm.right_cheek_patch, half), sc.patch(sc.lm.left_cheek_patch, half)
    if r.size < 4 or lft.size < 4:
        return None
    return float(np.median(r)), float(np.median(lft))


def exposure(sc: Scene, cfg: QcConfig) -> CheckResult:
    cheeks = _cheeks(sc)
    if cheeks is None:
        return not_measured("exposure")
    return within("exposure", (cheeks[0] + cheeks[1]) / 2, cfg.face_luma_pass, cfg.face_luma_fail,
                  "face_underexposed", "face_overexposed")


def highlights(sc: Scene, cfg: QcConfig) -> CheckResult:
    pm = sc.polygon_mask(sc.lm.face_outline)
    if pm is None:
        return not_measured("highlights")
    s, mask = pm
    clipped = (sc.rgb[s].min(axis=2) >= cfg.clip_level)[mask]  # all channels: white glare
    return above("highlights", float(clipped.mean()), cfg.clipped_warn, cfg.clipped_fail, "clipped_highlights")


def illumination(sc: Scene, cfg: QcConfig) -> CheckResult:
    cheeks = _cheeks(sc)
    if cheeks is None:
        return not_measured("illumination")
    r, lft = cheeks
    ratio = abs(r - lft) / max((r + lft) / 2, 1.0)
    return above("illumination", ratio, cfg.illumination_warn, cfg.illumination_fail, "uneven_face_light")


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
    cheeks = _cheeks(sc)
    if cheeks is None:
        return None
    skin = max((cheeks[0] + cheeks[1]) / 2, 1.0)
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


def background_colour(sc: Scene, cfg: QcConfig) -> CheckResult:
    _, both = sc.background_pixels
    if len(both) < 50:
        return not_measured("background_colour")
    expected = to_lab(np.array(cfg.background_rgb, np.uint8).reshape(1, 1, 3)).reshape(3)
    de = float(delta_e(np.median(both, axis=0), expected))
    return above("background_colour", de, cfg.background_delta_e_warn, cfg.background_delta_e_fail,
                 "background_wrong_colour", " dE")


def background_uniformity(sc: Scene, cfg: QcConfig) -> CheckResult:
    _, both = sc.background_pixels
    if len(both) < 50:
        return not_measured("background_uniformity")
    spread = float(np.percentile(delta_e(both, np.median(both, axis=0)), 95))
    return above("background_uniformity", spread, cfg.background_spread_warn, cfg.background_spread_fail,
                 "background_not_uniform", " dE")


def clothing(sc: Scene, cfg: QcConfig) -> CheckResult:
    fw, cx, chin = sc.fw, sc.cx, sc.lm.chin[1]
    regions = [sc.box(cx - 0.9 * fw, chin + 0.35 * fw, cx - 0.35 * fw, chin + 0.8 * fw),
               sc.box(cx + 0.35 * fw, chin + 0.35 * fw, cx + 0.9 * fw, chin + 0.8 * fw)]
    px = [to_lab(sc.rgb[s]).reshape(-1, 3) for s in regions if s]
    if not px or sum(len(p) for p in px) < 50:
        return not_measured("clothing", "clothing_not_visible")
    bg = sc.background_lab
    if bg is None:
        bg = to_lab(np.array(cfg.background_rgb, np.uint8).reshape(1, 1, 3)).reshape(3)
    de = float(delta_e(np.median(np.concatenate(px), axis=0), bg))
    return below("clothing", de, cfg.clothing_delta_e_warn, cfg.clothing_delta_e_fail, "clothing_like_background")


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
