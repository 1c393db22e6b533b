"""The make-up QR code: a roster key signed by the centre, verified offline by the kit.

Text form: ``CKM1:`` + unpadded RFC 4648 base32 of ``body || signature`` (case-insensitive, so it
stays in the QR alphanumeric mode and survives a scanner's case conversion). ``body``:

======  ====  =====================================================================
offset  size  field
======  ====  =====================================================================
0       1     kind: 1 id_number, 2 collection_code, 3 card_uid
1       1     key id: first byte of SHA-256(raw Ed25519 public key)
2       6     code id (random, chosen by the centre)
8       4     issued at, Unix seconds UTC, big-endian (also "not before")
12      4     expires at, Unix seconds UTC, big-endian
16      1     scope length S (1..64)
17      S     scope, UTF-8 (the school code, e.g. ``10358``)
17+S    K     roster key, UTF-8, to the end of the body (1..400 bytes)
======  ====  =====================================================================

``signature`` is the 64-byte Ed25519 signature of ``b"CKM1:" + body``. Full description, key
distribution and a worked example: ``docs/qr-format.md``. This module holds no signing code: the
private key lives only at the centre (``centre/makeup_qr.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .identity import Kind

PREFIX = "CKM1:"
PREFIX_RE = re.compile(r"CKM(\d+):", re.IGNORECASE)
HEADER = struct.Struct(">BB6sIIB")  # kind, key id, code id, issued, expires, scope length
SIG_LEN = 64
MAX_SCOPE = 64
MAX_KEY = 400
KIND_CODES = {Kind.ID_NUMBER: 1, Kind.COLLECTION_CODE: 2, Kind.CARD_UID: 3}
KINDS = {code: kind for kind, code in KIND_CODES.items()}


class QrRejected(ValueError):
    """A scanned code the kit refuses; ``reason`` is a stable short code (see docs/qr-format.md)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MakeupQrError(QrRejected):
    """A make-up code that fails verification: ``malformed``, ``unsupported_version``,
    ``unknown_key``, ``bad_signature``, ``revoked``, ``wrong_scope``, ``not_yet_valid``,
    ``expired`` or ``not_configured``. The detail never contains the roster key."""


@dataclass(frozen=True, slots=True)
class MakeupPayload:
    """The signed content of a make-up code."""

    kind: Kind
    key: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    code_id: bytes
    key_id: int = 0

    @property
    def code_id_hex(self) -> str:
        return self.code_id.hex()


def key_id(public_key: bytes) -> int:
    """The one-byte key id of a raw 32-byte Ed25519 public key (a hint, not a secret)."""
    return hashlib.sha256(public_key).digest()[0]


