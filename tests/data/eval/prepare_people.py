"""Rebuild ``people/`` (the evaluation set's sitters) from the photographs inside their packages (run once).

    python tests/data/eval/prepare_people.py SRC_DIR

``SRC_DIR`` holds the original files under the short names of ``SOURCES`` (where each comes from, its
licence and its SHA-256 are in LICENCES.md). For each sitter this writes ``people/<id>.jpg`` (head and
shoulders, face about 200 px wide), ``<id>_alpha.png`` (person matte from MediaPipe's selfie-segmentation
model, run by cv2.dnn from ``appliance/qc/models/selfie_segmentation.tflite``), ``<id>_cloth.png``
(clothing: person, below the chin, not skin) and an entry in ``people.json`` with the landmarks the QC
detector found (eyes, lids, lips, chin, face width) in pixels of the stored photo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
from appliance.qc.detector import TfliteDetector, _named  # noqa: E402

# id: (file in SRC_DIR, which face (index in left-to-right order), rotation to apply first (degrees))
SOURCES: dict[str, tuple[str, int]] = {
    "giunchedi": ("giunchedi.jpg", 0), "henner": ("henner.jpg", 0), "paumier": ("paumier.jpg", 0),
    "guido": ("guido.jpg", 0), "maher": ("maher.jpg", 0), "riga": ("riga.jpg", 0), "canon": ("canon.jpg", 0),
    "photographer": ("photographer.jpg", 0), "couple_w": ("couple.jpg", 0), "couple_m": ("couple.jpg", 1),
    "jesper": ("jesper.jpg", 0), "newwave": ("newwave.jpg", 0), "bar_w": ("bar.jpg", 0), "anne": ("anne.jpg", 0),
}
TARGET_FW = 200.0


def matte(rgb: np.ndarray, net: cv2.dnn.Net) -> np.ndarray:
    """Soft person matte 0..1 from the 256x256 selfie-segmentation model, upsampled to the image."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    pad = np.zeros((side, side, 3), np.uint8)
    pad[:h, :w] = rgb
    net.setInput(cv2.dnn.blobFromImage(cv2.resize(pad, (256, 256), interpolation=cv2.INTER_AREA), 1 / 255))
    m = net.forward().reshape(256, 256)
    m = cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return np.clip((m - 0.3) / 0.4, 0, 1).astype(np.float32)


def decontaminate(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace colours at the soft edge by nearby foreground colours (no halo of the old background)."""
    hard = (alpha > 0.95).astype(np.float32)
    num = cv2.GaussianBlur(rgb.astype(np.float32) * hard[..., None], (0, 0), 4)
    den = cv2.GaussianBlur(hard, (0, 0), 4)[..., None]
    est = np.where(den > 1e-3, num / np.maximum(den, 1e-3), rgb)
    w = hard[..., None]
    return (rgb * w + est * (1 - w)).clip(0, 255).astype(np.uint8)


def skin(rgb: np.ndarray) -> np.ndarray:
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    return (ycc[..., 1] > 133) & (ycc[..., 1] < 180) & (ycc[..., 2] > 77) & (ycc[..., 2] < 130)


def main(src: Path) -> None:
    det = TfliteDetector(min_confidence=0.4)
    seg = cv2.dnn.readNetFromTFLite(str(ROOT / "appliance/qc/models/selfie_segmentation.tflite"))
    out = HERE / "people"
    out.mkdir(exist_ok=True)
    meta = {}
    for pid, (name, which) in SOURCES.items():
        rgb = np.asarray(Image.open(src / name).convert("RGB"))
        faces = sorted((f for f in det.faces(rgb) if f.width > 0.05 * rgb.shape[1]), key=lambda f: f.box[0])
        face = faces[which]
        lm = _named(det.mesh(rgb, face))
        fw, (ex, ey) = lm.face_width, lm.eye_mid
        # head and shoulders: 2.3 face widths either side, 2.2 above the eyes, 3.6 below
        x0, x1 = max(0, int(ex - 2.3 * fw)), min(rgb.shape[1], int(ex + 2.3 * fw))
        y0, y1 = max(0, int(ey - 2.2 * fw)), min(rgb.shape[0], int(ey + 3.6 * fw))
        crop = rgb[y0:y1, x0:x1]
        k = min(1.0, TARGET_FW / fw)
        if k < 1:
            crop = cv2.resize(crop, (round(crop.shape[1] * k), round(crop.shape[0] * k)), interpolation=cv2.INTER_AREA)
        crop = np.ascontiguousarray(crop)
        f2 = sorted(det.faces(crop), key=lambda f: -f.width)[0]
        pts = det.mesh(crop, f2)
        lm = _named(pts)
        alpha = matte(crop, seg)
        yy, xx = np.mgrid[: crop.shape[0], : crop.shape[1]]
        cx = (lm.right_cheek[0] + lm.left_cheek[0]) / 2
        neck = (np.abs(xx - cx) < 0.45 * lm.face_width) & (yy < lm.chin[1] + 0.7 * lm.face_width) & skin(crop)
        cloth = (alpha > 0.5) & (yy > lm.chin[1] + 0.1 * lm.face_width) & ~neck & ~skin(crop)
        cloth = cv2.morphologyEx(cloth.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        Image.fromarray(decontaminate(crop, alpha)).save(out / f"{pid}.jpg", quality=90)
        Image.fromarray((alpha * 255).astype(np.uint8)).save(out / f"{pid}_alpha.png", optimize=True)
        Image.fromarray(cloth.astype(np.uint8) * 255).save(out / f"{pid}_cloth.png", optimize=True)
        meta[pid] = {"file": f"{pid}.jpg", "size": [crop.shape[1], crop.shape[0]],
                     "points": np.round(pts[:, :2], 1).tolist()}
        print(pid, crop.shape, round(lm.face_width))
    (out / "people.json").write_text(json.dumps(meta, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
