"""The kit's data directory: one process at a time, and no command creating a kit by mistake.

The capture daemon (``run``, ``simulate``), ``recover`` and the ``session`` commands hold an exclusive
``flock`` on ``<data_dir>/kit.lock`` for as long as they run. The kernel drops the lock when the process
ends, however it ends (SIGKILL included), so a stale lock cannot exist; the pid and command written into
the file are only there for the message a second process prints. ``roster load`` holds ``roster.lock``
instead, so a roster can be installed while the daemon runs (the daemon reopens it) but two loads never
interleave. Read-only commands (``status``) take no lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from .errors import DataDirBusy, StartRefused

KIT_LOCK = "kit.lock"
ROSTER_LOCK = "roster.lock"


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a file renamed or created in it) survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Lock:
    """An exclusive, non-blocking flock on one file; released on :meth:`release` or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, holder: str) -> Lock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StartRefused(f"cannot open the lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            finally:
                os.close(fd)
            raise DataDirBusy(f"{self.path.parent} is in use by another capturekit process ({who}):"
                              " only one may use a data directory at a time") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, capturekit {holder}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def require(data: Path) -> Path:
    """The data directory of an existing kit; never created here (only ``run``/``simulate`` create one)."""
    if not data.is_dir():
        what = "is not a directory" if data.exists() else "does not exist"
        raise StartRefused(f"kit data directory {data} {what} (mistyped --data-dir?);"
                           " only `capturekit run` or `simulate` create one")
    return data


def create(data: Path) -> Path:
    """Create the data directory if needed (``run``/``simulate``); it must be writable."""
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartRefused(f"cannot create the kit data directory {data}: {exc.strerror}") from exc
    if not data.is_dir():
        raise StartRefused(f"kit data directory {data} is not a directory")
    if not os.access(data, os.W_OK | os.X_OK):
        raise StartRefused(f"kit data directory {data} is not writable by this user (uid {os.getuid()})")
    return data


def check_free_space(data: Path, min_free_mb: int) -> int:
    """Refuse to start a session on a disk with less than ``min_free_mb`` free; return the free MB."""
    free = shutil.disk_usage(data).free // 2**20
    if free < min_free_mb:
        raise StartRefused(f"only {free} MB free on {data}; a session needs {min_free_mb} MB"
                           " (storage.min_free_mb): let sync upload and purge, or free space")
    return free
