"""Fifty kits uploading to one centre process at once, next to fifty bare concurrent PUTs of the same bytes.

    python benchmarks/centre_ingest.py [--kits 50] [--per-kit 4] [--mb 4] [--chunk-mb 4] [--cpus ""] [--processes 1]

Each simulated kit is a real one as far as the centre can tell: its own kit id and token (``add-kit``, assigned
to a school with a roster), its own journal and outbox of ``--per-kit`` real sealed bundles (photo = random bytes,
``[0.75, 1.5] x --mb`` MB, as in ``sync_backlog.py``), and its own real ``sync.daemon.SyncDaemon`` (its own
``Centre`` client, requests session and connection, journal connection, inotify observer). The fifty daemons run
in one process, one thread each (fifty interpreters would spend the run starting up on two cores): each does its
heartbeat and roster pull first, then all start uploading at once (a barrier) and each drains its outbox in its
own loop. The centre is one ``capturekit centre serve`` process (``benchmarks/_bench_centre.py``: SQLite + a
directory, plus the benchmark-only ``PUT /bench/sink/<name>``).

Baseline, same run, same centre process: fifty threads, one ``requests.Session`` each, PUT the same bundles'
sealed bytes to the sink (streamed to a file, fsynced, renamed, directory fsynced), each thread its kit's
bundles one after another — once before the kits and once after (drift in the machine's load shows as the
difference). Per-upload latency: a bare PUT's round trip; a kit's first attempt at a bundle to its
confirmation (retries and back-off included). Ratio = kits' MB/s / mean of the two bare passes (goal >= 0.8).
CPU per upload: this process (the fifty clients; note the kits' own CPU shares the machine with the centre here,
as real kits would not) and the centre process. ``--processes N``: N centre processes on the one database,
store and keys (the centre's horizontal form; each its own port, as behind a load balancer), kit i talking to
process i mod N, and the bare PUTs spread the same way; CPU is all of them, RSS the first. The centre's VmRSS
is sampled every 0.5 s from /proc. MB = 2^20
bytes. Temporary data under /var/tmp, deleted.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_centre import (
    MB,
    BenchCentre,
    KitBundle,
    RssSampler,
    bare_put,
    build_kit,
    cpu_s,
    kit_config,
    pct,
    photo_pool,
    quiesce,
    rss_summary,
    tempdir,
)

from sync.daemon import SyncDaemon


class TimedSync(SyncDaemon):
    """The real daemon; records each bundle's first attempt -> confirmation, and the attempts that failed."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.first: dict[str, float] = {}
        self.latency: list[float] = []
        self.failed_attempts = 0

    def upload(self, *cids: str) -> None:
        now = time.perf_counter()
        for cid in cids:
            self.first.setdefault(cid, now)
        super().upload(*cids)

    def _confirmed(self, cid: str, done) -> None:  # (recorded once the round of parallel uploads is back)
        super()._confirmed(cid, done)
        self.latency.append(time.perf_counter() - self.first[cid])

    def _failed(self, cid: str, bundle, exc: Exception):
        self.failed_attempts += 1
        return super()._failed(cid, bundle, exc)


def concurrently(jobs: list, run) -> float:
    """Run ``run(job)`` for every job on its own thread, all released at once; wall time of the slowest."""
    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def go(job) -> None:
        barrier.wait()
        try:
            run(job)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def centre_cpu(centre: BenchCentre) -> float:
    """CPU seconds of every centre process so far."""
    return sum(cpu_s(pid) for pid in centre.pids)


