"""Collects what a reader reports through its callbacks; waits on it with deadlines (reader tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from appliance.identity import Identity


class Recorder:
    """Thread-safe ``on_identity`` / ``on_problem`` sink; the ``wait_*`` methods assert on timeout."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.identities: list[Identity] = []
        self.problems: list[tuple[str, str]] = []
        self._cv = threading.Condition()

    def on_identity(self, identity: Identity) -> None:
        with self._cv:
            self.identities.append(identity)
            self._cv.notify_all()

    def on_problem(self, code: str, detail: str) -> None:
        with self._cv:
            self.problems.append((code, detail))
            self._cv.notify_all()

    def codes(self) -> list[str]:
        with self._cv:
            return [code for code, _ in self.problems]

    def wait(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(predicate, self.timeout if timeout is None else timeout)

    def wait_identities(self, n: int = 1, timeout: float | None = None) -> list[Identity]:
        assert self.wait(lambda: len(self.identities) >= n, timeout), (
            f"expected {n} identities, got {self.identities}; problems {self.problems}")
        return self.identities

    def wait_problem(self, code: str, timeout: float | None = None) -> str:
        assert self.wait(lambda: code in self.codes(), timeout), f"expected problem {code}, got {self.problems}"
        return next(detail for c, detail in self.problems if c == code)
