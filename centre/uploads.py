"""tus 1.0 uploads (core, creation, checksum, termination) with every bit of state in the database and the store.

An upload is a row of ``uploads`` (kit, capture id, SHA-256, length, offset, clear header); each PATCH body is one
**chunk object** ``uploads/<upload_id>/<offset:012d>-<nonce>`` plus a row of ``upload_chunks``, committed with
the new offset by a conditional update (``WHERE offset = <the offset this PATCH started from>``). So any centre
process can answer HEAD or take the next PATCH, two PATCHes racing for the same offset cannot both win (the
loser's object is deleted and it gets 409), and no process keeps anything in memory or on its own disk between
requests. The final PATCH reads the chunks back in order and hands every byte to :func:`centre.ingest.finalize`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select, update

from appliance.bundle import BundleFormatError, Header

from .db import upload_chunks, uploads, utcnow
from .errors import ApiError
from .ingest import Stored, conflict_error, finalize, flag_conflict, held, receive_whole
from .kits import Kit
from .storage import Storage, Writer

log = logging.getLogger("capturekit.centre.uploads")

CAPTURE_ID = re.compile(r"^[A-Za-z0-9_-]{1,120}$")
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
CHECKSUMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}
MAX_METADATA = 8192


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (tus); 400 when malformed."""
    if not value:
        raise ApiError(400, "bad_metadata", "Upload-Metadata is required (capture_id, sha256, header)")
    if len(value) > MAX_METADATA:
        raise ApiError(400, "bad_metadata", f"Upload-Metadata longer than {MAX_METADATA} characters")
    out: dict[str, str] = {}
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or not key.isascii() or any(c in key for c in " ,") or key in out:
            raise ApiError(400, "bad_metadata", f"Upload-Metadata: malformed pair {pair.strip()[:40]!r}")
        try:
            out[key] = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (binascii.Error, ValueError):
            raise ApiError(400, "bad_metadata", f"Upload-Metadata: {key} is not base64 of UTF-8 text") from None
    return out


def check_capture_id(capture_id: str) -> str:
    if not CAPTURE_ID.match(capture_id or ""):
        raise ApiError(400, "bad_capture_id", "a capture id is 1..120 characters of [A-Za-z0-9_-]")
    return capture_id


def _header(meta: dict[str, str], kit: Kit, length: int) -> Header:
    capture_id = check_capture_id(meta.get("capture_id", ""))
    sha = meta.get("sha256", "")
    if not SHA256_HEX.match(sha):
        raise ApiError(400, "bad_metadata", "sha256: 64 lower-case hex digits of the sealed bytes' SHA-256")
    if "header" not in meta:
        raise ApiError(400, "bad_metadata", "header: the bundle's clear header (JSON) is required")
    try:
        header = Header.from_dict(json.loads(meta["header"]))
    except (ValueError, BundleFormatError) as exc:
        raise ApiError(400, "bad_header", f"header: {str(exc)[:200]}") from None
    if header.capture_id != capture_id:
        raise ApiError(400, "bad_header", "header: names another capture id than the metadata")
    if header.kit_id != kit.name or not capture_id.startswith(f"{kit.name}-"):
        raise ApiError(403, "not_your_capture", f"{capture_id} is not a capture of kit {kit.name}")
    if header.sealed_sha256 != sha or header.sizes.get("sealed") != length:
        raise ApiError(400, "bad_header", "header: sealed_sha256 / sizes.sealed disagree with sha256 / Upload-Length")
    return header


@dataclass(frozen=True)
class Created:
    upload_id: str
    length: int
    existing: Stored | None  # already have it: nothing new stored


def check_length(length: int, max_size: int) -> None:
    if length > max_size:
        raise ApiError(413, "too_large", f"Upload-Length {length} is over Tus-Max-Size {max_size}")
    if length < 1:
        raise ApiError(400, "bad_length", "Upload-Length must be at least 1")


def prepare(kit: Kit, length: int, metadata: str | None, max_size: int) -> tuple[dict[str, str], Header]:
    """The checked metadata and clear header of a creation request (400/403/413 otherwise)."""
    check_length(length, max_size)
    meta = parse_metadata(metadata)
    return meta, _header(meta, kit, length)


def create(engine: Engine, kit: Kit, length: int, metadata: str | None, max_size: int) -> Created:
    """POST /uploads: a new upload, or the one that already holds this capture with this SHA-256; 409 on conflict."""
    return _create(engine, kit, length, *prepare(kit, length, metadata, max_size))