def bare_pass(centre: BenchCentre, kits: list[list[KitBundle]]) -> tuple[float, list[float], float, float]:
    import requests

    urls = centre.urls
    sessions = [(requests.Session(), urls[i % len(urls)]) for i in range(len(kits))]  # as the kits spread
    for (s, url), bundles in zip(sessions, kits, strict=True):  # warm: one connection per kit
        bare_put(s, url, bundles[0])
    centre.clear_sink()
    quiesce()
    lat: list[float] = []

    def run(job) -> None:
        (s, url), bundles = job
        for b in bundles:
            lat.append(bare_put(s, url, b))

    c0, k0 = time.process_time(), centre_cpu(centre)
    elapsed = concurrently(list(zip(sessions, kits, strict=True)), run)
    cpu = (time.process_time() - c0, centre_cpu(centre) - k0)
    for s, _ in sessions:
        s.close()
    return elapsed, lat, *cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kits", type=int, default=50)
    ap.add_argument("--per-kit", type=int, default=4, help="bundles in each kit's outbox")
    ap.add_argument("--mb", type=float, default=4.0, help="photo size: uniform in [0.75, 1.5] x MB")
    ap.add_argument("--chunk-mb", type=float, default=4.0, help="sync.chunk_bytes in MB (one tus PATCH)")
    ap.add_argument("--cpus", default="", help="taskset CPU list for the centre and this process (default: none)")
    ap.add_argument("--processes", type=int, default=1, help="centre processes on the one SQLite + directory (the"
                    " kits and the bare PUTs spread over them)")
    ap.add_argument("--limit", type=float, default=1800.0, help="seconds a kit may take to drain its outbox")
    args = ap.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempdir("ck-ingest-bench-") as tmp:
        root = Path(tmp)
        centre = BenchCentre(root, args.cpus)
        for _ in range(args.processes - 1):
            centre.sibling()
        with centre:
            names = [f"kit-c{i:02d}" for i in range(args.kits)]
            tokens = centre.add_kits(names)
            pool, rng = photo_pool(args.mb), random.Random(14)
            t0 = time.perf_counter()
            kits = [build_kit(root / name, name, args.per_kit, args.mb, centre.sealing_line, pool, rng)
                    for name in names]
            build_s = time.perf_counter() - t0
            total = sum(b.length for k in kits for b in k) / MB
            n = sum(len(k) for k in kits)

            with RssSampler(centre.pid) as rss1:
                bare1, lat1, *cpu1 = bare_pass(centre, kits)
            centre.clear_sink()

            urls = centre.urls
            daemons = [TimedSync(kit_config(root / name, name, centre.sealing_line, urls[i % len(urls)],
                                            tokens[name], int(args.chunk_mb * MB))) for i, name in enumerate(names)]
            for d in daemons:
                d.start()
                d._contact(d.heartbeat, "heartbeat")  # a kit that comes online: heartbeat, roster, then uploads
                d._contact(d.roster, "roster")
                now = time.monotonic()
                d.heart.done(now)
                d.rost.done(now)
            try:
                quiesce()
                with RssSampler(centre.pid) as rss2:
                    c0, k0 = time.process_time(), centre_cpu(centre)
                    synced = concurrently(daemons, lambda d: d.settle(args.limit))
                    cpu2 = (time.process_time() - c0, centre_cpu(centre) - k0)
                    opened_after = centre.wait_opened("kit-c", args.kits * args.per_kit)
            finally:
                for d in daemons:
                    d.close()
            lat_sync = [x for d in daemons for x in d.latency]
            failed = sum(d.failed_attempts for d in daemons)

            with RssSampler(centre.pid) as rss3:
                bare2, lat2, *cpu3 = bare_pass(centre, kits)
            centre.clear_sink()
            held = centre.count_stored("kit-c")
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    if held != n or len(lat_sync) != n:
        raise SystemExit(f"the centre holds {held} of {n} bundles ({len(lat_sync)} confirmed)")

    bare_mbs = statistics.mean([total / bare1, total / bare2])
    print(f"{args.kits} kits x {args.per_kit} bundles = {n} uploads, {total:.0f} MB sealed (mean"
          f" {total / n:.2f} MB; photo = random bytes), chunk {args.chunk_mb:g} MB; kits built in {build_s:.1f} s;"
          f" {'pinned to CPUs ' + args.cpus if args.cpus else 'not pinned'}; {args.processes} centre"
          f" process(es); load {load0} -> {load1}"
          f" ({os.cpu_count()} CPUs)")
    print(f"  {'':40} {'time s':>7} {'MB/s':>7} {'uploads/s':>9} {'median s':>8} {'p99 s':>7} {'ratio':>6}"
          "   CPU ms per upload: clients  centre")

    def row(name: str, t: float, lat: list[float], cpu: list[float] | tuple[float, float]) -> None:
        print(f"  {name:<40} {t:7.1f} {total / t:7.1f} {n / t:9.1f} {statistics.median(lat):8.2f}"
              f" {pct(lat, 99):7.2f} {total / t / bare_mbs:6.2f} {cpu[0] * 1000 / n:26.1f} {cpu[1] * 1000 / n:7.1f}")

    row(f"{args.kits} bare concurrent PUTs, pass 1", bare1, lat1, cpu1)
    row(f"{args.kits} bare concurrent PUTs, pass 2", bare2, lat2, cpu3)
    row(f"{args.kits} kits' SyncDaemons (goal >= 0.8)", synced, lat_sync, cpu2)
    print(f"  kits' failed attempts (retried after back-off): {failed}")
    print(f"  every bundle opened by the centre (stored, with its capture) {opened_after:.1f} s after the kits were"
          " done (opening follows the confirmation, centre/opener.py; the centre's CPU above includes it)")
    which = " (the first of them)" if args.processes > 1 else ""
    print(f"  RSS centre{which} during the kits:     {rss_summary(rss2.mb())}")
    print(f"  RSS centre during bare, pass 1: {rss_summary(rss1.mb())}")
    print(f"  RSS centre during bare, pass 2: {rss_summary(rss3.mb())}")


if __name__ == "__main__":
    main()
