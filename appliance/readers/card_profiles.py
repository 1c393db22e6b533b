"""Card profiles: which APDUs a PC/SC reader sends to a presented card, and how the answer is an identity.

A profile is a row of :data:`PROFILES`, chosen by name in the kit's configuration. Adding a profile
for another reader or card is a table entry: a name, the APDU steps (hex, with how many data bytes
each answer must carry and which slice of it is kept) and a parser (one of the functions below).

==================  ===============================  ===============================================
profile             APDUs                            identity
==================  ===============================  ===============================================
``uid``             ``FF CA 00 00 00`` (GET DATA)    ``card_uid``: the chip UID, upper-case hex;
                                                     an all-zero UID (resident ID card, PUPI 0)
                                                     is an unknown card
``idcard_vendor_    ``FF B0 00 00 00`` (vendor       ``id_number`` from the 256-byte text block
sam``               pseudo-APDU, built-in SAM)       after a 4-byte header (unverified on hardware)
==================  ===============================  ===============================================

Errors are typed: :class:`StatusWordError` (answer not ``90 00``; the SW is in the message),
:class:`ShortAnswerError` (fewer data bytes than the step needs), :class:`NoAnswerError` (not even
a status word: the card went away), :class:`UnknownCardError` (a well-formed answer that is no
identity, e.g. a zero UID). Card data that does not decode raises the parser's own error
(:class:`~appliance.readers.idcard_text.CardDataError`, :class:`~appliance.identity.InvalidIdentity`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..identity import Identity, Kind, Source, make
from .idcard_text import TEXT_LEN, identity_from_text

SW_OK = 0x9000


class CardError(Exception):
    """A card answer that yields no identity; ``reason`` is a short code."""

    reason = "card_error"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.detail = detail


class NoAnswerError(CardError):
    """The answer has no status word (the card left the field, or the reader lost it)."""

    reason = "no_answer"


class StatusWordError(CardError):
    """The card or reader answered a status word other than ``90 00``."""

    reason = "status_word"

    def __init__(self, apdu: bytes, sw: int) -> None:
        super().__init__(f"SW {sw >> 8:02X} {sw & 0xFF:02X} to {apdu.hex(' ').upper()}")
        self.sw = sw


class ShortAnswerError(CardError):
    """The answer carries fewer data bytes than the profile needs."""

    reason = "short_answer"

    def __init__(self, apdu: bytes, got: int, need: int, sw: int) -> None:
        super().__init__(f"{got} data bytes (need {need}), SW {sw >> 8:02X} {sw & 0xFF:02X} "
                         f"to {apdu.hex(' ').upper()}")
        self.sw = sw


class UnknownCardError(CardError):
    """A well-formed answer that identifies nobody (e.g. the zero UID of a resident ID card)."""

    reason = "unknown_card"


@dataclass(frozen=True)
class Step:
    """One APDU and what its answer must hold: ``min_len`` data bytes, of which ``[offset:offset+length]``
    is kept (all from ``offset`` when ``length`` is None)."""

    apdu: str
    min_len: int = 0
    offset: int = 0
    length: int | None = None

    @property
    def command(self) -> bytes:
        return bytes.fromhex(self.apdu)

    def extract(self, response: Sequence[int]) -> bytes:
        """The kept data of a response APDU (data + SW1 SW2); raises a :class:`CardError`."""
        raw = bytes(response)
        if len(raw) < 2:
            raise NoAnswerError(f"{len(raw)}-byte answer to {self.command.hex(' ').upper()}")
        data, sw = raw[:-2], int.from_bytes(raw[-2:], "big")
        if sw != SW_OK:
            raise StatusWordError(self.command, sw)
        if len(data) < self.min_len:
            raise ShortAnswerError(self.command, len(data), self.min_len, sw)
        end = None if self.length is None else self.offset + self.length
        return data[self.offset:end]


Parser = Callable[[Sequence[bytes], str], Identity]


@dataclass(frozen=True)
class CardProfile:
    """A named way of reading an identity from a card: APDU steps, then a parser of their data."""

    name: str
    steps: tuple[Step, ...]
    parse: Parser
    description: str = ""

    def read(self, transmit: Callable[[bytes], Sequence[int]], reader: str = "") -> Identity:
        """Run the steps through ``transmit`` (command -> response with SW) and parse the answers."""
        return self.parse([step.extract(transmit(step.command)) for step in self.steps], reader)


def parse_uid(answers: Sequence[bytes], reader: str) -> Identity:
    """First answer is a chip UID; all zeros means a card without a usable UID."""
    uid = answers[0]
    if not any(uid):
        raise UnknownCardError(f"all-zero {len(uid)}-byte UID (resident ID card or PUPI-less chip)")
    return make(Kind.CARD_UID, uid.hex().upper(), Source.PCSC, reader)


def parse_id_text(answers: Sequence[bytes], reader: str) -> Identity:
    """First answer is the 256-byte ID-card text block; keep the number only."""
    return identity_from_text(answers[0], Source.PCSC, reader)


PROFILES: dict[str, CardProfile] = {
    p.name: p
    for p in (
        CardProfile("uid", (Step("FF CA 00 00 00", min_len=4),), parse_uid,
                    "contactless chip UID via the PC/SC GET DATA pseudo-APDU (campus cards)"),
        CardProfile("idcard_vendor_sam",
                    (Step("FF B0 00 00 00", min_len=4 + TEXT_LEN, offset=4, length=TEXT_LEN),),
                    parse_id_text,
                    "ID-card text block from a reader with built-in SAM (vendor pseudo-APDU, "
                    "unverified on hardware)"),
    )
}


def get_profile(profile: str | CardProfile) -> CardProfile:
    """The profile named in configuration (a :class:`CardProfile` passes through)."""
    if isinstance(profile, CardProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown card profile {profile!r}; known: {', '.join(sorted(PROFILES))}") from None