def _create(engine: Engine, kit: Kit, length: int, meta: dict[str, str], header: Header) -> Created:
    upload_id = secrets.token_hex(16)
    now = utcnow()
    with engine.begin() as conn:
        existing = held(conn, header.capture_id)
        if existing is not None:
            if existing.sha256 == header.sealed_sha256:
                return Created(existing.upload_id, length, existing)
            flag_conflict(conn, kit.id, header.capture_id, existing.sha256, header.sealed_sha256, meta["header"])
            conflict = True
        else:
            conflict = False
            conn.execute(uploads.insert().values(id=upload_id, kit_id=kit.id, capture_id=header.capture_id,
                                                 sha256=header.sealed_sha256, length=length, offset=0,
                                                 header=json.dumps(header.to_dict()), status="open",
                                                 created_at=now, updated_at=now))
    if conflict:
        raise conflict_error(header.capture_id)
    return Created(upload_id, length, None)


def create_with_body(engine: Engine, storage: Storage, kit: Kit, length: int, metadata: str | None, max_size: int,
                     body: bytes, checksum: tuple[str, bytes] | None) -> tuple[Created, State]:
    """POST /uploads with the first bytes (creation-with-upload). All of them: verified, stored and committed as
    one complete upload and its received bundle in one transaction (nothing at all is kept if the SHA-256 is
    wrong). Some: a new upload holding them, to be continued by PATCH."""
    meta, header = prepare(kit, length, metadata, max_size)
    if checksum is not None and CHECKSUMS[checksum[0]](body).digest() != checksum[1]:
        raise ApiError(460, "checksum_mismatch", f"the body does not match its Upload-Checksum ({checksum[0]}):"
                       " nothing of it kept")
    if len(body) < length:
        created = _create(engine, kit, length, meta, header)
        if created.existing is not None or not body:
            return created, State(length if created.existing else 0, length, created.existing)
        return created, append(engine, storage, kit, upload_row(engine, kit, created.upload_id), 0, body, None)
    sha = checksum[1].hex() if checksum and checksum[0] == "sha256" else hashlib.sha256(body).hexdigest()
    with _FINALIZING:
        return _whole(engine, kit, meta, header, len(body), sha, lambda key: storage.put(key, body), lambda: None)


def receive_streamed(engine: Engine, kit: Kit, meta: dict[str, str], header: Header, writer: Writer, size: int,
                     sha: str) -> tuple[Created, State]:
    """creation-with-upload whose body was written, as it arrived, to ``writer`` (made for
    :func:`centre.ingest.sealed_key` of the claimed SHA-256) and hashed to ``sha``: committed as one complete
    upload and its received bundle, or aborted (wrong SHA-256, a capture the centre already holds, a failure)."""
    return _whole(engine, kit, meta, header, size, sha, lambda _key: writer.commit(), writer.abort)


def _whole(engine: Engine, kit: Kit, meta: dict[str, str], header: Header, size: int, sha: str,
           store: Callable[[str], None], discard: Callable[[], None]) -> tuple[Created, State]:
    stored = receive_whole(engine, kit.id, secrets.token_hex(16), header.capture_id, header.sealed_sha256,
                           json.dumps(header.to_dict()), meta["header"], size, sha, store, discard)
    return Created(stored.upload_id, size, stored), State(size, size, stored)


def upload_row(engine: Engine, kit: Kit, upload_id: str) -> Any:
    """The upload row if it is this kit's (another kit's upload is as absent as one that never was: 404)."""
    if not UPLOAD_ID.match(upload_id):
        raise ApiError(404, "no_such_upload", "upload ids are 32 hex digits")
    with engine.connect() as conn:
        row = conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
    if row is None or row.kit_id != kit.id:
        raise ApiError(404, "no_such_upload", "no such upload for this kit (terminated, discarded or never made)")
    return row


@dataclass(frozen=True)
class State:
    offset: int
    length: int
    stored: Stored | None  # complete: what the centre holds


