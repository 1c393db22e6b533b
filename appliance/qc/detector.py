"""Face and landmark detection behind a small interface.

The checks only see :class:`FaceBox` and :class:`FaceLandmarks` (named points in pixels of the analysed
image), never a model's own index scheme, so the model can be swapped by writing one class with the two
methods of :class:`Detector`.

The implementation shipped, :class:`TfliteDetector`, runs MediaPipe's own ``.tflite`` models (vendored in
``models/``, Apache-2.0, see ``models/LICENCES.md``) through OpenCV's DNN module: the full-range face
detector on the whole frame, the 468-point face mesh on a rotated crop around the face, and the iris model
on each eye (which also refines the eyelids), as MediaPipe's own face-mesh-with-iris graph does. OpenCV is
the only run-time dependency; nothing is downloaded. See ``docs/qc.md``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

Point = tuple[float, float]
MODELS_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box in pixels of the analysed image (x0, y0, x1, y1), detector score and the
    detector's two eye keypoints (subject's right eye first), used to orient the landmark crop."""

    box: tuple[float, float, float, float]
    score: float
    eyes: tuple[Point, Point] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


@dataclass(frozen=True)
class FaceLandmarks:
    """Named facial points in pixels of the analysed image. "right"/"left" are the subject's sides.

    ``*_eye_contour`` are closed polygons around the visible eye (lid margins); ``*_lids`` are
    (outer corner, inner corner, upper lid centre, lower lid centre). ``*_z`` are depths of the cheek
    points on the same scale as x (larger = further from the camera), used for yaw. ``mouth`` is
    (right corner, left corner, upper inner lip centre, lower inner lip centre).
    """

    right_eye: Point  # iris centre
    left_eye: Point
    right_lids: tuple[Point, Point, Point, Point]
    left_lids: tuple[Point, Point, Point, Point]
    right_eye_contour: tuple[Point, ...]
    left_eye_contour: tuple[Point, ...]
    right_cheek: Point  # face outline at eye level, subject's right (image left when not mirrored)
    left_cheek: Point
    right_cheek_z: float
    left_cheek_z: float
    nose_tip: Point
    chin: Point
    forehead: Point  # top of the face outline (mid forehead), below the hairline
    right_cheek_patch: Point  # centre of a skin patch on each cheek, for exposure/uniformity
    left_cheek_patch: Point
    face_outline: tuple[Point, ...]
    mouth: tuple[Point, Point, Point, Point] = ((0.0, 0.0),) * 4
    points: np.ndarray | None = None  # all 478 mesh points (x, y, z), for diagnostics and comparisons

    @property
    def eye_mid(self) -> Point:
        return ((self.right_eye[0] + self.left_eye[0]) / 2, (self.right_eye[1] + self.left_eye[1]) / 2)

    @property
    def face_width(self) -> float:
        """Cheek-to-cheek width in pixels."""
        return float(np.hypot(self.left_cheek[0] - self.right_cheek[0], self.left_cheek[1] - self.right_cheek[1]))


class Detector(Protocol):
    """What the checks need from a face model."""

    def faces(self, rgb: np.ndarray) -> list[FaceBox]:
        """All faces in an RGB uint8 image, largest first."""
        ...

    def landmarks(self, rgb: np.ndarray, face: FaceBox) -> FaceLandmarks | None:
        """Landmarks of the given face, or None if the landmark model finds no face there."""
        ...


