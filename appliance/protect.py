"""The protected form of an identity key: what the roster and the journal hold instead of the key.

An 18-digit ID number has little entropy (a school's cohort lies in 10^7–10^9 candidates), so a plain
or keyed hash whose key sits on the same card would fall to enumeration in seconds. ID numbers and card
UIDs are therefore hashed with **Argon2id** (libsodium's ``crypto_pwhash`` through PyNaCl), memory-hard,
with the roster's salt; CHSI collection codes are high-entropy opaque strings and get HMAC-SHA256 under
the roster's key. The numbers and the threat are in ``docs/privacy.md``.

A :class:`RosterKey` belongs to a roster: the centre makes one per school (a main school and its
joint-programme sites share one) and hashes the roster with it; a kit computes one hash per tap with the
key of the roster it holds. The key is not secret — it is on the card — it only makes every guess cost
one Argon2id evaluation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from nacl.pwhash import argon2id

from .identity import Identity, Kind

# Argon2id cost of a new roster key (libsodium units). 2 passes over 32 MiB: ~45 ms on one x86 core, an
# estimated ~0.2 s on a Pi 4 per tap (benchmarks/capture_cycle.py prints it). Stored with each key.
DEFAULT_OPSLIMIT = 2
DEFAULT_MEMLIMIT = 32 * 2**20


@dataclass(frozen=True)
class RosterKey:
    salt: bytes  # 16 bytes, Argon2id salt for ID numbers and card UIDs
    hmac_key: bytes  # 32 bytes, HMAC-SHA256 key for collection codes
    opslimit: int = DEFAULT_OPSLIMIT
    memlimit: int = DEFAULT_MEMLIMIT

    @classmethod
    def new(cls, opslimit: int = DEFAULT_OPSLIMIT, memlimit: int = DEFAULT_MEMLIMIT) -> RosterKey:
        return cls(secrets.token_bytes(argon2id.SALTBYTES), secrets.token_bytes(32), opslimit, memlimit)

    def protect(self, kind: Kind | str, key: str) -> str:
        """The protected form (hex) of one key of ``kind``."""
        kind = Kind(kind)
        message = f"{kind.value}:{key}".encode()
        if kind is Kind.COLLECTION_CODE:
            return hmac.new(self.hmac_key, message, hashlib.sha256).hexdigest()
        return argon2id.kdf(32, message, self.salt, opslimit=self.opslimit, memlimit=self.memlimit).hex()

    def identity(self, identity: Identity) -> Identity:
        """The identity with its protected form filled in (the clear key stays in memory only)."""
        return identity.with_protected(self.protect(identity.kind, identity.key))

    def to_dict(self) -> dict[str, Any]:
        return {"salt": base64.b64encode(self.salt).decode(), "hmac_key": base64.b64encode(self.hmac_key).decode(),
                "argon2id": {"opslimit": self.opslimit, "memlimit": self.memlimit}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RosterKey:
        try:
            salt, mac = base64.b64decode(d["salt"], validate=True), base64.b64decode(d["hmac_key"], validate=True)
            ops, mem = int(d["argon2id"]["opslimit"]), int(d["argon2id"]["memlimit"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"roster key malformed: {exc}") from None
        if len(salt) != argon2id.SALTBYTES or len(mac) != 32:
            raise ValueError("roster key: salt must be 16 bytes and hmac_key 32 bytes")
        if not (argon2id.OPSLIMIT_MIN <= ops <= argon2id.OPSLIMIT_MAX
                and argon2id.MEMLIMIT_MIN <= mem <= argon2id.MEMLIMIT_MAX):
            raise ValueError(f"roster key: Argon2id limits out of range (opslimit {ops}, memlimit {mem})")
        return cls(salt, mac, ops, mem)