def head(engine: Engine, kit: Kit, upload_id: str) -> State:
    row = upload_row(engine, kit, upload_id)
    stored = None
    if row.status == "complete":
        with engine.connect() as conn:
            stored = held(conn, row.capture_id)
    return State(row.offset, row.length, stored)


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; 400 for an unsupported algorithm or a malformed value."""
    if value is None:
        return None
    algo, _, b64 = value.strip().partition(" ")
    if algo not in CHECKSUMS:
        raise ApiError(400, "bad_checksum_algorithm", f"Upload-Checksum: {algo[:20]!r} is not one of sha256, sha1")
    try:
        digest = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != CHECKSUMS[algo]().digest_size:
        raise ApiError(400, "bad_checksum", f"Upload-Checksum: not the base64 of a {algo} digest")
    return algo, digest


def _delete_objects(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        try:
            storage.delete(key)
        except Exception as exc:  # left behind: harmless (not referenced), but say so
            log.warning("chunk object %s not deleted: %s", key, exc)


def append(engine: Engine, storage: Storage, kit: Kit, row: Any, offset: int, body: bytes,
           checksum: tuple[str, bytes] | None) -> State:
    """PATCH: add ``body`` at ``offset`` of the upload ``row`` (:func:`upload_row`, read before the body came: every
    write below is conditional on the offset it saw); the last byte runs :func:`centre.ingest.finalize`."""
    upload_id = row.id
    if row.status == "complete":
        if offset == row.length and not body:
            return head(engine, kit, upload_id)
        raise ApiError(409, "offset_mismatch", "the upload is complete", {"Upload-Offset": str(row.length)})
    if offset != row.offset:
        raise ApiError(409, "offset_mismatch", f"Upload-Offset {offset}, the centre has {row.offset}: HEAD and resume",
                       {"Upload-Offset": str(row.offset)})
    if len(body) > row.length - row.offset:
        raise ApiError(413, "past_upload_length", f"{len(body)} bytes at {offset} go past Upload-Length {row.length}")
    if checksum is not None and CHECKSUMS[checksum[0]](body).digest() != checksum[1]:
        raise ApiError(460, "checksum_mismatch", f"the body does not match its Upload-Checksum ({checksum[0]}):"
                       " nothing of it kept")
    if not body:
        return State(row.offset, row.length, None)
    new_offset = row.offset + len(body)
    if new_offset < row.length:
        key = f"uploads/{upload_id}/{row.offset:012d}-{secrets.token_hex(4)}"
        storage.put(key, body)
        with engine.begin() as conn:
            moved = conn.execute(update(uploads).where(uploads.c.id == upload_id, uploads.c.offset == row.offset,
                                                       uploads.c.status == "open")
                                 .values(offset=new_offset, updated_at=utcnow())).rowcount
            if moved:
                conn.execute(upload_chunks.insert().values(upload_id=upload_id, offset=row.offset, length=len(body),
                                                           object_key=key))
        if not moved:
            _delete_objects(storage, [key])
            raise ApiError(409, "offset_mismatch", "another request moved this upload on meanwhile; HEAD and resume")
        return State(new_offset, row.length, None)
    with engine.connect() as conn:
        chunks = conn.execute(select(upload_chunks.c.offset, upload_chunks.c.length, upload_chunks.c.object_key)
                              .where(upload_chunks.c.upload_id == upload_id)
                              .order_by(upload_chunks.c.offset)).all()
    # one PATCH with every byte, checksummed with SHA-256: that digest is the whole upload's, hashed once
    whole = checksum[1].hex() if checksum and checksum[0] == "sha256" and not chunks and offset == 0 else None
    with _FINALIZING:  # bounded: each holds a few copies of a bundle in memory (flat RSS under 50 kits)
        return _assemble(engine, storage, row, upload_id, chunks, body, whole)


# at most this many uploads are being assembled and verified at once in one process
_FINALIZING = threading.BoundedSemaphore(2)


def _assemble(engine: Engine, storage: Storage, row: Any, upload_id: str, chunks: list, body: bytes,
              sha: str | None) -> State:
    parts, at = [], 0
    for c_offset, c_length, c_key in chunks:
        data = storage.get(c_key)
        if c_offset != at or len(data) != c_length:
            raise ApiError(409, "offset_mismatch", "the stored chunks of this upload do not line up: start again")
        parts.append(data)
        at += c_length
    parts.append(body)
    try:
        stored = finalize(engine, storage, row, b"".join(parts), sha)  # (one part: joined without a copy)
    except ApiError as exc:
        if exc.status == 460:  # wrong overall SHA-256: the upload is discarded, the kit starts again
            _discard(engine, storage, upload_id)
        raise
    _delete_objects(storage, [c[2] for c in chunks])
    return State(row.length, row.length, stored)


def _discard(engine: Engine, storage: Storage, upload_id: str) -> None:
    with engine.begin() as conn:
        chunk_keys = [k for (k,) in conn.execute(select(upload_chunks.c.object_key)
                                                 .where(upload_chunks.c.upload_id == upload_id))]
        conn.execute(delete(upload_chunks).where(upload_chunks.c.upload_id == upload_id))
        conn.execute(delete(uploads).where(uploads.c.id == upload_id, uploads.c.status == "open"))
    _delete_objects(storage, chunk_keys)


def terminate(engine: Engine, storage: Storage, kit: Kit, upload_id: str) -> None:
    """DELETE (termination): only an incomplete upload of this kit; its chunks go with it."""
    row = upload_row(engine, kit, upload_id)
    if row.status == "complete":
        raise ApiError(403, "upload_complete", "a complete upload is a capture: it is never deleted")
    _discard(engine, storage, upload_id)
