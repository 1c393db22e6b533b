"""Identity sources. Each turns whatever it reads into an :class:`~appliance.identity.Identity`.

A reader runs its own thread (or the daemon polls it) and reports through two callbacks; it
never touches the session, the journal or the devices itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..identity import Identity

OnIdentity = Callable[[Identity], None]
# (code, detail): e.g. ("reader_unplugged", "ACS ACR122U 00 00"), ("unknown_card", "ATR 3B8F…").
OnProblem = Callable[[str, str], None]


class Reader(Protocol):
    """What the daemon needs from an identity source."""

    name: str

    def start(self, on_identity: OnIdentity, on_problem: OnProblem) -> None:
        """Begin reading; call ``on_identity`` once per presentation (one tap = one read)."""

    def stop(self) -> None:
        """Stop reading and release the device."""
