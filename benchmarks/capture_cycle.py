"""Trigger -> verdict time of one capture cycle at full resolution, next to a bare JPEG encode of the same frame.

The cycle is the real daemon on mock pins with the simulated camera: pedal press -> session -> light
up -> capture (render + JPEG encode) -> QC hook -> bundle written and fsynced -> journal commit -> OK LED.
The baseline, measured in the same run, is Pillow encoding the same 4056x3040 frame at the same
quality: the ratio says how much the kit adds on top of the unavoidable encode. On a Pi the camera's
JPEG comes from picamera2 (simplejpeg), so compare ratios, not absolute milliseconds.

    python benchmarks/capture_cycle.py [--runs 15] [--size 4056x3040]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import tempfile
import time
from pathlib import Path

from appliance import idnumber
from appliance.clock import SystemClock
from appliance.config import Config
from appliance.daemon import Daemon, Devices, no_qc
from appliance.devices.camera import SimCamera
from appliance.devices.gpio import SimPedal, pin_factory
from appliance.identity import Kind, Source, make
from appliance.readers.sim import SimReader
from appliance.roster import load_csv
from appliance.session import Led


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--size", default="4056x3040")
    ap.add_argument("--qc", action="store_true", help="include the real QC and the diploma derivative in the cycle")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        cfg = Config(data_dir=str(data), kit_id="kit-bench")
        cfg = dataclasses.replace(cfg, camera=dataclasses.replace(cfg.camera, width=w, height=h),
                                  session=dataclasses.replace(cfg.session, double_press_s=0.0,
                                                              retake_window_s=1e-3))
        students = [idnumber.make(f"110105200401{i % 28 + 1:02d}{i:03d}") for i in range(args.runs + 1)]
        (data / "r.csv").write_text("id_number\n" + "\n".join(students) + "\n")
        load_csv(data / "r.csv", cfg.roster_path)
        factory, reader = pin_factory("mock"), SimReader()
        scene = None
        assess = no_qc
        if args.qc:  # a real face, so QC and the derivative do their full work
            from appliance.qc.samples import sample_portrait
            from appliance.quality import QualityCheck

            def scene(shot: int, frame: int):
                return sample_portrait(w, h, "good", 0)

            assess = QualityCheck(cfg.qc, cfg.photo_spec)
            assess.warm_up()
        camera = SimCamera(w, h, cfg.camera.jpeg_quality, scene=scene)
        daemon = Daemon(cfg, Devices(camera, [reader], factory), SystemClock(), assess)
        daemon.start()
        pedal = SimPedal(factory, cfg.trigger)
        frame = camera.render(0, 0)  # the same frame the cycle encodes (warms the render cache too)
        cycles, encodes = [], []
        for i in range(args.runs):
            reader.present(make(Kind.ID_NUMBER, students[i], Source.SIM))
            daemon.settle()
            time.sleep(0.01)
            daemon.tick()  # close the previous retake window
            t0 = time.perf_counter()
            pedal.press()
            daemon.settle()
            cycles.append(time.perf_counter() - t0)
            assert daemon.status.state is Led.OK, daemon.status.state
            t0 = time.perf_counter()
            buf = io.BytesIO()
            frame.save(buf, "JPEG", quality=cfg.camera.jpeg_quality)
            encodes.append(time.perf_counter() - t0)
        daemon.close()
    cyc, enc = statistics.median(cycles) * 1000, statistics.median(encodes) * 1000
    p95 = sorted(cycles)[int(0.95 * (len(cycles) - 1))] * 1000
    print(f"frame {w}x{h}, JPEG quality {cfg.camera.jpeg_quality}, {args.runs} runs, {len(buf.getvalue()) // 1024} KB")
    what = "with QC + derivative" if args.qc else "QC off"
    print(f"trigger -> verdict (OK LED, stored; {what}):  median {cyc:7.1f} ms   p95 {p95:7.1f} ms")
    print(f"bare JPEG encode of the same frame:   median {enc:7.1f} ms")
    print(f"ratio cycle / encode: {cyc / enc:.2f}")


if __name__ == "__main__":
    main()
