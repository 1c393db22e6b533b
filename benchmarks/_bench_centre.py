"""Benchmark-only: the centre exactly as ``capturekit centre serve`` runs it, plus one bare route to compare with.

Run as a program it *is* ``capturekit centre serve`` (same :func:`centre.server.serve`: ``open_centre``, the
kit API from ``centre.kit_api.create_app``, the same lifespan and uvicorn settings), with the app wrapped in a
tiny ASGI dispatcher that sends ``PUT /bench/sink/<name>`` to a bare sink and everything else to the centre::

    python benchmarks/_bench_centre.py --config centre.toml

The sink streams the request body to ``<data_dir>/bench-sink/.tmp-<name>``, fsyncs it, renames it into place
and fsyncs the directory — the durability :class:`centre.storage.DirectoryStorage` gives an object — and
answers ``204``. No token, no database, no tus: the floor the centre's uploads are compared with, on the same
process, the same event loop, the same uvicorn and h11. The route lives here, never in ``centre/``.

Imported, it is the harness both benchmarks share: :class:`BenchCentre` (keys, config, the process, kits with
tokens assigned to a school with a small roster), :func:`build_kit` (a kit journal and an outbox of real sealed
bundles written by ``appliance.spool.Spool.write_bundle``), :class:`RssSampler` and :func:`bare_put`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SINK = "/bench/sink/"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,120}$")
MB = 2**20


# ---- the launcher (runs in the centre's process)
def sink_app(root: Path) -> Any:
    """``PUT /bench/sink/<name>``: stream the body to a file, fsync, rename, fsync the directory; ``204``."""
    from starlette.concurrency import run_in_threadpool

    from appliance.datadir import fsync_dir

    root.mkdir(parents=True, exist_ok=True)

    def durable(fh: Any, tmp: Path, final: Path) -> None:
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, final)
        fsync_dir(root)

    async def answer(send: Any, status: int) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        name = scope["path"][len(SINK):]
        if scope["method"] != "PUT" or not _NAME.match(name):
            return await answer(send, 404)
        tmp, final = root / f".tmp-{name}", root / name
        fh = open(tmp, "wb")  # noqa: SIM115 - closed in durable() or below
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    fh.close()
                    tmp.unlink(missing_ok=True)
                    return None
                fh.write(message.get("body", b""))
                if not message.get("more_body"):
                    break
            await run_in_threadpool(durable, fh, tmp, final)  # fsync off the loop, as the centre's store is
        except BaseException:
            fh.close()
            raise
        return await answer(send, 204)

    return app


def with_sink(centre_app: Any, root: Path) -> Any:
    """An ASGI app: ``/bench/sink/…`` to the sink, everything else (lifespan included) to the centre's app."""
    sink = sink_app(root)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(SINK):
            return await sink(scope, receive, send)
        return await centre_app(scope, receive, send)

    return app


def launch(config: str) -> int:
    """``capturekit centre serve --config CONFIG`` with the sink mounted beside the kit API."""
    import logging

    import centre.server
    from appliance import logs
    from centre.config import load
    from centre.kit_api import create_app

    cfg = load(config)
    logs.setup(logging.INFO)
    logging.getLogger().setLevel(cfg.log_level.upper())

    def create_app_with_sink(centre: Any, lifespan: Any = None) -> Any:
        return with_sink(create_app(centre, lifespan=lifespan), cfg.data_path / "bench-sink")

    centre.server.create_app = create_app_with_sink  # serve() builds its app through this name
    return centre.server.serve(cfg)


