"""Write the QC verdict and reason codes of every evaluation frame as JSON, to compare platforms.

    python scripts/qc_verdicts.py OUT.json

Output: {"<frame name>": {"verdict": "pass|warn|fail", "reasons": [...]}} where reasons are the reason codes
of the checks that gave the verdict (as the daemon records them). Needs only the kit's own dependencies
(numpy, opencv-python-headless, Pillow) and a repository checkout: the frames are generated from
tests/data/eval/people and appliance/qc/samples.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "data" / "eval")]

import evalset  # noqa: E402

from appliance.qc import PhotoSpec, QcConfig, assess_array  # noqa: E402


def main(out: str) -> None:
    result = {}
    for f in evalset.frames():
        rep = assess_array(f.rgb, None, QcConfig(), PhotoSpec(), full_size=evalset.FULL_SIZE)
        reasons = [c.reason_code for c in rep.checks if c.result == rep.verdict and c.result != "pass"]
        result[f.name] = {"verdict": rep.verdict, "reasons": reasons}
    Path(out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} frames -> {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
