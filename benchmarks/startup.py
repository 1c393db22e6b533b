"""What the kit checks at every start, for a full outbox, next to bare file-system baselines in the same run.

    python benchmarks/startup.py [--bundles 2000] [--mb 3] [--drop-caches]

Writes ``--bundles`` real bundles through ``Spool`` (random bytes of ``--mb`` MB as the photo) and a
journal with a row per bundle, then times:
  * the journal integrity check (``PRAGMA quick_check``, read-only), next to opening the journal;
  * the shallow start-up check of every bundle (records parse, sizes match), next to a bare ``stat`` of
    every file;
  * the full scrub (SHA-256 of every byte), next to a bare read of every byte.
``--drop-caches`` (root) empties the page cache before each read pass, as after a power cut.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import tempfile
import time
from pathlib import Path

from appliance.clock import ManualClock
from appliance.identity import Kind, Source, make
from appliance.journal import Journal, check_integrity
from appliance.spool import Spool


def drop_caches(enabled: bool) -> None:
    if enabled:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=int, default=2000)
    ap.add_argument("--mb", type=float, default=3.0)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--dir", help="where to build the kit (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        j = Journal(root / "journal.sqlite", "kit-bench", ManualClock().wall)
        sp = Spool(root / "spool")
        sid = j.open_session("bench")
        photo = secrets.token_bytes(int(args.mb * 2**20))
        t0 = time.perf_counter()
        for n in range(1, args.bundles + 1):
            read = j.record_read(sid, make(Kind.COLLECTION_CODE, f"code-{n}", Source.SIM), "on_roster", "")
            j.open_shot(n, sid, read)
            cid = j.begin_frame(n, 1, "outbox", "pass", ())
            w = sp.write_bundle(cid, photo[:-8] + n.to_bytes(8, "big"),
                                {"kit_id": j.kit_id, "journal_id": j.journal_id, "shot": n, "frame": 1})
            j.finish_frame(n, 1, w.sha256, w.size, f"outbox/{cid}")
        build = time.perf_counter() - t0
        j.close()
        size_mb = sum(f.stat().st_size for f in sp.outbox.rglob("*") if f.is_file()) / 2**20
        journal_mb = (root / "journal.sqlite").stat().st_size / 2**20

        open_s = timed(lambda: sqlite3.connect(f"file:{root / 'journal.sqlite'}?mode=ro", uri=True).execute(
            "SELECT COUNT(*) FROM shots").fetchone())
        check_s = timed(lambda: check_integrity(root / "journal.sqlite"))
        ids = sp.bundle_ids()
        drop_caches(args.drop_caches)
        stat_s = timed(lambda: [f.stat() for d in sp.outbox.iterdir() for f in d.iterdir()])
        drop_caches(args.drop_caches)
        shallow_s = timed(lambda: [sp.check(c, deep=False) for c in ids])

        def read_all() -> None:
            for d in sp.outbox.iterdir():
                for f in d.iterdir():
                    with open(f, "rb") as fh:
                        while fh.read(1 << 20):
                            pass

        drop_caches(args.drop_caches)
        read_s = timed(read_all)
        drop_caches(args.drop_caches)
        deep_s = timed(lambda: [sp.check(c, deep=True) for c in ids])
    print(f"kit with {args.bundles} bundles ({size_mb:.0f} MB in the outbox), journal {journal_mb:.1f} MB;"
          f" built in {build:.1f} s; page cache {'dropped' if args.drop_caches else 'warm'} before each pass")
    rows = [
        ("journal integrity check (quick_check)", check_s, "open + count", open_s),
        ("start-up check, every bundle (shallow)", shallow_s, "stat every file", stat_s),
        ("full scrub, every SHA-256 (background)", deep_s, "read every byte", read_s),
    ]
    for name, t, base, tb in rows:
        print(f"  {name:<42} {t * 1000:9.1f} ms   baseline {base:<16} {tb * 1000:9.1f} ms   ratio {t / tb:5.2f}")
    print(f"  scrub throughput {size_mb / deep_s:.0f} MB/s (bare read {size_mb / read_s:.0f} MB/s)")


if __name__ == "__main__":
    main()
