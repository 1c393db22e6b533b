"""Whole QC + derivative per 12 MP shot next to a bare full JPEG decode of the same shot, in the same run.

    taskset -c 0 python benchmarks/qc.py [--runs 30]

Prints median and p95 (ms) of: a full Pillow decode (the baseline, as the kit decoded before) and a
full OpenCV decode (the fastest full decode available here), QC + derivative from the JPEG (``assess`` with the
spec, then ``make_derivative`` reusing QC's decode — what the daemon runs when there is no lores frame), QC +
derivative from a 640x480 lores frame (the Pi path), and the derivative alone when it must decode again;
then the ratios to the baselines.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from appliance.qc import PhotoSpec, QcConfig, assess, assess_array, make_derivative
from appliance.qc.samples import sample_portrait


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    fn()  # warm-up: first-touch allocations and caches are not what is measured
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    cfg, spec = QcConfig(), PhotoSpec()
    shots = []
    for variant, index in (("good", 0), ("good", 1), ("good", 2), ("blue_shirt", 1)):
        buf = io.BytesIO()
        sample_portrait(4056, 3040, variant, index).save(buf, "JPEG", quality=90)
        shots.append(buf.getvalue())
    lores = [np.asarray(Image.open(io.BytesIO(j)).resize((640, 480), Image.Resampling.BILINEAR)) for j in shots]
    reports = [assess(j, cfg, spec) for j in shots]
    fresh = dataclasses.replace(reports[1], source=None)  # no decode to reuse
    counter = iter(range(10**9))

    def pick() -> int:
        return next(counter) % len(shots)

    def qc_jpeg() -> None:
        j = shots[pick()]
        r = assess(j, cfg, spec)
        make_derivative(j, r, spec)

    def qc_lores() -> None:
        i = pick()
        r = assess_array(lores[i], shots[i], cfg, spec)
        make_derivative(shots[i], r, spec)

    rows = [
        ("full JPEG decode, Pillow (baseline)",
         timed(lambda: np.asarray(Image.open(io.BytesIO(shots[pick()])).convert("RGB")), args.runs)),
        ("full JPEG decode, OpenCV", timed(lambda: cv2.imdecode(np.frombuffer(shots[pick()], np.uint8),
                                                                cv2.IMREAD_COLOR), args.runs)),
        ("QC + derivative from the JPEG", timed(qc_jpeg, args.runs)),
        ("QC + derivative from 640x480 lores", timed(qc_lores, args.runs)),
        ("derivative alone (new decode), face 0.2", timed(lambda: make_derivative(shots[1], fresh, spec), args.runs)),
    ]
    cpus = len(os.sched_getaffinity(0))
    print(f"12 MP shots (4056x3040, JPEG q90, {len(shots)} variants), {args.runs} runs each, {cpus} CPU(s) allowed")
    print(f"{'':44} {'median ms':>10} {'p95 ms':>8}")
    for name, (med, p95) in rows:
        print(f"{name:44} {med:10.1f} {p95:8.1f}")
    pil, ocv = rows[0][1][0], rows[1][1][0]
    for i in (2, 3):
        med = rows[i][1][0]
        print(f"ratio {rows[i][0]} / full decode: {med / pil:.2f} (Pillow), {med / ocv:.2f} (OpenCV)")
    med = rows[2][1][0]
    print(f"goals (JPEG path): median <= 100 ms -> {'met' if med <= 100 else 'NOT met'}; "
          f"<= 0.5 x bare Pillow decode -> {'met' if med <= 0.5 * pil else 'NOT met'}")


if __name__ == "__main__":
    main()
