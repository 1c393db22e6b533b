"""The whole path on one machine, on embedded defaults: a simulated classroom on a kit, the sync daemon, a local
centre, and the print bureau's delivery folder — then a check that every delivered photo opens and is the one
the kit sealed. Run by ``scripts/demo.sh`` (which sets up the venv first).

    python scripts/demo.py [--students 60] [--size 4056x3040] [--qc sim] [--dir sim-runs/<time>]

Everything goes under one run directory: ``kit/`` (the kit's data directory: sealed bundles, journal, roster),
``centre/`` (the centre's SQLite database, photo store and sealing keys), ``school/roster.csv`` (the school's
file, which the simulated school hands to the centre) and ``delivery/`` (the export).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests
from PIL import Image

VENV = Path(sys.executable).parent
CAPTUREKIT = [str(VENV / "capturekit")]
SCHOOL = "90001"  # the simulated classroom's school (appliance/simulate.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sh(*args: str, config: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*CAPTUREKIT, *(["--config", str(config)] if config else []), *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    print(out.stdout.rstrip(), flush=True)
    if out.returncode != 0 and check:
        sys.exit(f"demo: `capturekit {' '.join(args)}` failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--students", type=int, default=60)
    ap.add_argument("--size", help="camera frame size (default 4056x3040)")
    ap.add_argument("--qc", choices=["real", "sim"], help="real QC on face photos (default) or a scripted stand-in")
    ap.add_argument("--dir", help="run directory (default sim-runs/<time>)")
    args = ap.parse_args()
    run = Path(args.dir or Path("sim-runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    kit, centre, school = run / "kit", run / "centre", run / "school"
    school.mkdir(parents=True)
    port = free_port()
    ccfg = run / "centre.toml"
    ccfg.write_text(f'data_dir = "{centre}"\nkeys_dir = "{centre / "keys"}"\nlisten_port = {port}\n')

    step("the centre: a sealing key, the school, a kit and its token")
    sh("centre", "keygen", "--out", str(centre / "keys"))
    log = open(run / "centre.log", "w")  # noqa: SIM115 - the server keeps it until the end
    server = subprocess.Popen([*CAPTUREKIT, "centre", "serve", "--config", str(ccfg)], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if requests.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if server.poll() is not None:
                    sys.exit(f"demo: the centre did not start: {(run / 'centre.log').read_text()[-2000:]}")
            time.sleep(0.1)
        c = ["--config", str(ccfg)]
        sh("centre", "school", "add", SCHOOL, "--name", "示范学院 (demo)", *c)
        token = sh("centre", "add-kit", "kit-demo", *c).stdout.splitlines()[1].strip()
        sh("centre", "assign", "kit-demo", SCHOOL, *c)
        public = next((centre / "keys").glob("*.pub")).read_text().strip()
        kcfg = run / "kit.toml"
        kcfg.write_text(f'kit_id = "kit-demo"\nschool = "{SCHOOL}"\ndata_dir = "{kit}"\n'
                        f'[sealing]\npublic_keys = ["{public}"]\n[sync]\ncentre_url = "{url}"\ntoken = "{token}"\n')

        step(f"the kit: a classroom of {args.students} students (sealed before anything touches the disk)")
        sim = ["simulate", "-n", str(args.students), "--data-dir", str(kit), "--school-csv", str(school / "roster.csv")]
        sim += ["--size", args.size] if args.size else []
        sim += ["--qc", args.qc] if args.qc else []
        sh(*sim, config=kcfg)

        step("the school's roster reaches the centre (names stay at the centre)")
        sh("centre", "roster", "load", SCHOOL, str(school / "roster.csv"), *c)

        step("the sync daemon uploads the outbox (tus, exactly once) and pulls the centre's roster")
        sh("sync", "--drain", "600", config=kcfg)
        sh("status", config=kcfg)

        step("the centre: progress, and the print bureau's delivery folder")
        sh("centre", "progress", SCHOOL, *c)
        sh("centre", "export", SCHOOL, str(run / "delivery"), *c, check=False)
    finally:
        server.terminate()
        server.wait(30)
        log.close()

    step("check: every delivered photo opens, is 480x640, and is the derivative the kit sealed")
    db = sqlite3.connect(f"file:{kit / 'journal.sqlite'}?mode=ro", uri=True)
    sealed = dict(db.execute("SELECT capture_id, derivative_sha256 FROM frames WHERE status = 'stored'"))
    captured = db.execute("SELECT COUNT(*) FROM shots WHERE status = 'captured'").fetchone()[0]
    db.close()
    with open(run / "delivery" / f"{SCHOOL}.csv", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    ok = [r for r in rows if r["status"] == "ok"]
    problems = []
    for r in ok:
        data = (run / "delivery" / r["file"]).read_bytes()
        with Image.open(run / "delivery" / r["file"]) as im:
            if im.size != (480, 640):
                problems.append(f"{r['file']}: {im.size}")
        if hashlib.sha256(data).hexdigest() != sealed.get(r["capture_id"]):
            problems.append(f"{r['file']}: not the derivative the kit sealed for {r['capture_id']}")
    missing = [r for r in rows if r["status"] == "missing"]
    print(f"{len(ok)} photos delivered for {len(rows)} students on the roster ({captured} captured on the kit,"
          f" {len(missing)} missing, {len(rows) - len(ok) - len(missing)} with a problem)")
    print(f"run directory: {run}")
    if problems or len(ok) != len([r for r in rows if r["status"] != "missing"]):
        print("DEMO FAILED:\n  " + "\n  ".join(problems or ["some students have no photo"]))
        return 1
    print("every delivered photo opens and is byte for byte the derivative the kit sealed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
