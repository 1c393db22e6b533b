"""Repeated warnings are folded so a noisy reader cannot flood journald on the SD card."""

from __future__ import annotations

import logging

from appliance.logs import RepeatFilter


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_of_the_same_warning_is_one_line_then_a_count(caplog):
    clock = Clock()
    log = logging.getLogger("capturekit.test.sam")
    f = RepeatFilter(window_s=60, clock=clock)
    log.addFilter(f)
    try:
        with caplog.at_level(logging.WARNING, logger="capturekit.test.sam"):
            for i in range(200):  # "several times a second" for a while
                clock.t = i * 0.2
                log.warning("%s: skipped %d stray bytes before the reply", "find card", i % 7 + 1)
            log.warning("%s: a different problem", "reader")
            clock.t = 100.0
            log.warning("%s: skipped %d stray bytes before the reply", "find card", 3)
            log.critical("storage failed: %s", "disk full")
            log.critical("storage failed: %s", "disk full")
    finally:
        log.removeFilter(f)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "find card: skipped 1 stray bytes before the reply"
    assert lines[1] == "reader: a different problem"
    assert lines[2] == "find card: skipped 3 stray bytes before the reply (and 199 more like it in the last 60 s)"
    assert lines[3:] == ["storage failed: disk full"] * 2  # critical lines are never folded
