"""Real ``capturekit`` processes for tests: a kit config on disk, the daemon started and stopped like systemd would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "appliance.cli"]


def write_config(path: Path, data: Path, kit_id: str = "kit-proc", extra: str = "") -> Path:
    """A kit config with simulated devices, small frames, no face models (fast to start), cheap roster
    hashing, and a centre sealing key made beside it (``<config dir>/centre-keys``, outside the kit)."""
    from centre.sealing import keygen

    keys = path.parent / "centre-keys"
    public = next(keys.glob("*.pub"), None) or keygen(keys)[2]
    path.write_text(f'kit_id = "{kit_id}"\ndata_dir = "{data}"\n'
                    "[camera]\nwidth = 640\nheight = 480\n[qc]\nenabled = false\n"
                    "[privacy]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8\n"
                    f'[sealing]\npublic_keys = ["{public.read_text().strip()}"]\n' + extra, encoding="utf-8")
    return path


def cli(config: Path, *args: str, timeout: float = 60, no_dac_override: bool = False,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run one command to completion. ``no_dac_override``: as root but bound by file permissions like any
    user (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH)."""
    pre = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if no_dac_override else []
    return subprocess.run([*pre, *CLI, "--config", str(config), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": os.getcwd()}, input=input)


def _accepts(path: Path) -> bool:
    """Whether a Unix socket listens at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class Daemon:
    """``capturekit run`` in the background; :meth:`wait_ready` returns once its control socket answers."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self.stderr_path = config.with_suffix(f".{time.monotonic_ns()}.log")
        self._err = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*CLI, "--config", str(config), "run", *args], stdout=subprocess.DEVNULL,
                                     stderr=self._err, env={**os.environ, "PYTHONPATH": os.getcwd()})

    def wait_ready(self, timeout: float = 30.0) -> Daemon:
        """Once the daemon has said it is ready and its control socket takes a connection (the daemon logs
        "ready" before ``capturekit run`` opens the socket)."""
        from appliance.config import load

        sock = load(self.config).control_path
        deadline = time.monotonic() + timeout
        while "ready: kit" not in self.stderr or not _accepts(sock):
            if self.proc.poll() is not None:
                raise AssertionError(f"capturekit run exited {self.proc.returncode}: {self.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"capturekit run not ready within {timeout} s: {self.stderr}")
            time.sleep(0.05)
        return self

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._err.close()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit()
