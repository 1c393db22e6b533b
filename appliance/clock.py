"""Time for the daemon and its adapters (the session machine never reads a clock: events carry it)."""

from __future__ import annotations

import datetime as dt
import threading
import time


class SystemClock:
    """Monotonic seconds for deadlines; local wall time with offset for the journal."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> str:
        return dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


class ManualClock:
    """A clock the simulator advances by hand: a classroom hour runs in seconds."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._t = 0.0
        self._start = start or dt.datetime.now().astimezone().replace(microsecond=0)
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def wall(self) -> str:
        return (self._start + dt.timedelta(seconds=self.monotonic())).isoformat(timespec="milliseconds")
