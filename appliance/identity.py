"""Who is in front of the camera: one typed key, and the one place that decides what is stored.

Every identity source (card reader, ID-card SAM reader, QR code, manual entry, simulator) produces an
:class:`Identity`. It carries only the key that binds the photo — never a name, address or photo from
the card: readers drop every other field before building one (data minimisation, see
``../shared/reference/id-readers.md``). :func:`stored_form` is the only function that turns an
identity into what the journal and the spool keep; the keyed-hash form planned in the roadmap
changes this function and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from . import idnumber


class Kind(StrEnum):
    """What the key is (its namespace in the roster)."""

    ID_NUMBER = "id_number"  # resident ID card or permit number, GB 11643 checked
    COLLECTION_CODE = "collection_code"  # CHSI image-collection code: opaque, kept exactly as scanned
    CARD_UID = "card_uid"  # contactless chip UID (upper-case hex), mapped through the roster


class Source(StrEnum):
    """How the key was read (journalled as proof of identification)."""

    SIM = "sim"
    PCSC = "pcsc"
    SAM = "sam"
    QR_SCANNER = "qr_scanner"
    QR_CAMERA = "qr_camera"
    MAKEUP_QR = "makeup_qr"
    MANUAL = "manual"


class InvalidIdentity(ValueError):
    """A key that cannot be an identity of its kind; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    """A typed identity key, where it came from, and which reader/profile produced it."""

    kind: Kind
    key: str
    source: Source
    reader: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{masked(self)} via {self.source}"


def make(kind: Kind | str, key: str, source: Source | str, reader: str = "") -> Identity:
    """Build an identity, normalising only what its kind allows.

    ID numbers are normalised (spaces, lower-case x) but not validated here: an invalid number is
    still an identity read, which the roster check rejects with its own signal. Collection codes
    are kept byte for byte. Card UIDs are upper-case hex.
    """
    kind = Kind(kind)
    if kind is Kind.ID_NUMBER:
        key = idnumber.normalise(key)
    elif kind is Kind.CARD_UID:
        key = key.strip().replace(" ", "").replace(":", "").upper()
        if not key or any(c not in "0123456789ABCDEF" for c in key):
            raise InvalidIdentity("card_uid", f"not a hex UID ({len(key)} characters)")  # the key stays out of logs
    if not key:
        raise InvalidIdentity("empty", f"empty {kind} key")
    return Identity(kind, key, Source(source), reader)


def masked(identity: Identity) -> str:
    """A form safe for logs and the operator console: enough to tell students apart, no more."""
    key = identity.key
    if identity.kind is Kind.COLLECTION_CODE:
        return f"{key[:4]}…({len(key)} chars)" if len(key) > 8 else "…"
    if len(key) <= 6:
        return key
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def stored_form(identity: Identity) -> dict[str, str]:
    """What the journal and the spool keep of an identity (the single point of decision)."""
    return {
        "kind": identity.kind.value,
        "key": identity.key,
        "source": identity.source.value,
        "reader": identity.reader,
    }
