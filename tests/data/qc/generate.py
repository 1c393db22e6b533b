"""Regenerate the QC evaluation set in this folder (run from the project root):

    python tests/data/qc/generate.py

Each frame is composed at the camera's 4056x3040 by appliance.qc.samples, encoded as the camera would
(JPEG q90), decoded at 1/4 DCT scale exactly as QC does, and stored as a 1014x760 JPEG. LABELS.csv says
which checks must fail ("must_fail") and which may fail or not without being wrong ("may_fail", e.g. a
second cause of the same fault); every other check must not fail. Labels follow from how each variant
is built, not from what the checks measured.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

from appliance.qc.samples import sample_portrait

HERE = Path(__file__).resolve().parent
INDICES = (0, 1, 2, 3)  # two faces, then both again mirrored with jittered framing
LABELS: dict[str, tuple[str, str]] = {  # variant: (must_fail, may_fail)
    "good": ("", ""),
    "blurred": ("sharpness", ""),
    "dark": ("exposure;background_colour", "clothing"),
    "overexposed": ("exposure;highlights;background_colour", "clothing;illumination;sharpness;eyes_visible;crop"),
    "blue_shirt": ("clothing", ""),
    "off_centre": ("face_centre", ""),
    "eyes_occluded": ("eyes_visible", ""),
    "no_face": ("face_count;crop", ""),
    "two_faces": ("face_count", "background_uniformity;background_colour;crop"),
    "rolled": ("roll", ""),
    "small_face": ("face_size", "eye_height;crop"),
    "uneven_light": ("illumination;background_uniformity", "background_colour;highlights;exposure;crop"),
    "cluttered_background": ("background_colour;background_uniformity", "clothing;crop"),
}


def main() -> None:
    rows = []
    for variant, (must, may) in LABELS.items():
        for index in INDICES:
            im = sample_portrait(4056, 3040, variant, index)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
            small = Image.open(io.BytesIO(buf.getvalue()))
            small.draft("RGB", (1014, 760))
            name = f"{variant}_{index}.jpg"
            small.convert("RGB").save(HERE / name, quality=88)
            rows.append({"file": name, "variant": variant, "index": index, "must_fail": must, "may_fail": may})
    with open(HERE / "LABELS.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "variant", "index", "must_fail", "may_fail"])
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
