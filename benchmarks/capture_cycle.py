"""Trigger -> verdict time of one capture cycle at full resolution: sealed, unsealed, and a bare JPEG encode.

The cycle is the real daemon on mock pins with the simulated camera: pedal press -> session -> light
up -> capture (render + JPEG encode) -> QC hook -> bundle sealed, written and fsynced -> journal commit ->
OK LED. Measured in the same run, alternating: the same cycle with the spool writing the same bytes
unsealed (a benchmark-only subclass: what sealing costs), and Pillow encoding the same frame at the same
quality (the unavoidable part). Then the per-tap cost of protecting an identity (Argon2id at the default
roster-key cost), which runs off the loop on its own thread. On a Pi the camera's JPEG comes from
picamera2 (simplejpeg), so compare ratios, not absolute milliseconds.

    python benchmarks/capture_cycle.py [--runs 15] [--size 4056x3040] [--qc]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
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
from appliance.protect import RosterKey
from appliance.readers.sim import SimReader
from appliance.roster import load_csv
from appliance.session import Led
from appliance.spool import Spool, Written
from centre.sealing import keygen

PI4_FACTOR = 5.0  # Argon2id on a Pi 4 (Cortex-A72, LPDDR4) vs this x86 core: an estimate, not a measurement


class UnsealedSpool(Spool):
    """The same publish path (write, fsync, rename, fsync) with the bytes left in clear: the baseline only."""

    def _write(self, directory, kind, capture_id, ident, record, photo, derivative):  # type: ignore[override]
        data = json.dumps(record, default=str).encode() + photo + (derivative or b"")
        path = self._publish(directory, capture_id, data)
        return Written(path, hashlib.sha256(data).hexdigest(), len(data), hashlib.sha256(photo).hexdigest())


def cycle(daemon: Daemon, reader: SimReader, pedal: SimPedal, student: str) -> float:
    reader.present(make(Kind.ID_NUMBER, student, Source.SIM))
    daemon.settle()
    time.sleep(0.01)
    daemon.tick()  # close the previous retake window
    t0 = time.perf_counter()
    pedal.press()
    daemon.settle()
    elapsed = time.perf_counter() - t0
    assert daemon.status.state is Led.OK, daemon.status.state
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--size", default="4056x3040")
    ap.add_argument("--qc", action="store_true", help="include the real QC and the diploma derivative in the cycle")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        keygen(data / "centre-keys")
        cfg = Config(data_dir=str(data / "kit"), kit_id="kit-bench")
        cfg = dataclasses.replace(cfg, camera=dataclasses.replace(cfg.camera, width=w, height=h),
                                  session=dataclasses.replace(cfg.session, double_press_s=0.0, retake_window_s=1e-3),
                                  sealing=dataclasses.replace(cfg.sealing, public_keys=(
                                      next((data / "centre-keys").glob("*.pub")).read_text().strip(),)))
        students = [idnumber.make(f"110105200401{i % 28 + 1:02d}{i:03d}") for i in range(2 * args.runs + 2)]
        (data / "r.csv").write_text("id_number\n" + "\n".join(students) + "\n")
        cfg.data_path.mkdir()
        load_csv(data / "r.csv", cfg.roster_path, new_key=RosterKey.new(1, 8192))  # cheap here: taps timed below
        factory, reader = pin_factory("mock"), SimReader()
        scene = None
        assess = no_qc
        if args.qc:  # a real face, so QC and the derivative do their full work
            from appliance.qc.samples import sample_portrait
            from appliance.quality import QualityCheck

            def scene(shot: int, frame: int):
                return sample_portrait(w, h, "good", 1)

            assess = QualityCheck(cfg.qc, cfg.photo_spec)
            assess.warm_up()
        camera = SimCamera(w, h, cfg.camera.jpeg_quality, scene=scene)
        daemon = Daemon(cfg, Devices(camera, [reader], factory), SystemClock(), assess)
        daemon.start()
        sealed_spool = daemon.spool
        unsealed_spool = UnsealedSpool(cfg.data_path / "spool-unsealed", sealed_spool.key)
        pedal = SimPedal(factory, cfg.trigger)
        frame = camera.render(0, 0)  # the same frame the cycle encodes (warms the render cache too)
        sealed, unsealed, encodes = [], [], []
        for i in range(args.runs):
            daemon.spool = sealed_spool
            sealed.append(cycle(daemon, reader, pedal, students[2 * i]))
            daemon.spool = unsealed_spool
            unsealed.append(cycle(daemon, reader, pedal, students[2 * i + 1]))
            t0 = time.perf_counter()
            buf = io.BytesIO()
            frame.save(buf, "JPEG", quality=cfg.camera.jpeg_quality)
            encodes.append(time.perf_counter() - t0)
        daemon.spool = sealed_spool
        daemon.close()
    key = RosterKey.new()
    taps = []
    for i in range(max(10, args.runs)):
        t0 = time.perf_counter()
        key.protect(Kind.ID_NUMBER, students[i % len(students)])
        taps.append(time.perf_counter() - t0)

    def med(xs: list[float]) -> float:
        return statistics.median(xs) * 1000

    def p95(xs: list[float]) -> float:
        return sorted(xs)[int(0.95 * (len(xs) - 1))] * 1000

    what = "with QC + derivative" if args.qc else "QC off"
    print(f"frame {w}x{h}, JPEG quality {cfg.camera.jpeg_quality}, {args.runs} runs each,"
          f" {len(buf.getvalue()) // 1024} KB; {what}")
    print(f"trigger -> verdict, sealed:      median {med(sealed):7.1f} ms   p95 {p95(sealed):7.1f} ms")
    print(f"trigger -> verdict, unsealed:    median {med(unsealed):7.1f} ms   p95 {p95(unsealed):7.1f} ms")
    print(f"bare JPEG encode of the frame:   median {med(encodes):7.1f} ms")
    print(f"sealing adds {100 * (med(sealed) / med(unsealed) - 1):+.1f} % to trigger -> verdict (goal <= +10 %);"
          f" sealed cycle / encode {med(sealed) / med(encodes):.2f}")
    tap = med(taps)
    print(f"per-tap identity protection (Argon2id, opslimit {key.opslimit}, {key.memlimit >> 20} MiB, off the loop):"
          f" median {tap:.1f} ms here, ~{tap * PI4_FACTOR:.0f} ms estimated on a Pi 4 (x{PI4_FACTOR:g}, not measured)")


if __name__ == "__main__":
    main()
