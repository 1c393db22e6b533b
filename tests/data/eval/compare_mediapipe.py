"""Landmarks of the shipped detector (cv2.dnn on MediaPipe's .tflite files) against mediapipe 0.10.18 itself.

    python tests/data/eval/compare_mediapipe.py [IMAGE ...]      # default: every evaluation frame (evalset.py)

A development check, not a test: it needs mediapipe 0.10.18 (Python <= 3.12, not a kit dependency). For each
frame both stacks run on the same RGB array; it prints the detection score of each, and the mean and 95th
percentile distance in pixels between the 478 landmarks (mediapipe's face mesh with iris refinement, the
legacy ``solutions`` API the kit used before), also as a fraction of the face width.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from appliance.qc.detector import TfliteDetector


class _Mediapipe:
    def __init__(self) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        from mediapipe.python.solutions import face_detection, face_mesh

        self.fd = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        self.fm = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                     min_detection_confidence=0.5)

    def run(self, rgb: np.ndarray) -> tuple[float | None, np.ndarray | None]:
        """The kit's former pipeline: full-range detection, then the face mesh on a crop around the largest
        face (margin 0.8 face sizes)."""
        h, w = rgb.shape[:2]
        dets = self.fd.process(rgb).detections or []
        if not dets:
            return None, None
        best = max(dets, key=lambda d: d.location_data.relative_bounding_box.width)
        b = best.location_data.relative_bounding_box
        x0, y0, x1, y1 = b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h
        m = 0.8 * max(x1 - x0, y1 - y0)
        cx0, cy0, cx1, cy1 = int(max(0, x0 - m)), int(max(0, y0 - m)), int(min(w, x1 + m)), int(min(h, y1 + m))
        res = self.fm.process(np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1])).multi_face_landmarks
        if not res:
            return float(best.score[0]), None
        cw, ch = cx1 - cx0, cy1 - cy0
        return float(best.score[0]), np.array([(p.x * cw + cx0, p.y * ch + cy0) for p in res[0].landmark])


def main(paths: list[str]) -> None:
    if paths:
        items = [(Path(p).name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import evalset

        items = [(f.name, f.rgb) for f in evalset.frames()]
    mp, ours = _Mediapipe(), TfliteDetector()
    errs, rel, eye_errs = [], [], []
    for name, rgb in items:
        rgb = np.ascontiguousarray(rgb)
        mp_score, mp_pts = mp.run(rgb)
        faces = ours.faces(rgb)
        pts = ours.mesh(rgb, faces[0]) if faces else None
        if mp_pts is None or pts is None:
            print(f"{name:40} mediapipe {mp_score} ours {faces[0].score if faces else None}: no comparison")
            continue
        d = np.hypot(*(pts[:, :2] - mp_pts).T)
        fw = float(np.hypot(*(mp_pts[454] - mp_pts[234])))
        eyes = d[[468, 473, 33, 133, 159, 145, 263, 362, 386, 374]].mean()
        eye_errs.append(eyes)
        errs.append(d.mean())
        rel.append(d.mean() / fw)
        print(f"{name:40} score mp {mp_score or 0:.2f} ours {faces[0].score:.2f}  mean {d.mean():5.2f} px "
              f"p95 {np.percentile(d, 95):5.2f} px  irises+lids {eyes:5.2f} px  face {fw:5.0f} px  "
              f"({d.mean() / fw:.3f} fw)")
    if errs:
        print(f"\n{len(errs)} frames: mean landmark error {np.mean(errs):.2f} px (median {np.median(errs):.2f}, "
              f"max {np.max(errs):.2f}); {np.mean(rel):.4f} of the face width; "
              f"irises and lids {np.mean(eye_errs):.2f} px")


if __name__ == "__main__":
    main(sys.argv[1:])
