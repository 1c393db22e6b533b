"""Face and landmark detection behind a small interface.

The checks only see :class:`FaceBox` and :class:`FaceLandmarks` (named points in pixels of the analysed
image), never a model's own index scheme, so the model can be swapped by writing one class with the two
methods of :class:`Detector`.

The implementation shipped, :class:`MediapipeDetector`, uses the models bundled inside the mediapipe
0.10.18 wheel (legacy ``solutions`` API: full-range face detection, face mesh with iris refinement).
That version is pinned on purpose and is a dead end: later mediapipe releases download their models at
run time. See ``docs/qc.md`` for the fallback.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box in pixels of the analysed image (x0, y0, x1, y1) and detector score."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


@dataclass(frozen=True)
class FaceLandmarks:
    """Named facial points in pixels of the analysed image. "right"/"left" are the subject's sides.

    ``*_eye_contour`` are closed polygons around the visible eye (lid margins); ``*_lids`` are
    (outer corner, inner corner, upper lid centre, lower lid centre). ``*_z`` are depths of the cheek
    points on the same scale as x (larger = further from the camera), used for yaw.
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


# Face-mesh indices (mediapipe canonical face model, 478 points with refine_landmarks=True). Sides are the
# subject's, as in mediapipe's own FACEMESH_RIGHT_EYE / FACEMESH_RIGHT_IRIS (face_mesh_connections.py).
_RIGHT_IRIS, _LEFT_IRIS = 468, 473
_RIGHT_LIDS = (33, 133, 159, 145)  # outer, inner, upper, lower
_LEFT_LIDS = (263, 362, 386, 374)
_RIGHT_EYE_CONTOUR = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
_LEFT_EYE_CONTOUR = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
_RIGHT_CHEEK, _LEFT_CHEEK = 234, 454
_NOSE_TIP, _CHIN, _FOREHEAD = 1, 152, 10
_RIGHT_CHEEK_PATCH, _LEFT_CHEEK_PATCH = 50, 280
_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
              148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


class MediapipeDetector:
    """mediapipe 0.10.18 legacy solutions: full-range face detection, then face mesh on a crop.

    Graphs are built once and are not thread-safe, so calls are serialised with a lock.
    """

    def __init__(self, min_confidence: float = 0.5, mesh_crop_margin: float = 0.8) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ INFO/WARNING chatter on stderr
        from mediapipe.python.solutions import face_detection, face_mesh  # heavy import, deferred

        self._fd = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        self._fm = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                      min_detection_confidence=min_confidence)
        self._margin = mesh_crop_margin
        self._lock = threading.Lock()

    def faces(self, rgb: np.ndarray) -> list[FaceBox]:
        h, w = rgb.shape[:2]
        with self._lock:
            result = self._fd.process(np.ascontiguousarray(rgb))
        boxes = []
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            boxes.append(FaceBox((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h),
                                 float(det.score[0])))
        return sorted(boxes, key=lambda f: -f.width)

    def landmarks(self, rgb: np.ndarray, face: FaceBox) -> FaceLandmarks | None:
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = face.box
        m = self._margin * max(x1 - x0, y1 - y0)
        cx0, cy0 = int(max(0, x0 - m)), int(max(0, y0 - m))
        cx1, cy1 = int(min(w, x1 + m)), int(min(h, y1 + m))
        crop = np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1])
        if crop.shape[0] < 16 or crop.shape[1] < 16:
            return None
        with self._lock:
            result = self._fm.process(crop)
        if not result.multi_face_landmarks:
            return None
        cw, ch = cx1 - cx0, cy1 - cy0
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([(p.x * cw + cx0, p.y * ch + cy0, p.z * cw) for p in lm], dtype=np.float64)
        return _named(pts)


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
        face_outline=many(_FACE_OVAL),
    )


@cache
def default_detector(min_confidence: float = 0.5) -> Detector:
    """One shared detector per confidence setting (building the graphs takes ~0.1 s)."""
    return MediapipeDetector(min_confidence=min_confidence)
