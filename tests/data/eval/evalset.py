"""The QC evaluation set: real photographs of 16 people composited on the kit's backdrop at the kit's framing,
with controlled faults, generated at test time (about 10 s) from ``people/`` and the two bundled sample faces.

    frames()  -> [Frame(name, person, variant, label, must, may, rgb)]   (1014x760 RGB, the 1/4-scale analysis
                 frame of a 4056x3040 shot; judge with assess_array(..., full_size=FULL_SIZE))

Labels (docs/qc.md): ``pass`` (a photo the registry should accept), ``retake`` (must be rejected; ``must`` lists
the checks that must fail) or ``either`` (the rules are ambiguous: a moderate smile, a ~15 degree turn, navy
clothing; left out of the score). ``may`` lists checks whose failure is a second consequence of the same fault.
Every person's own pose in the photograph is labelled in PEOPLE; a fault adds its own reason on top.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from appliance.qc import samples as sm

HERE = Path(__file__).resolve().parent
FULL_SIZE = (4056, 3040)
SIZE = (1014, 760)

# person: (split, base label, checks that must fail as photographed, checks that may fail as photographed)
PEOPLE: dict[str, tuple[str, str, str, str]] = {
    "collins": ("tuned", "either", "", "mouth_closed"),  # smiling with teeth showing
    "hopper": ("tuned", "pass", "", ""),
    "giunchedi": ("held_out", "pass", "", ""),
    "henner": ("tuned", "either", "", "yaw;roll;mouth_closed"),  # smile, head turned ~15 deg
    # ~40 deg turn, speaking
    "paumier": ("held_out", "retake", "yaw", "mouth_closed;illumination;background_uniformity;roll"),
    "guido": ("tuned", "retake", "yaw", "illumination"),  # looking ~35 deg aside
    "maher": ("held_out", "retake", "mouth_closed", ""),  # broad smile, teeth
    "riga": ("tuned", "retake", "yaw", "illumination;mouth_closed;face_count"),  # turned ~25 deg
    "canon": ("tuned", "pass", "", ""),  # clear glasses
    "photographer": ("held_out", "either", "", "mouth_closed;roll;yaw"),  # smile, ~15 deg turn, tilt
    "jesper": ("tuned", "either", "", "mouth_closed"),  # lips slightly parted (speaking)
    "newwave": ("tuned", "retake", "mouth_closed", "crop"),  # grin (and tall hair)
    # tinted glasses, smiling, a small photo
    "anne": ("held_out", "either", "", "eyes_visible;eyes_open;sharpness;mouth_closed;roll;crop"),
    "couple_w": ("tuned", "retake", "face_count",
                 "background_uniformity;background_colour;yaw;mouth_closed;crop;roll;eyes_open;eyes_visible;"
                 "clothing;face_centre;illumination"),
    "couple_m": ("held_out", "retake", "face_count",
                 "background_uniformity;background_colour;yaw;mouth_closed;crop;roll;eyes_open;eyes_visible;"
                 "clothing;face_centre;illumination"),
    "bar_w": ("held_out", "retake", "face_count", "background_uniformity;background_colour;mouth_closed;roll;crop"),
}
# variant: (label, must fail, may fail). "good*" variants keep the person's own label.
VARIANTS: dict[str, tuple[str, str, str]] = {
    "good": ("base", "", ""),
    "good_mirrored": ("base", "", ""),
    "good_white_top": ("base", "", ""),
    "good_roll3": ("base", "", ""),
    "good_clear_glasses": ("base", "", "highlights"),
    "good_darker": ("base", "", ""),  # 0.8 of the exposure
    "good_brighter": ("base", "", ""),  # 1.12 of the exposure
    "good_near": ("base", "", ""),  # face 0.24 of the frame width
    "good_far": ("base", "", ""),  # face 0.16
    "light_blue_top": ("retake", "clothing", ""),
    "navy_top": ("either", "", "clothing"),  # "not blue" vs "clearly different from the backdrop"
    "blurred": ("retake", "sharpness", "eyes_visible"),
    "dark": ("retake", "exposure", "background_colour;eyes_visible;clothing"),
    "overexposed": ("retake", "exposure", "highlights;background_colour;illumination;sharpness;eyes_visible;crop"),
    "off_centre": ("retake", "face_centre", "crop"),
    "too_small": ("retake", "face_size", "eye_height;crop;sharpness;face_count;yaw"),
    "too_large": ("retake", "face_size",
                  "crop;eye_height;clothing;background_uniformity;background_colour;face_count;face_centre"),
    "rolled": ("retake", "roll", "background_uniformity;clothing"),
    "eyes_closed": ("retake", "eyes_open", "eyes_visible"),
    "mouth_open": ("retake", "mouth_closed", ""),
    "sunglasses": ("retake", "eyes_visible", "eyes_open"),
    "cluttered": ("retake", "background_uniformity", "background_colour;clothing;crop"),
    "uneven_backdrop": ("retake", "background_uniformity", "background_colour;crop"),
    "uneven_light": ("retake", "illumination", "background_uniformity;background_colour;exposure;highlights;crop"),
    "two_people": ("retake", "face_count", "background_uniformity;background_colour;crop"),
}


@dataclass(frozen=True)
class Frame:
    name: str
    person: str
    variant: str
    split: str
    label: str
    must: frozenset[str]
    may: frozenset[str]
    rgb: np.ndarray


def _split(s: str) -> frozenset[str]:
    return frozenset(x for x in s.split(";") if x)


@cache
def _people_meta() -> dict:
    return json.loads((HERE / "people" / "people.json").read_text())


@cache
def _person(pid: str) -> tuple[sm._Face, np.ndarray]:
    """The person as the samples module's face record, and its 478 landmark points (x, y)."""
    if pid in ("collins", "hopper"):
        return sm.face_by_name("astronaut" if pid == "collins" else "grace_hopper"), np.empty((0, 2))
    m = _people_meta()[pid]
    d = HERE / "people"
    rgb = np.asarray(Image.open(d / m["file"]).convert("RGB"))
    alpha = np.asarray(Image.open(d / f"{pid}_alpha.png"), np.float32) / 255
    cloth = cv2.GaussianBlur(np.asarray(Image.open(d / f"{pid}_cloth.png"), np.float32) / 255, (0, 0), 1.0)
    pts = np.array(m["points"], np.float64)
    eyes = (tuple(pts[468]), tuple(pts[473]))
    fw = float(np.hypot(*(pts[454] - pts[234])))
    return sm._Face(rgb, alpha, cloth, eyes, fw), pts


