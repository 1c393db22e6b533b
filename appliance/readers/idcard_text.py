"""The 256-byte text block of a second-generation resident ID card (GA 490 layout), and its kin.

Every ID-card path (the SAM serial protocol, a PC/SC reader with a built-in SAM) returns the same
block: UCS-2LE, space padded. The card-type flag at bytes 248–249 selects the layout:

==========  ===========================================  ==========================
flag        card                                         number field
==========  ===========================================  ==========================
space/none  resident identity card                       bytes 122–157 (18 chars)
``J``       Hong Kong / Macao / Taiwan residence permit  bytes 122–157 (18 chars)
``Y``       foreigner permanent residence card (2023)    bytes 122–157 (18 chars)
``I``       foreigner permanent residence card (2017)    bytes 122–151 (15 chars)
==========  ===========================================  ==========================

Sources: GA 490 field table as quoted in ``../shared/reference/id-readers.md``; the J/I/Y layouts
from the public header ``PCSCGetData.h`` (repository Johann356/readinfo). Only
:func:`identity_from_text` is used by readers: it keeps the number and drops everything else.
:func:`parse_text` decodes every field, for diagnostics (``capturekit selftest``) and tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..identity import Identity, Kind, Source, make

TEXT_LEN = 256

# (field, offset, length) for each layout; lengths in bytes of UCS-2LE.
RESIDENT = (
    ("name", 0, 30), ("sex", 30, 2), ("nation", 32, 4), ("birth_date", 36, 16),
    ("address", 52, 70), ("number", 122, 36), ("authority", 158, 30),
    ("valid_from", 188, 16), ("valid_to", 204, 16),
)
PERMIT_HMT = (
    *RESIDENT, ("pass_number", 220, 18), ("issue_count", 238, 4),
)
FOREIGN_2017 = (
    ("name_en", 0, 120), ("sex", 120, 2), ("number", 122, 30), ("nationality", 152, 6),
    ("name", 158, 30), ("valid_from", 188, 16), ("valid_to", 204, 16), ("birth_date", 220, 16),
    ("card_version", 236, 4), ("authority_code", 240, 8),
)
FOREIGN_2023 = (
    ("name", 0, 30), ("sex", 30, 2), ("renewal_count", 32, 4), ("birth_date", 36, 16),
    ("name_en", 52, 70), ("number", 122, 36), ("valid_from", 188, 16), ("valid_to", 204, 16),
    ("name_en_ext", 220, 22), ("nationality", 242, 6), ("previous_number_link", 250, 6),
)
LAYOUTS = {"": ("resident", RESIDENT), "J": ("permit_hmt", PERMIT_HMT),
           "I": ("foreign_pr_2017", FOREIGN_2017), "Y": ("foreign_pr_2023", FOREIGN_2023)}


class CardDataError(ValueError):
    """A text block that cannot be decoded; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class CardText:
    """Every decoded field of a text block (diagnostics only; never journalled)."""

    card_type: str
    fields: dict[str, str]

    @property
    def number(self) -> str:
        return self.fields["number"]


def _field(block: bytes, offset: int, length: int) -> str:
    try:
        return block[offset:offset + length].decode("utf-16-le").rstrip(" \x00")
    except UnicodeDecodeError as exc:
        raise CardDataError("encoding", f"bytes {offset}-{offset + length} are not UCS-2LE") from exc


def card_type_flag(block: bytes) -> str:
    """The layout flag at bytes 248–249 ('' for a resident card)."""
    return _field(block, 248, 2)


def parse_text(block: bytes) -> CardText:
    """Decode all fields of a 256-byte text block."""
    if len(block) != TEXT_LEN:
        raise CardDataError("length", f"text block is {len(block)} bytes, expected {TEXT_LEN}")
    flag = card_type_flag(block)
    if flag not in LAYOUTS:
        raise CardDataError("card_type", f"unknown card-type flag {flag!r}")
    card_type, layout = LAYOUTS[flag]
    return CardText(card_type, {name: _field(block, off, n) for name, off, n in layout})


def identity_from_text(block: bytes, source: Source, reader: str = "", keep_name: bool = False) -> Identity:
    """The identity a text block carries: its number, and nothing else from the card — except, when the
    school's policy lets the local display show names (``keep_name``), the name, in memory only."""
    fields = parse_text(block).fields
    number = fields["number"]
    if not number:
        raise CardDataError("number", "text block carries no identity number")
    identity = make(Kind.ID_NUMBER, number, source, reader)
    if keep_name:
        identity = dataclasses.replace(identity, display=fields.get("name", ""))
    return identity


def build_text(card_type: str = "", **fields: str) -> bytes:
    """Encode fields into a 256-byte block (the inverse of :func:`parse_text`; for emulators/tests)."""
    layout = LAYOUTS[card_type][1]
    block = bytearray(" ".encode("utf-16-le") * (TEXT_LEN // 2))
    known = {name for name, _, _ in layout}
    unknown = set(fields) - known
    if unknown:
        raise KeyError(f"{sorted(unknown)} are not fields of layout {card_type!r}")
    for name, off, n in layout:
        raw = fields.get(name, "").encode("utf-16-le")
        if len(raw) > n:
            raise ValueError(f"{name} is longer than {n // 2} characters")
        block[off:off + len(raw)] = raw
    if card_type:
        block[248:250] = card_type.encode("utf-16-le")
    return bytes(block)
