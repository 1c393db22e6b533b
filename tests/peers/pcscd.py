"""A private pcscd with a vpcd reader, for tests: start, stop, restart, with or without the reader.

Isolation from any system pcscd (socket-activated or not): our pcscd is handed a listening UNIX
socket of ours in a temporary directory through the systemd socket-activation protocol
(``LISTEN_FDS=1``, ``LISTEN_PID``, fd 3), and the client library is pointed at it with
``PCSCLITE_CSOCK_NAME``. Its vpcd reader listens on a free TCP port from a private reader.conf, so
it does not clash with a system vpcd on 35963 either. What is still shared: the pid file
``/run/pcscd/pcscd.pid`` (pcscd 1.9 hard-codes it and removes it on exit) and USB readers, which our
pcscd also opens if any are plugged in.

The command line (see :meth:`Pcscd.command`)::

    bash -c 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&N N<&-' pcscd \
        pcscd --foreground --debug --apdu --config <tmp>/reader.conf.d [--disable-polkit]

``--disable-polkit`` exists from pcsc-lite 2.0 (it is passed when ``pcscd --help`` lists it; the
1.9 daemon in Debian bookworm is built without polkit). ``--auto-exit`` is deliberately not used.

A reader "unplug" is simulated by restarting pcscd without the reader in its reader.conf: pcscd
built with libudev ignores SIGUSR1 (``pcscd --hotplug``) for serial readers, so a vpcd reader
cannot disappear while pcscd keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .vpcd_card import VpcdCard

log = logging.getLogger("tests.pcscd")

VPCD_DRIVER_PATHS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib/x86_64-linux-gnu/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
)
# pcsc-lite reads PCSCLITE_CSOCK_NAME once per process; every test session uses this one path.
SOCKET_DIR = Path(tempfile.gettempdir()) / f"capturekit-pcscd-{os.getpid()}"
SOCKET_PATH = SOCKET_DIR / "pcscd.comm"


def find_pcscd() -> str | None:
    return shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if os.access(p, os.X_OK)), None)


def find_vpcd_driver() -> str | None:
    """The vpcd driver: from the packaged reader.conf.d/vpcd if present, else a known path."""
    candidates = list(VPCD_DRIVER_PATHS)
    with contextlib.suppress(OSError):
        for line in Path("/etc/reader.conf.d/vpcd").read_text().splitlines():
            if line.strip().startswith("LIBPATH"):
                candidates.insert(0, line.split(None, 1)[1].strip())
    return next((p for p in candidates if os.path.exists(p)), None)


def missing_binaries() -> str:
    """Why the PC/SC test stack cannot run here ('' when it can)."""
    missing = []
    if not find_pcscd():
        missing.append("pcscd (apt: pcscd)")
    if not find_vpcd_driver():
        missing.append("vpcd driver libifdvpcd.so (apt: vsmartcard-vpcd)")
    if not shutil.which("bash"):
        missing.append("bash")
    return ", ".join(missing)


def free_port_pair() -> int:
    """A TCP port p with p and p+1 free (vpcd opens one port per slot, two slots)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("0.0.0.0", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free TCP port pair for vpcd")


class Pcscd:
    """One private pcscd process serving a vpcd reader on ``port`` (slot 0) and ``port + 1``."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.conf_dir = workdir / "reader.conf.d"  # a directory: what --config means in 1.9 and 2.x
        self.conf_dir.mkdir(exist_ok=True)
        self.conf = self.conf_dir / "vpcd"
        self.logfile = workdir / "pcscd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pcscd = find_pcscd() or "pcscd"
        self.driver = find_vpcd_driver() or VPCD_DRIVER_PATHS[0]
        self.reader_names = ("Virtual PCD 00 00", "Virtual PCD 00 01")

    def _write_conf(self, with_reader: bool) -> None:
        text = ("# capturekit test reader: vpcd on a private port\n"
                'FRIENDLYNAME "Virtual PCD"\n'
                f"DEVICENAME   /dev/null:{self.port}\n"
                f"LIBPATH      {self.driver}\n"
                f"CHANNELID    {self.port}\n") if with_reader else "# no reader\n"
        self.conf.write_text(text)

    def command(self, fd: int) -> list[str]:
        opts = ["--foreground", "--debug", "--apdu", "--config", str(self.conf_dir)]
        if "--disable-polkit" in _pcscd_help(self.pcscd):
            opts.append("--disable-polkit")
        move = "" if fd == 3 else f" 3<&{fd} {fd}<&-"  # the socket must be fd 3 (SD_LISTEN_FDS_START)
        script = f'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"{move}'
        return ["bash", "-c", script, "pcscd", self.pcscd, *opts]

    def start(self, with_reader: bool = True, timeout: float = 10.0) -> None:
        """Start pcscd (with or without the vpcd reader) and wait until it serves clients."""
        assert self.proc is None or self.proc.poll() is not None, "pcscd already running"
        self._write_conf(with_reader)
        SOCKET_PATH.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(SOCKET_PATH))
            listener.listen(32)
            os.chmod(SOCKET_PATH, 0o666)
            fd = listener.fileno()
            with open(self.logfile, "ab") as out:
                self.proc = subprocess.Popen(self.command(fd), pass_fds=(fd,), stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            listener.close()  # pcscd holds its own copy; once it dies, clients get "no service"
        log.info("pcscd pid %s on %s, vpcd port %s, reader %s", self.proc.pid, SOCKET_PATH,
                 self.port, "configured" if with_reader else "absent")
        self._wait_serving(with_reader, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pcscd (SIGTERM, then SIGKILL) and make sure its socket refuses clients."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        SOCKET_PATH.unlink(missing_ok=True)

    def restart(self, with_reader: bool = True) -> None:
        self.stop()
        self.start(with_reader)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def readers(self) -> list[str] | None:
        """Readers listed by our pcscd, or None when it does not serve clients."""
        from smartcard import scard

        rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rc != scard.SCARD_S_SUCCESS:
            return None
        try:
            rc, readers = scard.SCardListReaders(ctx, [])
            if rc == scard.SCARD_E_NO_READERS_AVAILABLE:
                return []
            return list(readers) if rc == scard.SCARD_S_SUCCESS else None
        finally:
            scard.SCardReleaseContext(ctx)

    def _wait_serving(self, with_reader: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pcscd exited with {self.proc.returncode}:\n{self.log_tail()}")
            readers = self.readers()
            if readers is not None and (self.reader_names[0] in readers) == with_reader:
                return
            time.sleep(0.05)
        raise TimeoutError(f"pcscd not serving (reader expected: {with_reader}) after {timeout}s "
                           f"(PCSCLITE_CSOCK_NAME={os.environ.get('PCSCLITE_CSOCK_NAME')}):\n"
                           f"{self.log_tail()}")

    def wait_card(self, present: bool, timeout: float = 5.0) -> None:
        """Wait until pcscd itself sees a card on (or no card on) slot 0.

        vpcd notices a card only on pcscd's presence poll (about every 400 ms), so a card swapped
        faster than that is, for pcscd, the same card: tests take a card off with this wait.
        """
        from smartcard import scard

        want = scard.SCARD_STATE_PRESENT if present else scard.SCARD_STATE_EMPTY
        rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rc != scard.SCARD_S_SUCCESS:
            raise RuntimeError(f"pcscd not serving: {rc:#x}")
        try:
            state = scard.SCARD_STATE_UNAWARE
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                rc, states = scard.SCardGetStatusChange(ctx, int(left * 1000) + 1,
                                                        [(self.reader_names[0], state)])
                if rc != scard.SCARD_S_SUCCESS:
                    break
                state = states[0][1] & ~scard.SCARD_STATE_CHANGED
                if state & want:
                    return
        finally:
            scard.SCardReleaseContext(ctx)
        raise TimeoutError(f"pcscd still sees {'no ' if present else ''}card after {timeout}s")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no pcscd log)"


def _pcscd_help(pcscd: str) -> str:
    try:
        out = subprocess.run([pcscd, "--help"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


@dataclass
class PcscStack:
    """pyscard -> our pcscd -> vpcd -> our card."""

    pcscd: Pcscd
    card: VpcdCard  # slot 0

    @property
    def reader_name(self) -> str:
        return self.pcscd.reader_names[0]

    def remove_card(self) -> None:
        """Take the card off and wait until pcscd has seen the slot empty (a real lift)."""
        self.card.remove()
        if self.pcscd.running:
            self.pcscd.wait_card(present=False)


@contextlib.contextmanager
def pcsc_stack_running(workdir: Path) -> Iterator[PcscStack]:
    """Start the stack; stop it and remove the card afterwards."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"PC/SC test stack needs {missing}")
    SOCKET_DIR.mkdir(mode=0o755, exist_ok=True)
    previous = os.environ.get("PCSCLITE_CSOCK_NAME")
    os.environ["PCSCLITE_CSOCK_NAME"] = str(SOCKET_PATH)
    pcscd = Pcscd(workdir, free_port_pair())
    card = VpcdCard(pcscd.port)
    try:
        pcscd.start()
        yield PcscStack(pcscd, card)
    finally:
        card.remove()
        pcscd.stop()
        with contextlib.suppress(OSError):
            SOCKET_DIR.rmdir()
        if previous is None:
            os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        else:
            os.environ["PCSCLITE_CSOCK_NAME"] = previous


@pytest.fixture(scope="module")
def pcsc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscStack]:
    """Module-scoped stack; tests leave it running (restart it if they stopped it)."""
    with pcsc_stack_running(tmp_path_factory.mktemp("pcscd")) as stack:
        yield stack