def _recolour(rgb: np.ndarray, face: sm._Face, colour: tuple[int, int, int]) -> np.ndarray:
    """The whole garment (collar included) recoloured, keeping its shading."""
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    sel = face.cloth > 0.5
    med = float(np.median(y[sel])) if sel.any() else 128.0
    shade = np.clip(0.5 + 0.5 * y / max(med, 1.0), 0.6, 1.3)[..., None]
    m = face.cloth[..., None]
    return np.clip(rgb * (1 - m) + np.array(colour, np.float32) * shade * m, 0, 255).astype(np.uint8)


def _close_eyes(rgb: np.ndarray, pts: np.ndarray, fw: float) -> np.ndarray:
    """Lids shut: each eye opening painted over with the skin just above it, and a dark lash line."""
    out = rgb.copy()
    for contour in ((33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
                    (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)):
        poly = pts[list(contour)]
        c = poly.mean(0)
        big = c + (poly - c) * [1.25, 1.7]
        mask = np.zeros(rgb.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(big).astype(np.int32)], 255)
        out = cv2.inpaint(out, mask, max(2.0, 0.05 * fw), cv2.INPAINT_TELEA)  # lid skin over the opening
        mid = (pts[list(contour[:9])] + pts[[contour[0], *contour[15:8:-1], contour[8]]]) / 2
        cv2.polylines(out, [np.round(mid).astype(np.int32)], False, (50, 38, 36), max(1, round(0.015 * fw)),
                      cv2.LINE_AA)
    return out