def _epoch(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    seconds = int(when.timestamp())
    if not 0 <= seconds < 2**32:
        raise ValueError(f"{when.isoformat()} does not fit in 32-bit Unix seconds")
    return seconds


def pack_body(payload: MakeupPayload) -> bytes:
    """The unsigned body bytes of ``payload`` (used by the centre to sign)."""
    scope = payload.scope.encode()
    key = payload.key.encode()
    if not 1 <= len(scope) <= MAX_SCOPE:
        raise ValueError(f"scope must be 1..{MAX_SCOPE} bytes of UTF-8")
    if not 1 <= len(key) <= MAX_KEY:
        raise ValueError(f"roster key must be 1..{MAX_KEY} bytes of UTF-8")
    if len(payload.code_id) != 6:
        raise ValueError("code id must be 6 bytes")
    issued, expires = _epoch(payload.issued_at), _epoch(payload.expires_at)
    if expires <= issued:
        raise ValueError("expiry must be after issue")
    header = HEADER.pack(KIND_CODES[Kind(payload.kind)], payload.key_id, payload.code_id,
                         issued, expires, len(scope))
    return header + scope + key


def signed_message(body: bytes) -> bytes:
    """What the signature covers: the version prefix (domain separation) and the body."""
    return PREFIX.encode() + body


def encode_text(body: bytes, signature: bytes) -> str:
    """The QR text for a signed body."""
    if len(signature) != SIG_LEN:
        raise ValueError("Ed25519 signatures are 64 bytes")
    return PREFIX + base64.b32encode(body + signature).decode().rstrip("=")


def is_makeup_text(text: str) -> bool:
    """True when ``text`` carries a make-up prefix of any version (``CKMn:``, any case)."""
    return PREFIX_RE.match(text) is not None


def split_text(text: str) -> tuple[bytes, bytes]:
    """Decode a ``CKM1:`` text into (body, signature) without verifying anything."""
    match = PREFIX_RE.match(text)
    if match is None:
        raise MakeupQrError("malformed", "no CKM prefix")
    if match.group(1) != "1":
        raise MakeupQrError("unsupported_version", f"CKM{match.group(1)} codes need a newer kit")
    data = text[match.end():].upper()
    try:
        raw = base64.b32decode(data + "=" * (-len(data) % 8))
    except (binascii.Error, ValueError):
        raise MakeupQrError("malformed", f"not base32 ({len(data)} chars)") from None
    if base64.b32encode(raw).decode().rstrip("=") != data:
        raise MakeupQrError("malformed", "non-canonical base32")
    if len(raw) < HEADER.size + 2 + SIG_LEN:
        raise MakeupQrError("malformed", f"truncated: {len(raw)} bytes")
    return raw[:-SIG_LEN], raw[-SIG_LEN:]


def parse_body(body: bytes) -> MakeupPayload:
    """Decode body fields (call only on a body whose signature has been checked)."""
    kind_code, kid, code_id, issued, expires, scope_len = HEADER.unpack_from(body)
    scope_end = HEADER.size + scope_len
    if kind_code not in KINDS:
        raise MakeupQrError("malformed", f"unknown kind {kind_code}")
    if not 1 <= scope_len <= MAX_SCOPE or len(body) <= scope_end:
        raise MakeupQrError("malformed", "bad scope length")
    if expires <= issued:
        raise MakeupQrError("malformed", "expiry is not after issue")
    try:
        scope = body[HEADER.size:scope_end].decode()
        key = body[scope_end:].decode()
    except UnicodeDecodeError:
        raise MakeupQrError("malformed", "fields are not UTF-8") from None
    return MakeupPayload(KINDS[kind_code], key, scope, datetime.fromtimestamp(issued, UTC),
                         datetime.fromtimestamp(expires, UTC), code_id, kid)


def _verify_key(key: VerifyKey | bytes | str) -> VerifyKey:
    if isinstance(key, VerifyKey):
        return key
    raw = base64.b64decode(key, validate=True) if isinstance(key, str) else key
    return VerifyKey(raw)


class MakeupVerifier:
    """Checks make-up codes against the centre's public key(s), the kit's scopes and a time.

    ``public_keys``: raw 32-byte keys, their standard base64 (as in the kit config) or
    ``VerifyKey`` objects; more than one during a key rotation. ``scopes``: the school codes this
    kit serves. ``leeway``: tolerated clock difference, applied to both ends of the validity window.
    ``revoked``: code ids (hex) the centre has withdrawn.
    """

    def __init__(self, public_keys: Iterable[VerifyKey | bytes | str], scopes: Iterable[str], *,
                 leeway: timedelta = timedelta(minutes=10), revoked: Iterable[str] = ()) -> None:
        self._keys: dict[int, list[VerifyKey]] = {}
        for key in public_keys:
            vk = _verify_key(key)
            self._keys.setdefault(key_id(bytes(vk)), []).append(vk)
        if not self._keys:
            raise ValueError("at least one public key is needed")
        self.scopes = frozenset(scopes)
        if not self.scopes:
            raise ValueError("at least one scope is needed")
        self.leeway = leeway
        self.revoked = frozenset(r.lower() for r in revoked)

    def verify(self, text: str, now: datetime) -> MakeupPayload:
        """The payload of a genuine, current code for this kit, or :class:`MakeupQrError`."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        body, signature = split_text(text)
        kid = body[1]
        candidates = self._keys.get(kid)
        if not candidates:
            raise MakeupQrError("unknown_key", f"signed with key id {kid:02x}, not in kit config")
        message = signed_message(body)
        for vk in candidates:
            try:
                vk.verify(message, signature)
                break
            except BadSignatureError:
                continue
        else:
            raise MakeupQrError("bad_signature", f"signature does not match key id {kid:02x}")
        payload = parse_body(body)
        code = payload.code_id_hex
        if code in self.revoked:
            raise MakeupQrError("revoked", f"code {code} was withdrawn by the centre")
        if payload.scope not in self.scopes:
            raise MakeupQrError("wrong_scope", f"code {code} is for {payload.scope!r}, not this kit")
        if now < payload.issued_at - self.leeway:
            raise MakeupQrError("not_yet_valid", f"code {code} valid from "
                                f"{payload.issued_at.isoformat()}; check the kit clock")
        if now >= payload.expires_at + self.leeway:
            raise MakeupQrError("expired", f"code {code} expired {payload.expires_at.isoformat()}")
        return payload

    @classmethod
    def from_config(cls, config: dict) -> MakeupVerifier:
        """Build from the kit config section ``makeup_qr`` (see docs/qr-format.md)."""
        return cls(config["public_keys"], config["scopes"],
                   leeway=timedelta(seconds=config.get("leeway_seconds", 600)),
                   revoked=config.get("revoked", ()))