# Face-mesh indices (MediaPipe canonical face model; 468 mesh points, then 468-472 / 473-477 for the two
# irises as in MediaPipe's refined 478-point output). Sides are the subject's, as in MediaPipe's own
# FACEMESH_RIGHT_EYE / FACEMESH_RIGHT_IRIS (face_mesh_connections.py).
_RIGHT_IRIS, _LEFT_IRIS = 468, 473
_RIGHT_LIDS = (33, 133, 159, 145)  # outer, inner, upper, lower
_LEFT_LIDS = (263, 362, 386, 374)
_RIGHT_EYE_CONTOUR = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
_LEFT_EYE_CONTOUR = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
_RIGHT_CHEEK, _LEFT_CHEEK = 234, 454
_NOSE_TIP, _CHIN, _FOREHEAD = 1, 152, 10
_RIGHT_CHEEK_PATCH, _LEFT_CHEEK_PATCH = 50, 280
_MOUTH = (78, 308, 13, 14)  # inner lip corners (right, left), inner upper / lower lip centre
_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
              148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# The iris model's 71 eye-region points, in the order it outputs them, as face-mesh indices (MediaPipe's
# update_face_landmarks_calculator): eye lower and upper contour, then four halos and the brow.
_EYE_REFINED = {
    "right": (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110, 24, 23,
              22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232, 233, 244, 113,
              225, 224, 223, 222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128,
              245, 156, 70, 63, 105, 66, 107, 55, 193),
    "left": (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255, 339, 254,
             253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449, 450, 451, 452, 453,
             464, 342, 445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348,
             349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417),
}

# MediaPipe graph constants (face_detection_full_range_common, face_landmark_front_cpu, iris_landmark_cpu).
_DET_SIZE = 192
_DET_NMS_IOU = 0.3
_LM_SIZE = 192
_LM_ROI_SCALE = 1.5
_IRIS_SIZE = 64
_IRIS_ROI_SCALE = 2.3


def _anchors() -> np.ndarray:
    """SSD anchors of the full-range detector: one per cell of a 48x48 grid (stride 4), unit size."""
    n = _DET_SIZE // 4
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    xx, yy = np.meshgrid(c, c)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def _roi_matrix(cx: float, cy: float, size: float, angle: float, out: int) -> np.ndarray:
    """Affine matrix mapping image pixels to an ``out`` x ``out`` crop centred on (cx, cy), ``size`` px wide,
    rotated by ``angle`` radians (the crop's x axis points along the angle)."""
    k = out / size
    c, s = math.cos(angle) * k, math.sin(angle) * k
    # crop = R(-angle) * k * (p - centre) + out/2
    return np.array([[c, s, out / 2 - c * cx - s * cy], [-s, c, out / 2 + s * cx - c * cy]], np.float64)