# ---- the harness (runs in the benchmark's process)
def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """VmRSS of ``pid`` every ``every`` seconds, on a thread, until stopped: ``samples`` is [(t, kB)]."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.samples.append((time.monotonic(), rss_kb(self.pid)))
            except (OSError, ValueError):
                return
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mb(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [kb / 1024 for t, kb in self.samples if since <= t <= until and kb]


@dataclass
class Pass:
    """One timed pass: bare PUTs, or kits syncing."""

    seconds: float  # the upload window
    latencies: list[float]  # per upload, seconds
    client_cpu: float  # seconds: the clients' process (for one sync daemon: its whole process)
    centre_cpu: float  # seconds of the centre process(es) over the pass
    mb: float = 0.0  # sealed MB uploaded
    failed: int = 0  # kits' attempts that failed (retried after back-off)
    opened_after: float = 0.0  # seconds from the pass's end until the centre had opened every bundle
    rss: RssSampler | None = None  # the centre's, during the pass


def rss_summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    n = max(1, len(values) // 10)
    first, last = sum(values[:n]) / n, sum(values[-n:]) / n
    return (f"min {min(values):6.1f}  max {max(values):6.1f}  first 10% {first:6.1f}  last 10% {last:6.1f} MB"
            f"  ({len(values)} samples)")


class BenchCentre:
    """A centre (the launcher above) on loopback with a fresh key pair, SQLite and a directory under ``root``."""

    def __init__(self, root: Path, cpus: str = "", share: BenchCentre | None = None) -> None:
        """A fresh centre, or (``share``) another process on that one's database, object store and keys."""
        from centre.sealing import keygen

        self.root = root
        self.data_dir = share.data_dir if share else root / "centre-data"
        self.keys_dir = share.keys_dir if share else root / "centre-keys"
        if share is None:
            keygen(self.keys_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / ("centre.toml" if share is None else f"centre-{self.port}.toml")
        self.config.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in {
            "data_dir": str(self.data_dir), "listen_host": "127.0.0.1", "listen_port": self.port,
            "keys_dir": str(self.keys_dir), "log_level": "WARNING"}.items()))
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        self.school = "B0001"
        self.siblings: list[BenchCentre] = []  # more processes on the same database, store and keys

    def sibling(self) -> BenchCentre:
        """Another centre process on this one's database, object store and keys (its own port): the centre's
        horizontal form, several stateless processes behind one name. Started and stopped with this one."""
        other = BenchCentre(self.root, self.cpus, share=self)
        self.siblings.append(other)
        return other

    @property
    def urls(self) -> list[str]:
        return [self.url] + [o.url for o in self.siblings]

    @property
    def pids(self) -> list[int]:
        return [self.pid] + [o.pid for o in self.siblings]

    @property
    def sealing_line(self) -> str:
        return next(self.keys_dir.glob("*.pub")).read_text().strip()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> BenchCentre:
        import requests

        cmd = [sys.executable, str(Path(__file__).resolve()), "--config", str(self.config)]
        if self.cpus:
            cmd = ["taskset", "-c", self.cpus, *cmd]
        log = open(self.root / "centre.log", "ab")  # noqa: SIM115 - the child keeps it
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("CAPTUREKIT_CENTRE_CONFIG", None)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=self.root)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"centre exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{self.url}/openapi.json", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"centre did not answer within {timeout} s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.root / "centre.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> BenchCentre:
        self.start()
        for o in self.siblings:
            o.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for o in self.siblings:
            o.stop()
        self.stop()

    def add_kits(self, names: list[str], students: int = 20) -> dict[str, str]:
        """Tokens for ``names``, each assigned to one school with a small roster (so a kit's first roster pull
        is a real 200, as on a kit in service, not a 404 and a back-off); the centre's own admin functions."""
        from appliance import idnumber
        from centre.config import load
        from centre.context import open_centre
        from centre.kits import add_kit
        from centre.rosters import add_school, assign, load_roster

        c = open_centre(load(self.config), run_migrations=False)
        try:
            from sqlalchemy import select

            from centre.db import schools

            with c.engine.connect() as conn:
                have = conn.execute(select(schools.c.id).where(schools.c.code == self.school)).first()
            if have is None:
                add_school(c.engine, self.school, "基准大学", opslimit=1, memlimit=8192)
                csv = self.root / "roster.csv"
                csv.write_text("id_number,name,class\n" + "".join(
                    f"{idnumber.make(f'11010520040101{i:03d}')},学生{i},1班\n" for i in range(students)))
                load_roster(c.engine, self.school, csv)
            tokens = {}
            for name in names:
                tokens[name] = add_kit(c.engine, name)
                assign(c.engine, name, self.school)
            return tokens
        finally:
            c.close()

    def count_stored(self, kit_prefix: str, status: tuple[str, ...] = ("received", "stored")) -> int:
        """Bundles of these kits the centre holds (``received``: confirmed, not opened yet; ``stored``: opened)."""
        import sqlite3

        db = sqlite3.connect(f"file:{self.data_dir / 'centre.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            marks = ",".join("?" * len(status))
            return db.execute(f"SELECT COUNT(*) FROM bundles WHERE status IN ({marks}) AND capture_id LIKE ?",
                              [*status, f"{kit_prefix}%"]).fetchone()[0]
        finally:
            db.close()

    def wait_opened(self, kit_prefix: str, n: int, timeout: float = 600.0) -> float:
        """Seconds until all ``n`` bundles of these kits are opened (``stored``) by the centre's opener."""
        t0 = time.perf_counter()
        while self.count_stored(kit_prefix, ("stored",)) < n and time.perf_counter() - t0 < timeout:
            time.sleep(0.05)
        return time.perf_counter() - t0

    def clear_sink(self) -> None:
        sink = self.data_dir / "bench-sink"
        if sink.is_dir():
            for p in sink.iterdir():
                p.unlink()


@dataclass(frozen=True)
class KitBundle:
    capture_id: str
    path: Path
    offset: int  # where the sealed bytes start
    length: int  # sealed bytes


def photo_pool(mb: float, seed: int = 14) -> bytes:
    """Random bytes to cut photos from: incompressible, like the sealed bytes that actually travel."""
    return random.Random(seed).randbytes(int(1.5 * mb * MB) + 16)


def build_kit(data_dir: Path, kit_id: str, n: int, mb: float, sealing_line: str, pool: bytes,
              rng: random.Random) -> list[KitBundle]:
    """A kit's journal and outbox with ``n`` real sealed bundles: photo ``[0.75, 1.5] x mb`` MB of random bytes
    (3–6 MB at ``mb=4``; the simulated camera's 12 MP JPEG is only ~1.1 MB), a 64 KiB derivative, a record like
    the capture daemon's; written by ``Spool`` (sealed, fsynced, renamed) and journalled ``stored`` by ``Journal``
    exactly as the capture daemon does."""
    from appliance import idnumber
    from appliance.bundle import CentreKey, read_header
    from appliance.clock import SystemClock
    from appliance.identity import Kind, Source, clear_form, make
    from appliance.journal import Journal
    from appliance.protect import RosterKey
    from appliance.spool import Spool

    key = RosterKey.new(1, 8192)  # cheap here: the journal only needs a protected form
    data_dir.mkdir(parents=True, exist_ok=True)
    clock = SystemClock()
    j = Journal(data_dir / "journal.sqlite", kit_id, clock.wall)
    sp = Spool(data_dir / "spool", CentreKey.parse(sealing_line))
    sid = j.open_session("B0001")
    out = []
    try:
        for shot in range(1, n + 1):
            ident = make(Kind.ID_NUMBER, idnumber.make(f"110105200401{shot % 28 + 1:02d}{shot % 1000:03d}"),
                         Source.SIM)
            ident = key.identity(ident)
            read = j.record_read(sid, ident, "on_roster", "")
            j.open_shot(shot, sid, read)
            cid = j.begin_frame(shot, 1, "outbox", "pass", ())
            size = int(rng.uniform(0.75, 1.5) * mb * MB)
            start = rng.randrange(0, len(pool) - size + 1)
            photo = shot.to_bytes(8, "big") + pool[start + 8:start + size]
            derivative = pool[:65536]
            now = clock.wall()
            record = {"capture_id": cid, "kit_id": kit_id, "journal_id": j.journal_id,
                      "session": {"id": sid, "school": "B0001"}, "shot": shot, "frame": 1,
                      "identity": clear_form(ident), "roster_check": "on_roster", "captured_at": now,
                      "stored_at": now, "photo": {"width": 4056, "height": 3040, "camera": {}},
                      "verdict": {"result": "pass", "reasons": [], "accepted_by_operator": False, "qc": None},
                      "derivative_error": None, "frames": [{"frame": 1, "status": "stored", "at": now}],
                      "supersedes": None}
            w = sp.write_bundle(cid, {"kit_id": kit_id, "journal_id": j.journal_id, "shot": shot, "frame": 1},
                                record, photo, derivative)
            j.finish_frame(shot, 1, w.sha256, w.size, f"outbox/{w.path.name}", w.photo_sha256, w.derivative_sha256)
            with open(w.path, "rb") as fh:
                header, offset = read_header(fh)
            out.append(KitBundle(cid, w.path, offset, header.sizes["sealed"]))
    finally:
        j.close()
    return out


def kit_config(data_dir: Path, kit_id: str, sealing_line: str, url: str, token: str, chunk_bytes: int,
               parallel: int = 0) -> Any:
    """The kit's configuration for the sync daemon (rescan, heartbeat and roster an hour apart: one each at
    start, as a kit that just came online does); ``parallel``: ``sync.parallel_uploads`` (0: the default)."""
    import dataclasses

    from appliance.config import Config

    cfg = Config(data_dir=str(data_dir), kit_id=kit_id)
    return dataclasses.replace(
        cfg, sealing=dataclasses.replace(cfg.sealing, public_keys=(sealing_line,)),
        sync=dataclasses.replace(cfg.sync, centre_url=url, token=token, chunk_bytes=chunk_bytes, rescan_s=3600,
                                 heartbeat_s=3600, roster_s=3600,
                                 parallel_uploads=parallel or cfg.sync.parallel_uploads))


def kit_toml(path: Path, cfg: Any) -> Path:
    """``cfg``'s kit_id, data_dir, sealing and sync as a kit.toml (``capturekit --config`` reads it)."""
    import dataclasses

    lines = [f"kit_id = {_toml(cfg.kit_id)}", f"data_dir = {_toml(cfg.data_dir)}", "[sealing]",
             f"public_keys = {_toml(list(cfg.sealing.public_keys))}", "[sync]"]
    lines += [f"{f.name} = {_toml(getattr(cfg.sync, f.name))}" for f in dataclasses.fields(cfg.sync)]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_region(b: KitBundle) -> bytes:
    with open(b.path, "rb") as fh:
        fh.seek(b.offset)
        return fh.read(b.length)


def bare_put(session: Any, url: str, b: KitBundle) -> float:
    """One bare ``requests`` PUT of the bundle's sealed bytes to the sink; its latency in seconds."""
    t0 = time.perf_counter()
    resp = session.put(f"{url}{SINK}{b.capture_id}", data=read_region(b), timeout=(10, 60))
    if resp.status_code != 204:
        raise RuntimeError(f"sink answered {resp.status_code}")
    return time.perf_counter() - t0


def quiesce() -> None:
    """Flush every dirty page to disk (``sync``) before a timed pass: without it a pass also pays for the
    writeback of the phase before it (the kits' 2 GB outbox, the previous pass's objects)."""
    os.sync()


def tempdir(prefix: str) -> tempfile.TemporaryDirectory:
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    return tempfile.TemporaryDirectory(prefix=prefix, dir=base)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="capturekit centre serve, plus the benchmark-only PUT /bench/sink/")
    ap.add_argument("--config", required=True)
    sys.exit(launch(ap.parse_args().config))
