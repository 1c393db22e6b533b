"""The sealed bundle (``capturekit.bundle/2``): one file per capture, readable only by the centre.

A bundle file is a small clear **header** and the **sealed** payload::

    b"CKBUNDL2"                 8 bytes, magic
    header length               4 bytes, big-endian
    header                      UTF-8 JSON, see HEADER_FIELDS
    sealed                      libsodium sealed box (X25519 + XSalsa20-Poly1305) to the centre's key

The header holds only what sync and the centre need before opening: capture id, kit, journal, shot and
frame (all already in the capture id), the centre key id, sizes, and ``sealed_sha256`` — the SHA-256 of
the sealed bytes, which is the transfer check and the idempotence key end to end. The sealed payload is::

    record length               4 bytes, big-endian
    record                      UTF-8 JSON: the capture record, with a copy of the header's identifying
                                fields and the SHA-256 of each plain part
    photo                       the camera's original JPEG
    derivative                  the diploma-spec JPEG (absent for rejects, or when it could not be cut)

Sealing happens in memory before anything touches the disk (the plain photo exists only in memory).
Nothing on the kit can open a bundle: the private key never leaves the centre. The centre opens and
verifies with :func:`centre.sealing.open_bundle`. Key distribution: ``docs/privacy.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from nacl.public import PublicKey, SealedBox

FORMAT = "capturekit.bundle/2"
MAGIC = b"CKBUNDL2"
_LEN = struct.Struct(">I")
MAX_HEADER = 4096
KINDS = ("capture", "reject")
HEADER_FIELDS = ("format", "kind", "capture_id", "kit_id", "journal_id", "shot", "frame", "key_id", "sizes",
                 "sealed_sha256")


class BundleFormatError(ValueError):
    """Bytes that are not a well-formed bundle/2 file or header; ``reason`` is a stable short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def key_id_of(public: bytes) -> str:
    """A centre key's id: the first 16 hex digits of the SHA-256 of its 32 raw public-key bytes."""
    return hashlib.sha256(public).hexdigest()[:16]


@dataclass(frozen=True)
class CentreKey:
    """A centre's public sealing key as kits get it: ``"<key_id>:<base64 X25519 public key>"``."""

    key_id: str
    public: bytes

    @classmethod
    def parse(cls, text: str) -> CentreKey:
        key_id, sep, b64 = text.strip().partition(":")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not sep or len(raw) != 32:
            raise ValueError("a centre key is '<key_id>:<base64 of 32 bytes>' (capturekit centre keygen writes it)")
        if key_id != key_id_of(raw):
            raise ValueError(f"key id {key_id!r} does not belong to this key (expected {key_id_of(raw)})")
        return cls(key_id, raw)

    def __str__(self) -> str:
        return f"{self.key_id}:{base64.b64encode(self.public).decode()}"


