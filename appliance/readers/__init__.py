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


# Problem codes that refuse what was presented (a card or code we will not take), as opposed to a
# reader that is unwell: the kit shows the "refused" signal for these, the "error" signal otherwise.
REFUSALS = frozenset({"unknown_card", "card_data", "card_unreadable"})


def is_refusal(code: str) -> bool:
    """True for a refused card or QR code (every ``qr_*`` code is about the code shown)."""
    return code in REFUSALS or code.startswith("qr_")


class Reader(Protocol):
    """What the daemon needs from an identity source."""

    name: str

    def start(self, on_identity: OnIdentity, on_problem: OnProblem) -> None:
        """Begin reading; call ``on_identity`` once per presentation (one tap = one read)."""

    def stop(self) -> None:
        """Stop reading and release the device."""
