"""Rebuild the bundled sample faces from their public-domain originals (not used at run time).

    python appliance/qc/samples/prepare.py ASTRONAUT_PNG GRACE_HOPPER_JPG

Where the originals come from is in LICENCES.md. For each face this writes ``faceN.jpg`` (the photo),
``faceN_alpha.png`` (person matte from mediapipe selfie segmentation), ``faceN_cloth.png`` (clothing mask:
person, below the chin, not skin) and ``faces.json`` (landmarks found by the QC detector, in pixels).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCES = [
    ("astronaut", "Eileen Collins, NASA portrait (scikit-image data/astronaut.png)"),
    ("grace_hopper", "Grace Hopper, U.S. Navy portrait (matplotlib sample_data/grace_hopper.jpg)"),
]


def _matte(rgb: np.ndarray) -> np.ndarray:
    """Selfie segmentation (256x256 input, [0, 1]) on the image padded to a square, back at full size."""
    net = cv2.dnn.readNetFromTFLite(str(HERE.parent / "models" / "selfie_segmentation.tflite"))
    h, w = rgb.shape[:2]
    side = max(h, w)
    pad = np.zeros((side, side, 3), np.uint8)
    pad[:h, :w] = rgb
    net.setInput(cv2.dnn.blobFromImage(cv2.resize(pad, (256, 256), interpolation=cv2.INTER_AREA), 1 / 255))
    m = cv2.resize(net.forward().reshape(256, 256), (side, side))[:h, :w]
    return np.clip((m - 0.25) / 0.5, 0, 1).astype(np.float32)


def _decontaminate(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace colours at the soft edge by nearby foreground colours (no halo of the old background)."""
    hard = (alpha > 0.95).astype(np.float32)
    num = cv2.GaussianBlur(rgb.astype(np.float32) * hard[..., None], (0, 0), 4)
    den = cv2.GaussianBlur(hard, (0, 0), 4)[..., None]
    est = np.where(den > 1e-3, num / np.maximum(den, 1e-3), rgb)
    w = hard[..., None]
    return (rgb * w + est * (1 - w)).clip(0, 255).astype(np.uint8)


def _skin(rgb: np.ndarray) -> np.ndarray:
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    return (ycc[..., 1] > 135) & (ycc[..., 1] < 180) & (ycc[..., 2] > 80) & (ycc[..., 2] < 130)


def main(paths: list[str]) -> None:
    sys.path.insert(0, str(HERE.parents[2]))
    from appliance.qc.detector import TfliteDetector

    det = TfliteDetector()
    meta = []
    for i, ((name, desc), path) in enumerate(zip(SOURCES, paths, strict=True)):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        face = det.faces(rgb)[0]
        lm = det.landmarks(rgb, face)
        assert lm is not None, path
        alpha = _matte(rgb)
        fw = lm.face_width
        yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
        cx = (lm.right_cheek[0] + lm.left_cheek[0]) / 2
        neck = (np.abs(xx - cx) < 0.35 * fw) & (yy < lm.chin[1] + 0.6 * fw) & _skin(rgb)
        cloth = (alpha > 0.5) & (yy > lm.chin[1] + 0.1 * fw) & ~neck
        cloth = cv2.morphologyEx(cloth.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        Image.fromarray(_decontaminate(rgb, alpha)).save(HERE / f"face{i}.jpg", quality=92)
        Image.fromarray((alpha * 255).astype(np.uint8)).save(HERE / f"face{i}_alpha.png", optimize=True)
        Image.fromarray(cloth.astype(np.uint8) * 255).save(HERE / f"face{i}_cloth.png", optimize=True)
        meta.append({
            "file": f"face{i}.jpg", "name": name, "source": desc,
            "size": [rgb.shape[1], rgb.shape[0]],
            "right_eye": [round(v, 1) for v in lm.right_eye], "left_eye": [round(v, 1) for v in lm.left_eye],
            "face_width": round(fw, 1), "chin": [round(v, 1) for v in lm.chin],
            "face_centre_x": round((lm.right_cheek[0] + lm.left_cheek[0]) / 2, 1),
        })
    (HERE / "faces.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
