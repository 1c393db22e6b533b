"""Roster: load 100,000 rows and look students up, next to baselines measured in the same run.

Load is compared with merely parsing the same CSV (csv module); a look-up (the roster check a tap
triggers: SQLite index on a reopened-if-changed file) is compared with a Python dict look-up.

    python benchmarks/roster.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
import tempfile
import time
from pathlib import Path

from appliance import idnumber
from appliance.identity import Kind, Source, make
from appliance.roster import Roster, load_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    numbers = [idnumber.make(f"{110000 + i // 1000:06d}2004{i % 12 + 1:02d}01{i % 1000:03d}") for i in range(args.rows)]
    body = "".join(f"{n},学生{i},班{i % 40},专业{i % 9}\n" for i, n in enumerate(numbers))
    text = "id_number,name,class,major\n" + body
    with tempfile.TemporaryDirectory() as tmp:
        src, db = Path(tmp) / "r.csv", Path(tmp) / "roster.sqlite"
        src.write_text(text, encoding="utf-8")
        t0 = time.perf_counter()
        rows = list(csv.reader(io.StringIO(src.read_text(encoding="utf-8"))))
        parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = load_csv(src, db)
        load = time.perf_counter() - t0
        roster = Roster(db)
        picked = random.Random(1).sample(numbers, min(2000, len(numbers)))
        sample = [make(Kind.ID_NUMBER, n, Source.SIM) for n in picked]
        table = {r[0]: r for r in rows[1:]}
        lookups, dict_lookups = [], []
        for ident in sample:
            t0 = time.perf_counter()
            assert roster.lookup(ident) is not None
            lookups.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert ident.key in table
            dict_lookups.append(time.perf_counter() - t0)
    lk, dk = statistics.median(lookups) * 1e6, statistics.median(dict_lookups) * 1e6
    print(f"{report.rows} rows: load (validate + index + atomic replace) {load:.2f} s;"
          f" bare CSV parse {parse:.2f} s; ratio {load / parse:.1f}")
    print(f"look-up median {lk:.1f} µs (p99 {sorted(lookups)[int(0.99 * len(lookups))] * 1e6:.1f} µs);"
          f" dict look-up {dk:.2f} µs; ratio {lk / dk:.0f}")


if __name__ == "__main__":
    main()
