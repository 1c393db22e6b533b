"""Synthetic classroom shots for the simulated camera, tests and benchmarks.

:func:`sample_portrait` composes a real public-domain face photo (``samples/``, licences in
``samples/LICENCES.md``) in front of the light-blue backdrop at the kit's framing, then applies one fault.
Frames are cached per (size, variant, index): the first 4056x3040 call takes about a second, later ones
return a copy in a few milliseconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
BACKDROP_RGB = (100, 197, 255)
VARIANTS = (
    "good", "blurred", "dark", "overexposed", "blue_shirt", "off_centre", "eyes_occluded", "no_face",
    "two_faces", "rolled", "small_face", "uneven_light", "cluttered_background",
)
# The kit's framing: face (cheek to cheek) ~0.2 of the frame width, eye line at 0.42 of the height.
FACE_WIDTH_FRACTION = 0.20
EYE_HEIGHT_FRACTION = 0.42


@dataclass(frozen=True)
class _Face:
    rgb: np.ndarray  # HxWx3 uint8
    alpha: np.ndarray  # HxW float32 0..1
    cloth: np.ndarray  # HxW float32 0..1
    eyes: tuple[tuple[float, float], tuple[float, float]]
    face_width: float


@cache
def _all_meta() -> list[dict]:
    return json.loads((SAMPLES_DIR / "faces.json").read_text())


@cache
def _meta() -> list[dict]:
    """The faces the simulated camera cycles through (a face whose own photo breaks a rule is left out)."""
    return [m for m in _all_meta() if m.get("simulator", True)]


def face_count() -> int:
    """How many distinct bundled faces the simulated camera uses (``index`` cycles through them)."""
    return len(_meta())


def face_by_name(name: str) -> _Face:
    """A bundled face by its name in faces.json (``astronaut``, ``grace_hopper``), simulator or not."""
    return _load(next(i for i, m in enumerate(_all_meta()) if m["name"] == name))


def _face(i: int) -> _Face:
    return _load(_all_meta().index(_meta()[i]))


@cache
def _load(i: int) -> _Face:
    m = _all_meta()[i]
    stem = m["file"].rsplit(".", 1)[0]
    rgb = np.asarray(Image.open(SAMPLES_DIR / m["file"]).convert("RGB"))
    alpha = np.asarray(Image.open(SAMPLES_DIR / f"{stem}_alpha.png"), dtype=np.float32) / 255
    cloth = np.asarray(Image.open(SAMPLES_DIR / f"{stem}_cloth.png"), dtype=np.float32) / 255
    cloth = cv2.GaussianBlur(cloth, (0, 0), 1.0)
    return _Face(rgb, alpha, cloth, (tuple(m["right_eye"]), tuple(m["left_eye"])), float(m["face_width"]))


def _sunglasses(rgb: np.ndarray, face: _Face) -> np.ndarray:
    """Dark tinted lenses over both eyes (the photo spec forbids tinted glasses)."""
    ss = 4
    h, w = rgb.shape[:2]
    mask = Image.new("L", (w * ss, h * ss), 0)
    d = ImageDraw.Draw(mask)
    a, b = 0.17 * face.face_width * ss, 0.115 * face.face_width * ss
    (rx, ry), (lx, ly) = face.eyes
    for x, y in ((rx, ry), (lx, ly)):
        d.ellipse((x * ss - a, y * ss - b, x * ss + a, y * ss + b), fill=255)
    d.line((rx * ss, ry * ss - b * 0.4, lx * ss, ly * ss - b * 0.4), fill=255, width=int(b * 0.25))
    m = np.asarray(mask.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)[..., None] / 255
    lens = np.array([28, 26, 30], np.float32)
    return (rgb * (1 - 0.96 * m) + lens * 0.96 * m).astype(np.uint8)


def _blue_top(rgb: np.ndarray, face: _Face) -> np.ndarray:
    """Recolour the clothing a light blue close to the backdrop, keeping its shading."""
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    sel = face.cloth > 0.5
    shade = np.clip(0.5 + 0.5 * y / max(float(np.median(y[sel])), 1.0), 0.6, 1.3)[..., None]
    blue = np.array([90, 180, 242], np.float32) * shade
    m = face.cloth[..., None]
    return np.clip(rgb * (1 - m) + blue * m, 0, 255).astype(np.uint8)


def _person(i: int, variant: str, mirror: bool) -> tuple[Image.Image, tuple[float, float], float]:
    """RGBA person layer at source resolution, its eye midpoint and face width in source pixels."""
    face = _face(i)
    rgb = face.rgb
    if variant == "blue_shirt":
        rgb = _blue_top(rgb, face)
    if variant == "eyes_occluded":
        rgb = _sunglasses(rgb, face)
    rgba = np.dstack([rgb, (face.alpha * 255).astype(np.uint8)])
    (rx, ry), (lx, ly) = face.eyes
    mid = ((rx + lx) / 2, (ry + ly) / 2)
    if mirror:
        rgba = rgba[:, ::-1]
        mid = (rgba.shape[1] - 1 - mid[0], mid[1])
    # Extend the torso downwards (edge rows repeated) so any framing reaches the bottom of the frame.
    pad = rgba.shape[0]
    rgba = np.concatenate([rgba, np.repeat(rgba[-1:], pad, axis=0)], axis=0)
    im = Image.fromarray(np.ascontiguousarray(rgba), "RGBA")
    if variant == "rolled":
        im = im.rotate(20, resample=Image.Resampling.BICUBIC, center=mid)
    return im, mid, face.face_width


def _place(canvas: Image.Image, person: tuple[Image.Image, tuple[float, float], float],
           eye_xy: tuple[float, float], face_px: float) -> None:
    """Paste the person so that its eye midpoint lands at eye_xy with the given face width."""
    im, (mx, my), fw = person
    k = face_px / fw
    w, h = canvas.size
    box = [mx - eye_xy[0] / k, my - eye_xy[1] / k, mx + (w - eye_xy[0]) / k, my + (h - eye_xy[1]) / k]
    # Pad the source with transparency so the box is inside it (Pillow resamples only inside the image).
    pl = max(0, math.ceil(-box[0]) + 2)
    pt = max(0, math.ceil(-box[1]) + 2)
    pr = max(0, math.ceil(box[2] - im.width) + 2)
    pb = max(0, math.ceil(box[3] - im.height) + 2)
    if pl or pt or pr or pb:
        big = Image.new("RGBA", (im.width + pl + pr, im.height + pt + pb), (0, 0, 0, 0))
        big.paste(im, (pl, pt))
        im = big
        box = [box[0] + pl, box[1] + pt, box[2] + pl, box[3] + pt]
    layer = im.resize((w, h), Image.Resampling.BICUBIC, box=tuple(box))
    canvas.paste(layer, (0, 0), layer)


def _backdrop(w: int, h: int) -> Image.Image:
    """Light-blue backdrop, slightly brighter in the middle as under an LED panel."""
    sw, sh = max(8, w // 16), max(6, h // 16)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    r2 = ((xx / sw - 0.5) ** 2 + (yy / sh - 0.45) ** 2) / 0.5
    gain = 1.02 - 0.06 * r2
    small = np.clip(np.array(BACKDROP_RGB, np.float32) * gain[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)


def _classroom(w: int, h: int) -> Image.Image:
    """A cluttered classroom wall instead of the backdrop."""
    sw, sh = 800, max(1, round(800 * h / w))
    im = Image.new("RGB", (sw, sh), (214, 204, 184))
    d = ImageDraw.Draw(im)
    d.rectangle((40, 60, 430, 300), fill=(236, 238, 236), outline=(120, 120, 125), width=6)  # whiteboard
    d.rectangle((520, 40, 760, 330), fill=(170, 200, 225), outline=(90, 80, 70), width=10)  # window
    d.line((640, 40, 640, 330), fill=(90, 80, 70), width=8)
    rng = np.random.default_rng(7)
    for _ in range(14):  # posters
        x, y = rng.integers(0, sw - 60), rng.integers(0, sh // 2)
        c = tuple(int(v) for v in rng.integers(30, 230, 3))
        d.rectangle((x, y, x + rng.integers(30, 90), y + rng.integers(40, 110)), fill=c)
    d.rectangle((0, sh * 0.68, sw, sh), fill=(150, 110, 80))  # cupboards
    for x in range(0, sw, 100):
        d.line((x, sh * 0.68, x, sh), fill=(90, 60, 40), width=4)
    return im.resize((w, h), Image.Resampling.BILINEAR)


@cache
def _noise_tile() -> np.ndarray:
    return np.random.default_rng(1).normal(0, 2.2, (256, 256, 3)).astype(np.int16)


def _finish(arr: np.ndarray, variant: str, eye_x: float, face_px: float) -> np.ndarray:
    """Camera-like processing and the photometric faults; uint8 in, uint8 out."""
    f = arr.astype(np.float32)
    f = cv2.addWeighted(f, 1.6, cv2.GaussianBlur(f, (0, 0), max(1.0, face_px / 400)), -0.6, 0)  # ISP sharpening
    h, w = arr.shape[:2]
    if variant == "blurred":  # defocus: large Gaussian, done at 1/4 size for speed
        sigma = 0.02 * face_px
        small = cv2.resize(f, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / 4)
        f = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif variant == "dark":
        f *= 0.22
    elif variant == "overexposed":
        f *= 1.9
    elif variant == "uneven_light":  # one side lit, the other in shadow
        x = (np.arange(w, dtype=np.float32) - eye_x) / (0.5 * face_px)
        f *= (1.0 - 0.42 * np.tanh(x))[None, :, None]
    tile = _noise_tile()
    reps = (math.ceil(h / tile.shape[0]), math.ceil(w / tile.shape[1]), 1)
    f += np.tile(tile, reps)[:h, :w]
    return np.clip(f, 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _render(width: int, height: int, variant: str, index: int) -> Image.Image:
    n = face_count()
    fi, seed = index % n, index // n
    rng = np.random.default_rng(seed)
    jitter = seed > 0
    mirror = seed % 2 == 1
    ref = min(width, height * 4 / 3)
    face_px = FACE_WIDTH_FRACTION * ref * (rng.uniform(0.92, 1.08) if jitter else 1.0)
    eye = [width / 2 + (rng.uniform(-0.02, 0.02) * width if jitter else 0.0),
           height * EYE_HEIGHT_FRACTION + (rng.uniform(-0.02, 0.02) * height if jitter else 0.0)]
    if variant == "off_centre":
        eye[0] += 0.26 * width
    if variant == "small_face":
        face_px = 0.075 * ref
    canvas = _classroom(width, height) if variant == "cluttered_background" else _backdrop(width, height)
    if variant == "two_faces":
        other = _person((fi + 1) % n, "good", not mirror)
        _place(canvas, other, (eye[0] + 1.55 * face_px, eye[1] - 0.05 * face_px), 0.9 * face_px)
    if variant != "no_face":
        _place(canvas, _person(fi, variant, mirror), (eye[0], eye[1]), face_px)
    arr = _finish(np.asarray(canvas), variant, eye[0], face_px)
    return Image.fromarray(arr, "RGB")


def sample_portrait(width: int, height: int, variant: str = "good", index: int = 0) -> Image.Image:
    """A classroom diploma shot of ``width`` x ``height`` px with one fault (``variant``).

    ``index`` picks the face (cycling through the bundled ones) and, past the first round, a mirrored
    copy with slightly different framing. Variants: see ``VARIANTS``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if width < 64 or height < 48:
        raise ValueError("frame too small")
    return _render(int(width), int(height), variant, int(index)).copy()
