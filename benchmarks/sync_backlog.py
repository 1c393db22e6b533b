"""A kit's backlog through the real sync daemon to a real centre, next to bare PUTs of the same bytes, one run.

    python benchmarks/sync_backlog.py [--bundles 500] [--mb 4] [--chunk-mb 4] [--cpus ""]

Builds one kit: a journal and an outbox of ``--bundles`` real bundles sealed by ``appliance.spool.Spool`` (photo
= random bytes, ``[0.75, 1.5] x --mb`` MB, 3–6 MB at 4, plus a 64 KiB derivative: the simulated camera's 4056x3040
JPEG is only ~1.1 MB, its synthetic scene compresses far better than a real 12 MP photo, and the sealed bytes
that travel are incompressible either way). Starts the centre (``benchmarks/_bench_centre.py``: ``capturekit
centre serve`` on SQLite + a directory, with a benchmark-only ``PUT /bench/sink/<name>`` beside the kit API).
Then, against that one process:

  1. bare: one ``requests.Session`` PUTs each bundle's sealed bytes to the sink (streamed to a file, fsynced,
     renamed, directory fsynced: the durability the centre gives an object), one after another;
  2. sync: ``capturekit sync --drain`` as a subprocess (the real ``SyncDaemon``: scan, heartbeat, roster,
     then tus create + PATCH chunks of ``--chunk-mb`` + confirmation, journal rows); its VmRSS and the centre's
     sampled every 0.5 s from /proc;
  3. bare again (brackets drift in the machine's load between the passes).

Each timed pass starts after a ``sync`` (no pass pays for the writeback of the phase before it).

"upload loop" is the journal's earliest ``last_attempt_at`` to its last ``confirmed_at`` (the bare pass's
equivalent window; latency per bundle: its attempt to its confirmation); "whole process" is spawn to exit
(interpreter start, scan, heartbeat, roster included). Ratio = sync MB/s / mean of the two bare passes (goal
>= 0.9). CPU per bundle (from /proc and rusage, less sensitive than wall time to a shared machine's load): the
client (this process for bare, the whole ``capturekit sync`` process for sync) and the centre process over the
pass. MB = 2^20 bytes. ``--cpus 0`` pins the centre,
the sync daemon and this process with taskset (default: not pinned). Temporary data under /var/tmp, deleted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_centre import (
    MB,
    REPO,
    BenchCentre,
    Pass,
    RssSampler,
    bare_put,
    build_kit,
    cpu_s,
    kit_config,
    kit_toml,
    pct,
    photo_pool,
    quiesce,
    rss_summary,
    tempdir,
)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bare_pass(centre: BenchCentre, bundles: list) -> Pass:
    import requests

    with requests.Session() as s:
        for b in bundles[:3]:  # warm: connection, the sink's first file
            bare_put(s, centre.url, b)
        centre.clear_sink()
        quiesce()
        c0, k0, t0 = time.process_time(), cpu_s(centre.pid), time.perf_counter()
        lat = [bare_put(s, centre.url, b) for b in bundles]
        return Pass(time.perf_counter() - t0, lat, time.process_time() - c0, cpu_s(centre.pid) - k0)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def sync_pass(centre: BenchCentre, kit_dir: Path, toml: Path, cpus: str,
              drain: float) -> tuple[Pass, float, RssSampler, RssSampler, str]:
    cmd = [sys.executable, "-m", "appliance.cli", "--config", str(toml), "sync", "--drain", str(drain)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    quiesce()
    with RssSampler(centre.pid) as centre_rss:
        c0, k0, t0 = children_cpu(), cpu_s(centre.pid), time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=kit_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with RssSampler(proc.pid) as sync_rss:
            out, err = proc.communicate()
        whole = time.perf_counter() - t0
        kit_cpu, centre_cpu = children_cpu() - c0, cpu_s(centre.pid) - k0
    if proc.returncode != 0:
        raise RuntimeError(f"capturekit sync exited {proc.returncode}: {out[-500:]} {err[-2000:]}")
    db = sqlite3.connect(f"file:{kit_dir / 'journal.sqlite'}?mode=ro", uri=True)
    rows = db.execute("SELECT last_attempt_at, confirmed_at FROM uploads WHERE status = 'confirmed'").fetchall()
    db.close()
    first = min(dt.datetime.fromisoformat(a) for a, _ in rows)
    last = max(dt.datetime.fromisoformat(c) for _, c in rows)
    lat = [(dt.datetime.fromisoformat(c) - dt.datetime.fromisoformat(a)).total_seconds() for a, c in rows]
    return Pass((last - first).total_seconds(), lat, kit_cpu, centre_cpu), whole, sync_rss, centre_rss, out.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=int, default=500)
    ap.add_argument("--mb", type=float, default=4.0, help="photo size: uniform in [0.75, 1.5] x MB")
    ap.add_argument("--chunk-mb", type=float, default=4.0, help="sync.chunk_bytes in MB (one tus PATCH)")
    ap.add_argument("--cpus", default="", help="taskset CPU list for every process (default: not pinned)")
    ap.add_argument("--drain", type=float, default=3600.0)
    args = ap.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    load0 = loadavg()
    with tempdir("ck-sync-bench-") as tmp:
        root = Path(tmp)
        centre = BenchCentre(root, args.cpus)
        with centre:
            kit_id = "kit-bench"
            token = centre.add_kits([kit_id])[kit_id]
            t0 = time.perf_counter()
            bundles = build_kit(root / "kit", kit_id, args.bundles, args.mb, centre.sealing_line,
                                photo_pool(args.mb), random.Random(14))
            build_s = time.perf_counter() - t0
            cfg = kit_config(root / "kit", kit_id, centre.sealing_line, centre.url, token, int(args.chunk_mb * MB))
            toml = kit_toml(root / "kit.toml", cfg)
            total = sum(b.length for b in bundles) / MB

            with RssSampler(centre.pid) as bare_rss:
                bare1 = bare_pass(centre, bundles)
            centre.clear_sink()
            sync, whole, sync_rss, centre_rss, said = sync_pass(centre, root / "kit", toml, args.cpus, args.drain)
            opened_after = centre.wait_opened(f"{kit_id}-", len(bundles))
            with RssSampler(centre.pid) as bare_rss2:
                bare2 = bare_pass(centre, bundles)
            centre.clear_sink()
            held = centre.count_stored(f"{kit_id}-")
    load1 = loadavg()
    if held != len(bundles):
        raise SystemExit(f"the centre holds {held} of {len(bundles)} bundles")

    n = len(bundles)
    sizes = [b.length / MB for b in bundles]
    bare_mbs = statistics.mean([total / bare1.seconds, total / bare2.seconds])
    print(f"{n} bundles, {total:.0f} MB sealed ({min(sizes):.1f}–{max(sizes):.1f} MB, mean"
          f" {statistics.mean(sizes):.2f}; photo = random bytes), chunk {args.chunk_mb:g} MB; kit built in"
          f" {build_s:.1f} s; {'pinned to CPUs ' + args.cpus if args.cpus else 'not pinned'};"
          f" load {load0} -> {load1} ({os.cpu_count()} CPUs)")
    print(f"  {'':44} {'time s':>7} {'MB/s':>7} {'bundles/s':>9} {'median ms':>9} {'p99 ms':>8} {'ratio':>6}"
          f"   CPU ms per bundle: client  centre")

    def row(name: str, t: float, lat: list[float] | None, cpu: Pass | None) -> None:
        med = f"{statistics.median(lat) * 1000:9.1f} {pct(lat, 99) * 1000:8.1f}" if lat else f"{'':9} {'':8}"
        cpus = f"{cpu.client_cpu * 1000 / n:25.1f} {cpu.centre_cpu * 1000 / n:7.1f}" if cpu else ""
        print(f"  {name:<44} {t:7.1f} {total / t:7.1f} {n / t:9.1f} {med} {total / t / bare_mbs:6.2f} {cpus}")

    row("bare requests PUT to the sink, pass 1", bare1.seconds, bare1.latencies, bare1)
    row("bare requests PUT to the sink, pass 2", bare2.seconds, bare2.latencies, bare2)
    row("sync daemon, upload loop (goal ratio >= 0.9)", sync.seconds, sync.latencies, None)
    row("sync daemon, whole process (CPU: all of it)", whole, None, sync)
    t_first = sync_rss.samples[0][0] if sync_rss.samples else 0.0
    print(f"  RSS sync daemon (capturekit sync, subprocess): {rss_summary(sync_rss.mb(t_first + 3))}"
          " (from 3 s after spawn; goal flat, < 150 MB)")
    print(f"  RSS centre during sync:   {rss_summary(centre_rss.mb())}")
    print(f"  RSS centre during bare 1: {rss_summary(bare_rss.mb())}")
    print(f"  RSS centre during bare 2: {rss_summary(bare_rss2.mb())}")
    print(f"  {said}; every bundle opened by the centre (stored, with its capture) {opened_after:.1f} s after the"
          " sync daemon exited (opening follows the confirmation, centre/opener.py)")


if __name__ == "__main__":
    main()
