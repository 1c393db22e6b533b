"""The simulated identity source: the simulator (or a test) hands it identities to present."""

from __future__ import annotations

from ..identity import Identity
from . import OnIdentity, OnProblem


class SimReader:
    """A reader whose "cards" are presented by calling :meth:`present`."""

    def __init__(self, name: str = "sim") -> None:
        self.name = name
        self._on_identity: OnIdentity | None = None
        self._on_problem: OnProblem | None = None

    def start(self, on_identity: OnIdentity, on_problem: OnProblem) -> None:
        self._on_identity, self._on_problem = on_identity, on_problem

    def stop(self) -> None:
        self._on_identity = self._on_problem = None

    def present(self, identity: Identity) -> None:
        if self._on_identity is None:
            raise RuntimeError("sim reader not started")
        self._on_identity(identity)

    def problem(self, code: str, detail: str) -> None:
        if self._on_problem is None:
            raise RuntimeError("sim reader not started")
        self._on_problem(code, detail)
