"""A throwaway PostgreSQL server from Debian's ``postgresql`` package, for tests (``apt-get install postgresql``).

``Postgres().start()`` runs ``initdb`` in a fresh directory under /tmp and ``pg_ctl start`` on a free loopback
port, with trust authentication for local connections (nothing leaves the machine). PostgreSQL refuses to run
as root, so when the tests are root (CI) the server runs as ``nobody`` through ``setpriv``; the directory is
handed to that user. ``fsync=off`` keeps it fast: nothing here tests PostgreSQL's own durability. ``stop()``
shuts it down and removes the directory. ``url(db)`` is a SQLAlchemy URL (psycopg 3).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def bin_dir() -> Path | None:
    """Debian installs server binaries under /usr/lib/postgresql/<major>/bin (not on PATH); the newest."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self) -> None:
        self.bin = bin_dir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
        self.root = Path(tempfile.mkdtemp(prefix="ck-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user: str | None = "nobody" if os.geteuid() == 0 else None

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        prefix: list[str] = []
        if self.user:
            pw = pwd.getpwnam(self.user)
            prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
        return subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "LC_ALL": "C.UTF-8", "HOME": str(self.root)}, cwd=self.root)

    def start(self) -> Postgres:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w",
                  "-t", "60", "start")
        return self

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
