"""The centre's sealing keys, and opening sealed bundles (``capturekit.bundle/2``, see appliance/bundle.py).

``capturekit centre keygen --out DIR`` writes ``<key_id>.key`` (the X25519 private key, mode 0600; it
never leaves the centre) and ``<key_id>.pub`` (the line kits put in ``sealing.public_keys``). Rotation:
generate a new key, put its line first in every kit's config (kits seal to the first), keep the old
``.key`` file in the key directory — bundles name their key id, and :class:`KeyRing` opens any bundle whose
key it holds.

:func:`open_bundle` never returns anything partial: it checks the SHA-256 of the sealed bytes against the
header, opens the sealed box (authenticated: one flipped byte anywhere fails), checks that the record
repeats the header's identity, that every size matches, and that the photo and derivative match their
SHA-256s — and raises :class:`BundleRefused` with a stable reason otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from appliance.bundle import BundleFormatError, CentreKey, Header, key_id_of, read_header, split_payload

KEY_HEADER = "capturekit-sealing-key/1"


class BundleRefused(ValueError):
    """A bundle the centre will not accept; ``reason`` is a stable short code, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Opened:
    header: Header
    record: dict[str, Any]
    photo: bytes
    derivative: bytes | None
    photo_sha256: str = ""  # checked against the record: the caller need not hash again
    derivative_sha256: str | None = None


def keygen(out: Path) -> tuple[str, Path, Path]:
    """Write a new key pair into ``out``; return (key id, private key file, public key file)."""
    out.mkdir(parents=True, exist_ok=True)
    key = PrivateKey.generate()
    public = bytes(key.public_key)
    key_id = key_id_of(public)
    private_path, public_path = out / f"{key_id}.key", out / f"{key_id}.pub"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 from birth, never wider
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{KEY_HEADER}\n{key_id}\n{base64.b64encode(bytes(key)).decode()}\n")
        fh.flush()
        os.fsync(fh.fileno())
    public_path.write_text(f"{CentreKey(key_id, public)}\n")
    return key_id, private_path, public_path


def load_private(path: Path) -> tuple[str, PrivateKey]:
    lines = path.read_text().split()
    if len(lines) != 3 or lines[0] != KEY_HEADER:
        raise ValueError(f"{path}: not a capturekit sealing key file")
    key = PrivateKey(base64.b64decode(lines[2], validate=True))
    if key_id_of(bytes(key.public_key)) != lines[1]:
        raise ValueError(f"{path}: the key id in the file does not match the key")
    return lines[1], key


class KeyRing:
    """Every private key the centre holds, by key id (old ones stay to open old bundles)."""

    def __init__(self, keys: dict[str, PrivateKey]) -> None:
        self.keys = keys

    @classmethod
    def load(cls, directory: Path) -> KeyRing:
        keys = dict(load_private(p) for p in sorted(directory.glob("*.key")))
        return cls(keys)

    def public_lines(self) -> list[str]:
        return [str(CentreKey(k, bytes(v.public_key))) for k, v in self.keys.items()]


def open_bundle(header: Header | dict[str, Any], sealed: bytes, keys: KeyRing,
                sealed_sha256: str | None = None) -> Opened:
    """Verify and open one bundle (its clear header and its sealed bytes), or raise BundleRefused.

    ``sealed_sha256``: the SHA-256 of ``sealed`` when the caller has just computed it (the centre's ingest), so
    the bytes are not hashed a second time; it is still compared with the header's."""
    try:
        h = header if isinstance(header, Header) else Header.from_dict(header)
    except BundleFormatError as exc:
        raise BundleRefused(exc.reason, str(exc)) from None
    if len(sealed) != h.sizes["sealed"]:
        raise BundleRefused("truncated", f"{len(sealed)} sealed bytes, the header says {h.sizes['sealed']}")
    if (sealed_sha256 or hashlib.sha256(sealed).hexdigest()) != h.sealed_sha256:
        raise BundleRefused("sha256_mismatch", "the sealed bytes do not match the header's SHA-256")
    key = keys.keys.get(h.key_id)
    if key is None:
        raise BundleRefused("unknown_key", f"sealed to key {h.key_id}, which this centre does not hold")
    try:
        plain = SealedBox(key).decrypt(sealed)
    except CryptoError:
        raise BundleRefused("not_openable", f"the sealed box does not open with key {h.key_id}") from None
    try:
        record, photo, derivative = split_payload(plain, h.sizes)
    except BundleFormatError as exc:
        raise BundleRefused(exc.reason, str(exc)) from None
    if record.get("header") != h.identifying():
        raise BundleRefused("header_mismatch", "the clear header does not match the sealed record")
    photo_sha = hashlib.sha256(photo).hexdigest()
    if photo_sha != (record.get("photo") or {}).get("sha256"):
        raise BundleRefused("photo_sha256_mismatch", "the photo does not match its SHA-256")
    deriv = record.get("derivative")
    deriv_sha = hashlib.sha256(derivative).hexdigest() if derivative else None
    if bool(deriv) != bool(derivative) or (deriv and deriv_sha != deriv.get("sha256")):
        raise BundleRefused("derivative_sha256_mismatch", "the derivative does not match its record")
    return Opened(h, record, photo, derivative or None, photo_sha, deriv_sha)


def open_bundle_file(path: Path, keys: KeyRing) -> Opened:
    """:func:`open_bundle` on a bundle file as the kit wrote it."""
    data = path.read_bytes()
    try:
        header, offset = read_header(io.BytesIO(data))
    except BundleFormatError as exc:
        raise BundleRefused(exc.reason, str(exc)) from None
    return open_bundle(header, data[offset:], keys)