def _to_image(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map crop coordinates (N, 2) back to image coordinates with the inverse of affine ``m``."""
    inv = cv2.invertAffineTransform(m)
    return pts @ inv[:, :2].T + inv[:, 2]


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray) -> list[tuple]:
    """MediaPipe's weighted non-maximum suppression: overlapping detections (IoU > 0.3) are averaged,
    weighted by score; the cluster keeps its best score."""
    order = np.argsort(-scores, kind="stable")
    out = []
    remaining = list(order)
    while remaining:
        best = remaining[0]
        b = boxes[best]
        rest = boxes[remaining]
        ix0, iy0 = np.maximum(b[0], rest[:, 0]), np.maximum(b[1], rest[:, 1])
        ix1, iy1 = np.minimum(b[2], rest[:, 2]), np.minimum(b[3], rest[:, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        area = (b[2] - b[0]) * (b[3] - b[1])
        areas = (rest[:, 2] - rest[:, 0]) * (rest[:, 3] - rest[:, 1])
        iou = inter / np.maximum(area + areas - inter, 1e-9)
        members = [remaining[i] for i in np.flatnonzero(iou > _DET_NMS_IOU)]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kp = (keypoints[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[best]), kp))
        remaining = [r for r in remaining if r not in set(members)]
    return out


class TfliteDetector:
    """MediaPipe's face detection (full range), face mesh and iris models run by ``cv2.dnn``.

    The networks are not thread-safe, so calls are serialised with a lock. Winograd convolutions are
    turned off so that x86-64 and aarch64 builds compute the same arithmetic as closely as possible.
    """

    def __init__(self, min_confidence: float = 0.5, models: Path = MODELS_DIR) -> None:
        self.min_confidence = min_confidence
        self._det = self._load(models / "face_detection_full_range.tflite")
        self._mesh = self._load(models / "face_landmark.tflite")
        self._iris = self._load(models / "iris_landmark.tflite")
        self._anchors = _anchors()
        self._lock = threading.Lock()

    @staticmethod
    def _load(path: Path) -> cv2.dnn.Net:
        net = cv2.dnn.readNetFromTFLite(str(path))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        if hasattr(net, "enableWinograd"):
            net.enableWinograd(False)
        return net

    @staticmethod
    def _run(net: cv2.dnn.Net, img: np.ndarray, scale: float, mean: float) -> dict[int, np.ndarray]:
        """Outputs of ``net`` on an RGB crop, keyed by their element count (names differ between builds)."""
        net.setInput(cv2.dnn.blobFromImage(img, scale, mean=(mean, mean, mean), swapRB=False, crop=False))
        return {o.size: o for o in net.forward(net.getUnconnectedOutLayersNames())}

    # --- detection -------------------------------------------------------------------------------------
    def faces(self, rgb: np.ndarray) -> list[FaceBox]:
        h, w = rgb.shape[:2]
        side = max(w, h)  # letterbox to a square, as MediaPipe's keep_aspect_ratio does
        k = _DET_SIZE / side
        m = np.array([[k, 0, (_DET_SIZE - w * k) / 2], [0, k, (_DET_SIZE - h * k) / 2]], np.float64)
        crop = cv2.warpAffine(rgb, m, (_DET_SIZE, _DET_SIZE), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))
        with self._lock:
            out = self._run(self._det, crop, 1 / 127.5, 127.5)
        n = len(self._anchors)
        raw = out[n * 16].reshape(n, 16).astype(np.float64) / _DET_SIZE
        scores = _sigmoid(out[n].reshape(n).astype(np.float64))
        keep = np.flatnonzero(scores >= self.min_confidence)
        if not len(keep):
            return []
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep].astype(np.float64)
        cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
        boxes = np.stack([cx - raw[:, 2] / 2, cy - raw[:, 3] / 2, cx + raw[:, 2] / 2, cy + raw[:, 3] / 2], 1)
        kps = raw[:, 4:].reshape(-1, 6, 2) + anchors[:, None, :]
        found = []
        for box, score, kp in _weighted_nms(boxes, scores, kps):
            b = _to_image(m, (box * _DET_SIZE).reshape(2, 2)).ravel()
            eyes = _to_image(m, kp[:2] * _DET_SIZE)
            found.append(FaceBox((float(b[0]), float(b[1]), float(b[2]), float(b[3])), score,
                                 ((float(eyes[0, 0]), float(eyes[0, 1])), (float(eyes[1, 0]), float(eyes[1, 1])))))
        return sorted(found, key=lambda f: -f.width)

    # --- landmarks -------------------------------------------------------------------------------------
    def landmarks(self, rgb: np.ndarray, face: FaceBox) -> FaceLandmarks | None:
        pts = self.mesh(rgb, face)
        return None if pts is None else _named(pts)

    def mesh(self, rgb: np.ndarray, face: FaceBox) -> np.ndarray | None:
        """478 points (x, y, z) in image pixels: the 468-point mesh with the iris model's eye contours and
        the two irises (MediaPipe's refined numbering), or None when the mesh model sees no face."""
        x0, y0, x1, y1 = face.box
        if face.eyes is not None:
            (rx, ry), (lx, ly) = face.eyes
            angle = math.atan2(ly - ry, lx - rx)
        else:
            angle = 0.0
        size = max(x1 - x0, y1 - y0) * _LM_ROI_SCALE
        if size < 8:
            return None
        m = _roi_matrix((x0 + x1) / 2, (y0 + y1) / 2, size, angle, _LM_SIZE)
        crop = cv2.warpAffine(rgb, m, (_LM_SIZE, _LM_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        with self._lock:
            out = self._run(self._mesh, crop, 1 / 255, 0.0)
        if _sigmoid(out[1].reshape(-1))[0] < 0.5:
            return None
        raw = out[468 * 3].reshape(468, 3).astype(np.float64)
        pts = np.zeros((478, 3), np.float64)
        pts[:468, :2] = _to_image(m, raw[:, :2])
        pts[:468, 2] = raw[:, 2] * size / _LM_SIZE
        for side, (a, b) in (("right", (33, 133)), ("left", (362, 263))):
            self._refine_eye(rgb, pts, side, a, b)
        return pts

    def _refine_eye(self, rgb: np.ndarray, pts: np.ndarray, side: str, a: int, b: int) -> None:
        """Run the iris model on one eye; write its eye contour and iris into ``pts`` in place.

        The model expects an image-left eye; the image-right one (the subject's left) is mirrored in and
        out, as in MediaPipe."""
        (ax, ay), (bx, by) = pts[a, :2], pts[b, :2]
        flip = side == "left"
        angle = math.atan2(by - ay, bx - ax)
        size = max(abs(bx - ax), abs(by - ay), 1.0) * _IRIS_ROI_SCALE
        m = _roi_matrix((ax + bx) / 2, (ay + by) / 2, size, angle, _IRIS_SIZE)
        if flip:
            m = np.array([[-1, 0, _IRIS_SIZE], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
        crop = cv2.warpAffine(rgb, m, (_IRIS_SIZE, _IRIS_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        with self._lock:
            out = self._run(self._iris, crop, 1 / 255, 0.0)
        contour = out[71 * 3].reshape(71, 3).astype(np.float64)
        iris = out[5 * 3].reshape(5, 3).astype(np.float64)
        scale_z = size / _IRIS_SIZE
        pts[list(_EYE_REFINED[side]), :2] = _to_image(m, contour[:, :2])
        pts[list(_EYE_REFINED[side]), 2] = contour[:, 2] * scale_z
        first = _RIGHT_IRIS if side == "right" else _LEFT_IRIS
        pts[first:first + 5, :2] = _to_image(m, iris[:, :2])
        pts[first:first + 5, 2] = iris[:, 2] * scale_z


def _named(pts: np.ndarray) -> FaceLandmarks:
    def p(i: int) -> Point:
        return (float(pts[i, 0]), float(pts[i, 1]))

    def many(ix: tuple[int, ...]) -> tuple[Point, ...]:
        return tuple(p(i) for i in ix)

    return FaceLandmarks(
        right_eye=p(_RIGHT_IRIS), left_eye=p(_LEFT_IRIS),
        right_lids=many(_RIGHT_LIDS), left_lids=many(_LEFT_LIDS),  # type: ignore[arg-type]
        right_eye_contour=many(_RIGHT_EYE_CONTOUR), left_eye_contour=many(_LEFT_EYE_CONTOUR),
        right_cheek=p(_RIGHT_CHEEK), left_cheek=p(_LEFT_CHEEK),
        right_cheek_z=float(pts[_RIGHT_CHEEK, 2]), left_cheek_z=float(pts[_LEFT_CHEEK, 2]),
        nose_tip=p(_NOSE_TIP), chin=p(_CHIN), forehead=p(_FOREHEAD),
        right_cheek_patch=p(_RIGHT_CHEEK_PATCH), left_cheek_patch=p(_LEFT_CHEEK_PATCH),
        face_outline=many(_FACE_OVAL), mouth=many(_MOUTH),  # type: ignore[arg-type]
        points=pts,
    )


@cache
def default_detector(min_confidence: float = 0.5) -> Detector:
    """One shared detector per confidence setting (loading the three networks takes ~50 ms)."""
    return TfliteDetector(min_confidence=min_confidence)
