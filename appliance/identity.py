"""Who is in front of the camera: one typed key, and the one place that decides what is stored.

Every identity source (card reader, ID-card SAM reader, QR code, manual entry, simulator) produces an
:class:`Identity`. It carries only the key that binds the photo — never an address, birth date or photo
from the card: readers drop every other field before building one (data minimisation, see
``docs/privacy.md``). The clear key lives in memory only: the daemon fills in its ``protected`` form
(:mod:`appliance.protect`) once per tap, and :func:`stored_form` — the only function that decides what the
journal keeps — refuses an identity without it. Logs and the console show :func:`masked`: the kind and the
first digits of the protected form, never a character of the key. The clear key reaches only the sealed
bundle, which only the centre can open.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    """A typed identity key, where it came from, and which reader/profile produced it.

    ``protected`` is the key's protected form (hex), filled in by the daemon; ``display`` a name a reader
    may pass for a local display when the school's policy allows it (``privacy.show_names``). Neither takes
    part in equality, and neither the key nor the name is ever in ``repr`` or ``str``.
    """

    kind: Kind
    key: str = field(repr=False)
    source: Source
    reader: str = ""
    protected: str = field(default="", compare=False)
    display: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        return f"{masked(self)} via {self.source}"

    def with_protected(self, protected: str) -> Identity:
        return replace(self, protected=protected)


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


TAG_LEN = 6


def masked(identity: Identity) -> str:
    """A form safe for logs and the operator console: the kind and the first hex digits of the protected
    form (``id_number#3fa9c2``), enough to tell students apart in a session. No character of the key: any
    part of an ID number would shrink the space the protected form hides it in (docs/privacy.md)."""
    tag = identity.protected[:TAG_LEN]
    return f"{identity.kind.value}#{tag}" if tag else f"{identity.kind.value}#??????"


def stored_form(identity: Identity) -> dict[str, str]:
    """What the journal keeps of an identity (the single point of decision): its protected form only."""
    if not identity.protected:
        raise ValueError("identity has no protected form: it must be protected before it is stored")
    return {
        "kind": identity.kind.value,
        "key": identity.protected,
        "source": identity.source.value,
        "reader": identity.reader,
    }


def clear_form(identity: Identity) -> dict[str, str]:
    """The identity as the sealed bundle carries it to the centre (the only place the clear key is written)."""
    return {"kind": identity.kind.value, "key": identity.key, "source": identity.source.value,
            "reader": identity.reader}
