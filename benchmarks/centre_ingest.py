"""Fifty kits uploading to one centre process at once, next to fifty bare concurrent PUTs of the same bytes.

    python benchmarks/centre_ingest.py [--kits 50] [--per-kit 4] [--mb 4] [--chunk-mb 4] [--rounds 3] [--cpus ""]
                                       [--processes 1] [--parallel 2]

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
bundles one after another. The run: a **warm-up** round of fifty other kits (not counted: a fresh process's
first pass runs in memory no bundle has been through yet, and was up to twice as fast as any later pass of the
same bytes), then ``--rounds`` rounds of (bare pass, kits), each with its own fifty kits, and a last bare pass;
``sync`` before every timed pass, so none pays for the writeback of the one before. Per-upload latency: a bare
PUT's round trip; a kit's first attempt at a bundle to its confirmation (retries and back-off included). Each
kit keeps ``--parallel`` uploads in flight (its ``sync.parallel_uploads``, 2 by default): twice the bare pass's
fifty at once, so at the same throughput each upload takes about twice as long; ``--parallel 1`` compares the
latencies like for like.
Ratio = all the kits' rounds' MB/s / all the bare passes' MB/s (goal >= 0.8); each round's is given too.
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
    Pass,
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

    def _send(self, slot: int, cid: str, bundle, url):  # (in an upload thread: its start is the attempt's)
        self.first.setdefault(cid, time.perf_counter())
        return super()._send(slot, cid, bundle, url)

    def _confirmed(self, cid: str, done) -> None:  # (recorded by the loop as soon as the upload is back)
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


def bare_pass(centre: BenchCentre, kits: list[list[KitBundle]], mb: float) -> Pass:
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

    with RssSampler(centre.pid) as rss:
        c0, k0 = time.process_time(), centre_cpu(centre)
        elapsed = concurrently(list(zip(sessions, kits, strict=True)), run)
        done = Pass(elapsed, lat, time.process_time() - c0, centre_cpu(centre) - k0, mb, rss=rss)
    for s, _ in sessions:
        s.close()
    centre.clear_sink()
    return done


def kits_pass(centre: BenchCentre, prefix: str, names: list[str], tokens: dict[str, str], chunk_mb: float,
              per_kit: int, limit: float, mb: float, parallel: int) -> Pass:
    """Fifty real SyncDaemons, heartbeat and roster first, then all draining their outboxes at once; then the
    wait until the centre has opened all their bundles."""
    urls = centre.urls
    daemons = [TimedSync(kit_config(centre.root / name, name, centre.sealing_line, urls[i % len(urls)],
                                    tokens[name], int(chunk_mb * MB), parallel)) for i, name in enumerate(names)]
    for d in daemons:
        d.start()
        d._contact(d.heartbeat, "heartbeat")  # a kit that comes online: heartbeat, roster, then uploads
        d._contact(d.roster, "roster")
        now = time.monotonic()
        d.heart.done(now)
        d.rost.done(now)
    try:
        quiesce()
        with RssSampler(centre.pid) as rss:
            c0, k0 = time.process_time(), centre_cpu(centre)
            synced = concurrently(daemons, lambda d: d.settle(limit))
            done = Pass(synced, [x for d in daemons for x in d.latency], time.process_time() - c0,
                        centre_cpu(centre) - k0, mb, sum(d.failed_attempts for d in daemons), rss=rss)
        done.opened_after = centre.wait_opened(prefix, len(names) * per_kit)
    finally:
        for d in daemons:
            d.close()
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kits", type=int, default=50)
    ap.add_argument("--per-kit", type=int, default=4, help="bundles in each kit's outbox")
    ap.add_argument("--mb", type=float, default=4.0, help="photo size: uniform in [0.75, 1.5] x MB")
    ap.add_argument("--chunk-mb", type=float, default=4.0, help="sync.chunk_bytes in MB (one tus PATCH)")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (bare, kits), then one more bare pass")
    ap.add_argument("--cpus", default="", help="taskset CPU list for the centre and this process (default: none)")
    ap.add_argument("--processes", type=int, default=1, help="centre processes on the one SQLite + directory (the"
                    " kits and the bare PUTs spread over them)")
    ap.add_argument("--parallel", type=int, default=0, help="each kit's sync.parallel_uploads (default: the kit's"
                    " default, 2)")
    ap.add_argument("--limit", type=float, default=1800.0, help="seconds a kit may take to drain its outbox")
    args = ap.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from appliance.config import SyncConfig

    parallel = args.parallel or SyncConfig().parallel_uploads
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempdir("ck-ingest-bench-") as tmp:
        root = Path(tmp)
        centre = BenchCentre(root, args.cpus)
        for _ in range(args.processes - 1):
            centre.sibling()
        with centre:
            # set 0 warms the centre up (unmeasured); set r is round r's: its bytes PUT bare, then its kits
            sets = [[f"kit-w{r}c{i:02d}" for i in range(args.kits)] for r in range(args.rounds + 1)]
            tokens = {k: v for names in sets for k, v in centre.add_kits(names).items()}
            pool, rng = photo_pool(args.mb), random.Random(14)
            t0 = time.perf_counter()
            kits = [[build_kit(root / name, name, args.per_kit, args.mb, centre.sealing_line, pool, rng)
                     for name in names] for names in sets]
            build_s = time.perf_counter() - t0
            mbs = [sum(b.length for k in ks for b in k) / MB for ks in kits]  # each set draws its own sizes
            n = sum(len(k) for k in kits[1])

            warm = kits_pass(centre, "kit-w0c", sets[0], tokens, args.chunk_mb, args.per_kit, args.limit, mbs[0],
                             parallel)
            bare: list[Pass] = []
            synced: list[Pass] = []
            for r in range(1, args.rounds + 1):
                bare.append(bare_pass(centre, kits[r], mbs[r]))
                synced.append(kits_pass(centre, f"kit-w{r}c", sets[r], tokens, args.chunk_mb, args.per_kit,
                                        args.limit, mbs[r], parallel))
            bare.append(bare_pass(centre, kits[args.rounds], mbs[args.rounds]))
            held = centre.count_stored("kit-w")
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    expect = n * (args.rounds + 1)
    if held != expect or any(len(p.latencies) != n for p in [warm, *synced]):
        raise SystemExit(f"the centre holds {held} of {expect} bundles")

    bare_mbs = sum(p.mb for p in bare) / sum(p.seconds for p in bare)
    kits_mbs = sum(p.mb for p in synced) / sum(p.seconds for p in synced)
    print(f"{args.kits} kits x {args.per_kit} bundles = {n} uploads a round, {statistics.mean(mbs):.0f} MB sealed"
          f" (mean {sum(mbs) / n / len(mbs):.2f} MB; photo = random bytes), chunk {args.chunk_mb:g} MB;"
          f" {args.rounds + 1} sets of kits built in {build_s:.1f} s;"
          f" {'pinned to CPUs ' + args.cpus if args.cpus else 'not pinned'};"
          f" {args.processes} centre process(es); load {load0} -> {load1} ({os.cpu_count()} CPUs); each kit"
          f" {parallel} upload(s) in flight (sync.parallel_uploads): {args.kits * parallel} at once against the bare"
          f" pass's {args.kits}")
    print(f"  {'':40} {'time s':>7} {'MB/s':>7} {'uploads/s':>9} {'median s':>8} {'p99 s':>7} {'ratio':>6}"
          "   CPU ms per upload: clients  centre")

    def row(name: str, p: Pass) -> None:
        lat, t = p.latencies, p.seconds
        print(f"  {name:<40} {t:7.1f} {p.mb / t:7.1f} {len(lat) / t:9.1f} {statistics.median(lat):8.2f}"
              f" {pct(lat, 99):7.2f} {p.mb / t / bare_mbs:6.2f} {p.client_cpu * 1000 / len(lat):26.1f}"
              f" {p.centre_cpu * 1000 / len(lat):7.1f}")

    row(f"warm-up: {args.kits} kits (not counted)", warm)
    for r in range(args.rounds + 1):
        row(f"{args.kits} bare concurrent PUTs, pass {r + 1}", bare[r])
        if r < args.rounds:
            row(f"{args.kits} kits' SyncDaemons, round {r + 1}", synced[r])
    all_lat = [x for p in synced for x in p.latencies]
    bare_lat = [x for p in bare for x in p.latencies]
    print(f"  all bare passes: {bare_mbs:.1f} MB/s, median {statistics.median(bare_lat):.2f} s, p99"
          f" {pct(bare_lat, 99):.2f} s; all kits' rounds: {kits_mbs:.1f} MB/s, median {statistics.median(all_lat):.2f}"
          f" s, p99 {pct(all_lat, 99):.2f} s: ratio {kits_mbs / bare_mbs:.2f} (goal >= 0.8); p99 latency ratio"
          f" (bare / kits) {pct(bare_lat, 99) / pct(all_lat, 99):.2f}"
          + (f", with {parallel}x the uploads in flight" if parallel > 1 else ""))
    print(f"  kits' failed attempts (retried after back-off): {sum(p.failed for p in synced)}")
    print("  every bundle opened by the centre (stored, with its capture) within"
          f" {max(p.opened_after for p in synced):.1f} s after its round's kits were done (opening follows the"
          " confirmation, centre/opener.py; it is deferred while uploads arrive, so the CPU above is mostly"
          " receiving)")
    which = " (the first of them)" if args.processes > 1 else ""
    print(f"  RSS centre{which} during the kits' rounds: {rss_summary([v for p in synced for v in p.rss.mb()])}")
    print(f"  RSS centre during the bare passes:  {rss_summary([v for p in bare for v in p.rss.mb()])}")


if __name__ == "__main__":
    main()