def _open_mouth(face: sm._Face, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jaw dropped by 0.12 face widths below the lip line (a smooth warp) and a dark mouth opening."""
    fw = face.face_width
    (rx, ry), (lx, ly), (_, uy), (_, dy) = pts[78], pts[308], pts[13], pts[14]
    cx, my = (rx + lx) / 2, (uy + dy) / 2
    drop = 0.12 * fw
    h, w = face.rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wx = np.clip(1 - np.abs(xx - cx) / (0.6 * fw), 0, 1)
    wy = np.clip((yy - my) / (0.08 * fw), 0, 1) * np.clip((my + 1.0 * fw - yy) / (0.4 * fw), 0, 1)
    map_y = (yy - drop * wx * wy).astype(np.float32)
    rgb = cv2.remap(face.rgb, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.remap(face.alpha, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mw = 0.42 * math.hypot(lx - rx, ly - ry)
    cv2.ellipse(rgb, (round(cx), round(my + drop * 0.5)), (round(mw), round(drop * 0.55)), 0, 0, 360,
                (60, 20, 25), -1, cv2.LINE_AA)
    return rgb, alpha


def _glasses(rgb: np.ndarray, face: sm._Face) -> np.ndarray:
    """Thin dark frames with clear lenses (allowed: frames must not cover the eyes)."""
    out = Image.fromarray(rgb)
    d = ImageDraw.Draw(out)
    fw = face.face_width
    a, b = 0.17 * fw, 0.12 * fw
    (rx, ry), (lx, ly) = face.eyes
    width = max(1, round(0.02 * fw))
    for x, y in ((rx, ry), (lx, ly)):
        d.rounded_rectangle((x - a, y - b, x + a, y + b), radius=b * 0.6, outline=(30, 30, 35), width=width)
    d.line((rx + a, ry - 0.3 * b, lx - a, ly - 0.3 * b), fill=(30, 30, 35), width=width)
    return np.asarray(out)


@cache
def _gain(pid: str) -> float:
    """Exposure gain that brings the person's face to the kit's light: the 90th percentile of face luma
    near 215 (the sources were photographed under every kind of light)."""
    face, _ = _person(pid)
    (rx, ry), (lx, ly) = face.eyes
    fw = face.face_width
    cx, cy = (rx + lx) / 2, (ry + ly) / 2 + 0.3 * fw
    y = face.rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    patch = y[int(cy - 0.35 * fw):int(cy + 0.35 * fw), int(cx - 0.35 * fw):int(cx + 0.35 * fw)]
    return float(np.clip(215.0 / max(float(np.percentile(patch, 90)), 1.0), 0.8, 2.2))


def _roll_sign(pid: str) -> float:
    """Roll faults turn the head further the way it already leans (so the fault is never undone)."""
    (_, ry), (_, ly) = _person(pid)[0].eyes
    return 1.0 if ly - ry <= 0 else -1.0


def _layer(pid: str, variant: str, mirror: bool) -> tuple[Image.Image, tuple[float, float], float]:
    face, pts = _person(pid)
    g = _gain(pid) * {"good_darker": 0.8, "good_brighter": 1.12}.get(variant, 1.0)
    rgb = np.clip(face.rgb.astype(np.float32) * g, 0, 255).astype(np.uint8)
    alpha = face.alpha
    face = sm._Face(rgb, alpha, face.cloth, face.eyes, face.face_width)
    if variant == "light_blue_top":
        rgb = _recolour(rgb, face, (92, 182, 240))
    elif variant == "navy_top":
        rgb = _recolour(rgb, face, (28, 36, 80))
    elif variant == "good_white_top":
        rgb = _recolour(rgb, face, (236, 236, 232))
    elif variant == "sunglasses":
        rgb = sm._sunglasses(rgb, face)
    elif variant == "good_clear_glasses":
        rgb = _glasses(rgb, face)
    elif variant == "eyes_closed" and len(pts):
        rgb = _close_eyes(rgb, pts, face.face_width)
    elif variant == "mouth_open" and len(pts):
        rgb, alpha = _open_mouth(face, pts)
    rgba = np.dstack([rgb, (alpha * 255).astype(np.uint8)])
    (rx, ry), (lx, ly) = face.eyes
    mid = ((rx + lx) / 2, (ry + ly) / 2)
    if mirror:
        rgba = rgba[:, ::-1]
        mid = (rgba.shape[1] - 1 - mid[0], mid[1])
    pad = rgba.shape[0]
    rgba = np.concatenate([rgba, np.repeat(rgba[-1:], pad, axis=0)], axis=0)
    im = Image.fromarray(np.ascontiguousarray(rgba), "RGBA")
    if variant in ("rolled", "good_roll3"):
        angle = (12 if variant == "rolled" else 3) * _roll_sign(pid) * (-1 if mirror else 1)
        im = im.rotate(angle, resample=Image.Resampling.BICUBIC, center=mid)
    return im, mid, face.face_width


def _uneven_backdrop(w: int, h: int) -> Image.Image:
    """The backdrop with a strong diagonal gradient and a shadow band (a lamp off, a wrinkle)."""
    arr = np.asarray(sm._backdrop(w, h), np.float32)
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    gain = 1.05 - 0.55 * np.clip(xx * 0.7 + yy * 0.5, 0, 1)
    return Image.fromarray(np.clip(arr * gain, 0, 255).astype(np.uint8))


def render(pid: str, variant: str, seed: int = 0) -> np.ndarray:
    """One evaluation frame (SIZE, RGB)."""
    w, h = SIZE
    rng = np.random.default_rng(seed)
    mirror = variant == "good_mirrored"
    ref = min(w, h * 4 / 3)
    face_px = sm.FACE_WIDTH_FRACTION * ref * rng.uniform(0.94, 1.06)
    eye = [w / 2 + rng.uniform(-0.015, 0.015) * w, h * sm.EYE_HEIGHT_FRACTION + rng.uniform(-0.015, 0.015) * h]
    if variant == "off_centre":
        eye[0] += 0.25 * w
    if variant == "too_small":
        face_px = 0.075 * ref
    if variant == "good_near":
        face_px = 0.24 * ref
    if variant == "good_far":
        face_px = 0.16 * ref
    if variant == "too_large":
        face_px = 0.45 * ref
        eye[1] = h * 0.36
    if variant == "cluttered":
        canvas = sm._classroom(w, h)
    elif variant == "uneven_backdrop":
        canvas = _uneven_backdrop(w, h)
    else:
        canvas = sm._backdrop(w, h)
    if variant == "two_people":
        others = [p for p in PEOPLE if p != pid and PEOPLE[p][1] == "pass"]
        other = others[rng.integers(len(others))]
        sm._place(canvas, _layer(other, "good", True), (eye[0] + 1.6 * face_px, eye[1] - 0.05 * face_px),
                  0.95 * face_px)
    sm._place(canvas, _layer(pid, variant, mirror), (eye[0], eye[1]), face_px)
    finish = {"blurred": "blurred", "dark": "dark", "overexposed": "overexposed",
              "uneven_light": "uneven_light"}.get(variant, "good")
    if variant == "dark":  # a clearly dark shot: 0.35 of the normal exposure (the samples' "dark" is 0.22)
        return (sm._finish(np.asarray(canvas), "good", eye[0], face_px) * 0.35).astype(np.uint8)
    return sm._finish(np.asarray(canvas), finish, eye[0], face_px)


@cache
def _cloth_cover(pid: str) -> float:
    """How much of the clothing check's region (below the chin) the clothing mask covers in the photo."""
    face, _ = _person(pid)
    (rx, ry), (lx, ly) = face.eyes
    fw = face.face_width
    cx, chin = (rx + lx) / 2, (ry + ly) / 2 + 1.15 * fw
    band = face.cloth[int(chin + 0.45 * fw):int(chin + 1.2 * fw), int(cx - fw):int(cx + fw)]
    return float((band > 0.5).mean()) if band.size else 0.0


def _skip(pid: str, variant: str) -> bool:
    _, pts = _person(pid)
    if variant in ("light_blue_top", "navy_top", "good_white_top") and _cloth_cover(pid) < 0.4:
        return True  # the photograph shows too little of the top (or it is skin-coloured) to recolour it
    if variant in ("eyes_closed", "mouth_open") and not len(pts):
        return True  # the two bundled sample faces carry no mesh points
    return PEOPLE[pid][2] == "face_count" and variant != "good"  # two-person photos: the photo as it is


@cache
def frames() -> list[Frame]:
    out = []
    for pid, (split, base, bmust, bmay) in PEOPLE.items():
        for k, (variant, (vlabel, vmust, vmay)) in enumerate(VARIANTS.items()):
            if _skip(pid, variant):
                continue
            if vlabel == "base":
                label, must, may = base, _split(bmust), _split(bmay) | _split(vmay)
            elif base == "retake" or vlabel == "retake":
                label = "retake"
                must = _split(vmust) | (_split(bmust) if base == "retake" else frozenset())
                may = _split(vmay) | _split(bmay)
            else:
                label, must, may = vlabel, frozenset(), _split(vmay) | _split(bmay)
            rgb = render(pid, variant, seed=1000 * list(PEOPLE).index(pid) + k)
            out.append(Frame(f"{pid}__{variant}", pid, variant, split, label, must, may, rgb))
    for k in range(3):  # nobody in the chair
        canvas = [sm._backdrop(*SIZE), sm._classroom(*SIZE), _uneven_backdrop(*SIZE)][k]
        arr = sm._finish(np.asarray(canvas), "good", SIZE[0] / 2, 200)
        out.append(Frame(f"nobody__{k}", "nobody", "nobody", "tuned" if k < 2 else "held_out", "retake",
                         frozenset({"face_count", "crop"}), frozenset(), arr))
    return out
