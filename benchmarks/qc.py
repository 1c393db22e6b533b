"""QC time per 12 MP shot next to a bare full JPEG decode of the same shot, measured in the same run.

    taskset -c 0 python benchmarks/qc.py [--runs 30]

Prints median and p95 (ms) of: full Pillow decode (the baseline), QC from the JPEG (assess: 1/4-scale
decode + detection + checks), QC from a 640x480 lores frame (assess_array, the Pi path), and the
derivative; then QC / decode as a ratio.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

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
    for variant, index in (("good", 0), ("good", 1), ("blurred", 0), ("two_faces", 1)):
        buf = io.BytesIO()
        sample_portrait(4056, 3040, variant, index).save(buf, "JPEG", quality=90)
        shots.append(buf.getvalue())
    lores = [np.asarray(Image.open(io.BytesIO(j)).resize((640, 480), Image.Resampling.BILINEAR)) for j in shots]
    report = assess(shots[0], cfg, spec)  # warm-up: builds the mediapipe graphs
    counter = iter(range(10**9))

    def pick() -> int:
        return next(counter) % len(shots)

    rows = [
        ("full JPEG decode (baseline)", timed(lambda: np.asarray(Image.open(io.BytesIO(shots[pick()])).convert("RGB")),
                                              args.runs)),
        ("QC from JPEG (assess)", timed(lambda: assess(shots[pick()], cfg, spec), args.runs)),
        ("QC from 640x480 lores (assess_array)",
         timed(lambda: assess_array(lores[(i := pick())], shots[i], cfg, spec), args.runs)),
        ("derivative (make_derivative)", timed(lambda: make_derivative(shots[0], report, spec), args.runs)),
    ]
    cpus = len(os.sched_getaffinity(0))
    print(f"12 MP shots (4056x3040, JPEG q90, {len(shots)} variants), {args.runs} runs each, {cpus} CPU(s) allowed")
    print(f"{'':40} {'median ms':>10} {'p95 ms':>8}")
    for name, (med, p95) in rows:
        print(f"{name:40} {med:10.1f} {p95:8.1f}")
    base = rows[0][1][0]
    print(f"ratio QC(assess) / full decode: {rows[1][1][0] / base:.2f}")
    print(f"ratio QC(lores) / full decode:  {rows[2][1][0] / base:.2f}")
    print(f"budget: 150 ms per shot -> {'met' if rows[1][1][1] < 150 else 'NOT met'} at p95 (assess)")


if __name__ == "__main__":
    main()
