"""A real centre (``capturekit centre serve``) on loopback, for the centre's tests and the sync daemon's.

::

    from peers.centre import CentreServer

    with CentreServer(tmp_path) as centre:            # SQLite + a directory, a fresh key dir
        token = centre.add_kit("kit-test")            # the kit's bearer token
        centre.url                                    # http://127.0.0.1:<port>
        centre.sealing_line                           # "<key_id>:<base64>" for kit.toml [sealing] public_keys
        centre.holds("kit-test-…-000001-01")          # the bundles row (status, sha256) or None

``CentreServer(tmp_path, keys_dir=centre_keys)`` shares the session's key pair from tests/conftest.py (so kits
built by ``kit_config`` seal to this centre). At scale: ``CentreServer(tmp_path, database_url=pg.create_database(
"x"), storage_url="s3://bucket/prefix", s3=s3)`` with :class:`peers.postgres.Postgres` and :class:`peers.s3.S3`
(the ``pg_s3_centre`` fixture in tests/centre/conftest.py does this). ``start()`` / ``stop()`` / ``kill()`` (SIGKILL)
restart the same centre on the same port and data; ``second()`` starts another process on the same database and
store (horizontal scaling). Admin tasks go straight to the database with the centre's own functions
(``add_kit``, ``add_school``, ``load_roster``, ``assign``); ``cli(...)`` runs a ``capturekit centre`` command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from peers.postgres import free_port
from peers.s3 import S3

REPO = Path(__file__).resolve().parents[2]


class CentreServer:
    def __init__(self, root: Path, *, keys_dir: Path | None = None, database_url: str = "", storage_url: str = "",
                 s3: S3 | None = None, port: int | None = None, max_upload_bytes: int = 64 * 2**20,
                 data_dir: Path | None = None) -> None:
        from centre.sealing import keygen

        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir or root / "centre-data"
        if keys_dir is None:
            keys_dir = root / "centre-keys"
            keygen(keys_dir)
        self.keys_dir = keys_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.s3 = s3
        self.settings = {"data_dir": str(self.data_dir), "listen_host": "127.0.0.1", "listen_port": self.port,
                         "database_url": database_url, "storage_url": storage_url,
                         "s3_endpoint_url": s3.endpoint if s3 else "", "keys_dir": str(keys_dir),
                         "max_upload_bytes": max_upload_bytes, "log_level": "WARNING", "open_lease_s": 5}
        self.config_path = root / f"centre-{self.port}.toml"
        self.config_path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in self.settings.items()))
        self.proc: subprocess.Popen | None = None
        self._centre: Any = None

    # ---- the process
    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("CAPTUREKIT_CENTRE_CONFIG", None)
        return {**env, **(self.s3.env if self.s3 else {})}

    def start(self, timeout: float = 30.0) -> CentreServer:
        log = open(self.root / f"centre-{self.port}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "centre", "serve", "--config",
                                      str(self.config_path)], env=self.env, stdout=log, stderr=log, cwd=self.root)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"centre exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if requests.get(f"{self.url}/openapi.json", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"centre did not answer within {timeout} s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.root / f"centre-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind (the crash a power cut would be)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def second(self) -> CentreServer:
        """Another centre process on the same database, object store and keys, on its own port (not started)."""
        other = CentreServer(self.root, keys_dir=self.keys_dir, database_url=self.settings["database_url"],
                             storage_url=self.settings["storage_url"], s3=self.s3,
                             max_upload_bytes=self.settings["max_upload_bytes"], data_dir=self.data_dir)
        return other

    def __enter__(self) -> CentreServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._centre is not None:
            self._centre.close()

    # ---- the same database and store, in this process
    @property
    def centre(self) -> Any:
        """A :class:`centre.context.Centre` on this centre's configuration (for admin tasks and checks)."""
        if self._centre is None:
            from centre.config import load
            from centre.context import open_centre

            for k, v in (self.s3.env if self.s3 else {}).items():
                os.environ.setdefault(k, v)
            self._centre = open_centre(load(self.config_path), keys=True)
        return self._centre

    @property
    def sealing_line(self) -> str:
        return next(self.keys_dir.glob("*.pub")).read_text().strip()

    def add_kit(self, name: str) -> str:
        from centre.kits import add_kit

        return add_kit(self.centre.engine, name)

    def holds(self, capture_id: str, opened: bool = True, timeout: float = 30.0) -> Any:
        """The ``bundles`` row of ``capture_id`` (status, sha256, object_key, …) or None; with ``opened``, once
        a running centre process has opened it (``received`` -> ``stored``/``refused``, centre/opener.py)."""
        from sqlalchemy import select

        from centre.db import bundles

        deadline = time.monotonic() + timeout
        while True:
            with self.centre.engine.connect() as conn:
                row = conn.execute(select(bundles).where(bundles.c.capture_id == capture_id)).first()
            if row is None or not opened or row.status != "received" or time.monotonic() > deadline:
                return row
            time.sleep(0.05)

    def opened(self, timeout: float = 60.0) -> None:
        """Wait until the running centre process(es) opened every bundle received (centre/opener.py)."""
        from centre.opener import until_opened

        left = until_opened(self.centre.engine, timeout)
        assert not left, f"{left} bundles received but not opened after {timeout} s: {self.log()[-2000:]}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``capturekit centre ARGS --config <this centre's>`` in a subprocess."""
        cmd = [sys.executable, "-m", "appliance.cli", "centre", *args, "--config", str(self.config_path)]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120, check=check,
                              cwd=self.root)


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v).lower() if isinstance(v, bool) else str(v)