@dataclass(frozen=True)
class Header:
    """A bundle's clear header (see the module docstring)."""

    kind: str
    capture_id: str
    kit_id: str
    journal_id: str
    shot: int
    frame: int
    key_id: str
    sizes: dict[str, int]  # sealed, record, photo, derivative (bytes)
    sealed_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": self.kind, "capture_id": self.capture_id, "kit_id": self.kit_id,
                "journal_id": self.journal_id, "shot": self.shot, "frame": self.frame, "key_id": self.key_id,
                "sizes": dict(self.sizes), "sealed_sha256": self.sealed_sha256}

    def identifying(self) -> dict[str, Any]:
        """The fields the sealed record repeats, so the centre can tell a relabelled header."""
        return {k: v for k, v in self.to_dict().items() if k not in ("sizes", "sealed_sha256")}

    @classmethod
    def from_dict(cls, d: Any) -> Header:
        if not isinstance(d, dict):
            raise BundleFormatError("bad_header", "the header is not a JSON object")
        if d.get("format") != FORMAT:
            raise BundleFormatError("unsupported_format", f"format {d.get('format')!r}, expected {FORMAT}")
        try:
            h = cls(str(d["kind"]), str(d["capture_id"]), str(d["kit_id"]), str(d["journal_id"]), int(d["shot"]),
                    int(d["frame"]), str(d["key_id"]), {k: int(v) for k, v in dict(d["sizes"]).items()},
                    str(d["sealed_sha256"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleFormatError("bad_header", f"header field missing or malformed: {exc}") from None
        if h.kind not in KINDS:
            raise BundleFormatError("bad_header", f"kind {h.kind!r}")
        if h.capture_id != f"{h.kit_id}-{h.journal_id}-{h.shot:06d}-{h.frame:02d}":
            raise BundleFormatError("bad_header", f"capture id {h.capture_id!r} does not match kit/journal/shot/frame")
        if len(h.sealed_sha256) != 64 or h.sizes.get("sealed", -1) < 0:
            raise BundleFormatError("bad_header", "sealed size or SHA-256 missing")
        return h


def seal(key: CentreKey, header: dict[str, Any], record: dict[str, Any], photo: bytes,
         derivative: bytes | None = None) -> tuple[bytes, Header]:
    """The bundle file's bytes and its header. ``header`` gives kind, capture_id, kit_id, journal_id,
    shot and frame; ``record`` is the capture record (the plain parts' SHA-256s are added here)."""
    derivative = derivative or b""
    base = {**header, "format": FORMAT, "key_id": key.key_id}
    body = {**record, "header": {k: base[k] for k in ("format", "kind", "capture_id", "kit_id", "journal_id",
                                                        "shot", "frame", "key_id")},
            "photo": {**record.get("photo", {}), "sha256": hashlib.sha256(photo).hexdigest(), "bytes": len(photo)},
            "derivative": {"sha256": hashlib.sha256(derivative).hexdigest(), "bytes": len(derivative)}
            if derivative else None}
    rec = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    sealed = SealedBox(PublicKey(key.public)).encrypt(_LEN.pack(len(rec)) + rec + photo + derivative)
    h = Header.from_dict({**base, "sizes": {"sealed": len(sealed), "record": len(rec), "photo": len(photo),
                                            "derivative": len(derivative)},
                          "sealed_sha256": hashlib.sha256(sealed).hexdigest()})
    head = json.dumps(h.to_dict(), separators=(",", ":")).encode()
    return MAGIC + _LEN.pack(len(head)) + head + sealed, h


def read_header(fh: BinaryIO) -> tuple[Header, int]:
    """The header of a bundle file and the offset of its sealed bytes (reads a few hundred bytes)."""
    start = fh.read(len(MAGIC) + _LEN.size)
    if len(start) < len(MAGIC) + _LEN.size or not start.startswith(MAGIC):
        raise BundleFormatError("not_a_bundle", "no capturekit.bundle/2 magic at the start of the file")
    (n,) = _LEN.unpack(start[len(MAGIC):])
    if n > MAX_HEADER:
        raise BundleFormatError("bad_header", f"header length {n} > {MAX_HEADER}")
    raw = fh.read(n)
    if len(raw) != n:
        raise BundleFormatError("truncated", "the file ends inside the header")
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleFormatError("bad_header", f"header is not JSON: {exc}") from None
    return Header.from_dict(d), len(start) + n


def split_payload(plain: bytes, sizes: dict[str, int]) -> tuple[dict[str, Any], bytes, bytes]:
    """(record, photo, derivative) from an opened payload, checking every length."""
    if len(plain) < _LEN.size:
        raise BundleFormatError("bad_payload", "payload shorter than its length prefix")
    (n,) = _LEN.unpack(plain[:_LEN.size])
    rec_end = _LEN.size + n
    try:
        record = json.loads(plain[_LEN.size:rec_end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleFormatError("bad_payload", f"record is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise BundleFormatError("bad_payload", "record is not a JSON object")
    p, d = sizes.get("photo", -1), sizes.get("derivative", 0)
    if n != sizes.get("record") or len(plain) != rec_end + p + d:
        raise BundleFormatError("bad_payload", "payload sizes do not match the header")
    return record, plain[rec_end:rec_end + p], plain[rec_end + p:]
