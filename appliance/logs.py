"""Logging for the kit's commands: one line per record to stderr (journald under systemd), repeats folded.

A reader on a noisy serial line can say "skipped N stray bytes" several times a second for hours: that
would flood journald, which on a kit lives on the SD card. :class:`RepeatFilter` lets the first record of
a kind through (same logger, level and message template — the numbers in it may differ), holds back the
ones that follow within ``window_s``, and when the kind appears again after the window it says how many
were held back. CRITICAL records always pass.
"""

from __future__ import annotations

import logging
import threading
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RepeatFilter(logging.Filter):
    """Fold records of the same kind seen again within ``window_s`` (see module docstring)."""

    def __init__(self, window_s: float = 60.0, clock=time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            last, held = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.window_s:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # forget old kinds: bounded memory on a kit that runs for weeks
                for k in [k for k, (t, _) in self._seen.items() if now - t >= self.window_s]:
                    del self._seen[k]
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.window_s:g} s)"
        return True


def setup(level: int) -> None:
    """Configure the root logger for a command: stderr, one line per record, repeats folded."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
