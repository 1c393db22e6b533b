"""A complete upload becomes a received bundle (verified, stored, recorded: then the kit is answered), and a
received bundle becomes a capture (opened, its photo stored, recorded) just after.

:func:`finalize` gets every byte of one upload. It checks the SHA-256 of all of them against the metadata (the
kit's header names the same SHA-256), stores the sealed object (content-addressed:
``bundles/k<kit>/<capture_id>.<sha256>.sealed``, so two uploads can never clobber each other's object), and
commits one transaction: the upload complete and the ``bundles`` row, ``received``. Only then is the kit told
"confirmed": the centre holds every byte durably. A crash before that commit leaves the upload open at its
last offset: the kit sends the last chunk again and the same steps run again on the same keys.

Opening costs more than receiving (decrypt, check, two more objects: ~3x the CPU of a bare fsynced write), so it
is not on the kit's path: :func:`claim` + :func:`open_received`, run by :mod:`centre.opener` in every centre
process, turn it into ``stored`` with its ``captures`` row, or ``refused`` with the reason (the sealed bytes
kept: nothing the kit could send again would differ). Only a committed ``captures`` row is ever visible as a
capture.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from .db import bundles, captures, conflicts, kits, upload_chunks, uploads, utcnow
from .errors import ApiError
from .rosters import resolve_identity
from .sealing import BundleRefused, KeyRing, Opened, open_bundle
from .storage import Storage

log = logging.getLogger("capturekit.centre.ingest")


SEEN_EVERY_S = 30.0  # a kit's last_seen_at is moved on by its uploads at most this often (per process)
_seen: dict[int, float] = {}  # kit id -> monotonic time this process last wrote its last_seen_at


def _kit_seen(conn: Connection, kit_id: int, now: dt.datetime) -> None:
    """``kits.last_seen_at = now``, at most every SEEN_EVERY_S per kit and process: a burst of uploads does not
    write (and lock) the kit's row once per bundle; the board calls a kit silent after minutes, not seconds."""
    t = time.monotonic()
    if t - _seen.get(kit_id, -SEEN_EVERY_S) >= SEEN_EVERY_S:
        _seen[kit_id] = t
        conn.execute(update(kits).where(kits.c.id == kit_id).values(last_seen_at=now))


@dataclass(frozen=True)
class Stored:
    """What the centre holds for a capture id: the confirmation the kit waits for."""

    capture_id: str
    sha256: str
    status: str  # stored | refused
    reason: str | None
    upload_id: str

    def headers(self) -> dict[str, str]:
        h = {"Capturekit-Capture-Id": self.capture_id, "Capturekit-Sha256": self.sha256,
             "Capturekit-Status": self.status}
        if self.reason:
            h["Capturekit-Reason"] = self.reason
        return h

    def json(self) -> dict[str, Any]:
        return {"capture_id": self.capture_id, "sha256": self.sha256, "status": self.status, "reason": self.reason}


def held(conn: Connection, capture_id: str) -> Stored | None:
    row = conn.execute(select(bundles.c.capture_id, bundles.c.sha256, bundles.c.status, bundles.c.reason,
                              bundles.c.upload_id).where(bundles.c.capture_id == capture_id)).first()
    return Stored(*row) if row else None


def flag_conflict(conn: Connection, kit_id: int, capture_id: str, held_sha: str, offered: str, header: str) -> None:
    conn.execute(conflicts.insert().values(capture_id=capture_id, kit_id=kit_id, held_sha256=held_sha,
                                           offered_sha256=offered, header=header, flagged_at=utcnow()))
    log.warning("capture %s: offered with SHA-256 %s, the centre holds %s: refused and flagged", capture_id,
                offered[:16], held_sha[:16])


def conflict_error(capture_id: str) -> ApiError:
    return ApiError(409, "capture_conflict", f"the centre holds {capture_id} with a different SHA-256: refused and"
                    " flagged for staff (never overwritten)")


def _utc(iso: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return when
    return when.astimezone(dt.UTC).replace(tzinfo=None)


def _s(value: Any, n: int) -> str:
    """A string for a column: no NUL (PostgreSQL refuses it), at most ``n`` characters."""
    return str(value if value is not None else "").replace("\x00", "")[:n]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31 else None


def _capture_row(conn: Connection, kit_id: int, opened: Opened, sealed_sha: str, photo_key: str,
                 deriv_key: str | None) -> dict[str, Any]:
    r, h = opened.record, opened.header

    def obj(name: str) -> dict[str, Any]:
        v = r.get(name)
        return v if isinstance(v, dict) else {}

    ident, verdict, session, photo, deriv = obj("identity"), obj("verdict"), obj("session"), obj("photo"), obj(
        "derivative")
    kind, key = _s(ident.get("kind"), 20), _s(ident.get("key"), 200)
    clear, resolved = resolve_identity(conn, kind, key, bool(ident.get("protected")))
    reasons = verdict.get("reasons") if isinstance(verdict.get("reasons"), list) else []
    return {
        "capture_id": h.capture_id, "kit_id": kit_id, "kind": h.kind, "journal_id": h.journal_id,
        "session_id": _int(session.get("id")), "session_school": _s(session.get("school"), 64),
        "shot": h.shot, "frame": h.frame,
        "identity_kind": kind, "identity_key": clear, "identity_resolved": resolved,
        "identity_source": _s(ident.get("source"), 20), "identity_reader": _s(ident.get("reader"), 100),
        "roster_check": _s(r.get("roster_check"), 30), "verdict": _s(verdict.get("result"), 10),
        "reasons": json.dumps(reasons), "accepted_by_operator": bool(verdict.get("accepted_by_operator")),
        "captured_at": _s(r.get("captured_at"), 40), "captured_at_utc": _utc(r.get("captured_at")),
        "stored_at": _s(r.get("stored_at"), 40),
        "supersedes": _s(r["supersedes"], 120) if r.get("supersedes") else None,
        "sealed_sha256": sealed_sha, "photo_sha256": _s(photo.get("sha256"), 64), "photo_bytes": len(opened.photo),
        "photo_key": photo_key, "width": _int(photo.get("width")), "height": _int(photo.get("height")),
        "derivative_sha256": _s(deriv.get("sha256"), 64) if deriv and deriv_key else None,
        "derivative_key": deriv_key, "record": json.dumps(r, ensure_ascii=True), "received_at": utcnow(),
    }


def finalize(engine: Engine, storage: Storage, upload: Any, data: bytes, sha: str | None = None) -> Stored:
    """Turn the complete bytes of ``upload`` (a row of ``uploads``) into a received bundle (module doc).

    ``sha``: the SHA-256 of ``data`` when the caller has already computed it from these very bytes."""
    sha = sha or hashlib.sha256(data).hexdigest()
    if len(data) != upload.length or sha != upload.sha256:
        raise ApiError(460, "checksum_mismatch", f"the {len(data)} bytes received have SHA-256 {sha}, the metadata"
                       f" says {upload.sha256}: upload discarded, start again")
    key = sealed_key(upload.kit_id, upload.capture_id, sha)
    storage.put(key, data)
    for attempt in (1, 2):  # a second try only after another process inserted the same capture id first
        try:
            with engine.begin() as conn:
                outcome = _commit(conn, upload, sha, key)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        if isinstance(outcome, ApiError):
            raise outcome
        return outcome
    raise AssertionError("unreachable")


def sealed_key(kit_id: int, capture_id: str, sha256: str) -> str:
    # one directory per kit, not per capture: every new directory costs its own fsyncs (and a kit's season
    # is a few thousand files); the SHA-256 in the name keeps two contents of one id apart
    return f"bundles/k{kit_id}/{capture_id}.{sha256}.sealed"


def receive_whole(engine: Engine, kit_id: int, upload_id: str, capture_id: str, sha256: str, header: str,
                  offered_header: str, size: int, sha: str, store: Callable[[str], None],
                  discard: Callable[[], None]) -> Stored:
    """Every byte of a new upload in one request (creation-with-upload), ``size`` bytes hashing to ``sha``:
    verified, made durable by ``store(sealed_key)``, then one transaction commits the complete upload and its
    ``received`` bundle. A wrong SHA-256 keeps nothing (460); a capture id already held answers with what is
    held (same SHA-256) or 409 (flagged). Whenever the bytes are not stored (those cases, or the database
    failing first), ``discard()`` drops them: no copy, no temporary file."""
    stored = False

    def store_once(key: str) -> None:
        nonlocal stored
        store(key)
        stored = True

    try:
        return _receive_whole(engine, kit_id, upload_id, capture_id, sha256, header, offered_header, size, sha,
                              store_once)
    finally:
        if not stored:
            discard()


def _receive_whole(engine: Engine, kit_id: int, upload_id: str, capture_id: str, sha256: str, header: str,
                   offered_header: str, size: int, sha: str, store: Callable[[str], None]) -> Stored:
    if sha != sha256:
        raise ApiError(460, "checksum_mismatch", f"the {size} bytes received have SHA-256 {sha}, the metadata"
                       f" says {sha256}: nothing kept, start again")
    with engine.connect() as conn:
        existing = held(conn, capture_id)
    if existing is None:
        key = sealed_key(kit_id, capture_id, sha)
        store(key)
        now = utcnow()
        try:
            with engine.begin() as conn:
                existing = held(conn, capture_id)
                if existing is None:
                    conn.execute(uploads.insert().values(id=upload_id, kit_id=kit_id, capture_id=capture_id,
                                                         sha256=sha, length=size, offset=size, header=header,
                                                         status="complete", created_at=now, updated_at=now))
                    conn.execute(bundles.insert().values(capture_id=capture_id, kit_id=kit_id, upload_id=upload_id,
                                                         sha256=sha, size=size, object_key=key, header=header,
                                                         status="received", received_at=now, open_after=now))
                    _kit_seen(conn, kit_id, now)
                    return Stored(capture_id, sha, "received", None, upload_id)
        except IntegrityError:  # another process committed the same capture id first
            with engine.connect() as conn:
                existing = held(conn, capture_id)
            if existing is None:
                raise
    if existing.sha256 == sha:
        return existing
    with engine.begin() as conn:
        flag_conflict(conn, kit_id, capture_id, existing.sha256, sha, offered_header)
    raise conflict_error(capture_id)


def _commit(conn: Connection, upload: Any, sha: str, key: str) -> Stored | ApiError:
    """One transaction; an ApiError is returned (not raised) when what it did must still be committed."""
    now = utcnow()
    moved = conn.execute(update(uploads).where(uploads.c.id == upload.id, uploads.c.offset == upload.offset,
                                               uploads.c.status == "open")
                         .values(offset=upload.length, status="complete", updated_at=now)).rowcount
    if not moved:
        return ApiError(409, "offset_mismatch", "another request moved this upload on meanwhile; HEAD it and resume")
    existing = held(conn, upload.capture_id)
    if existing is not None:
        if existing.sha256 != sha:
            flag_conflict(conn, upload.kit_id, upload.capture_id, existing.sha256, sha, upload.header)
            conn.execute(delete(upload_chunks).where(upload_chunks.c.upload_id == upload.id))
            conn.execute(delete(uploads).where(uploads.c.id == upload.id))
            return conflict_error(upload.capture_id)
        conn.execute(delete(upload_chunks).where(upload_chunks.c.upload_id == upload.id))
        return existing
    conn.execute(bundles.insert().values(capture_id=upload.capture_id, kit_id=upload.kit_id, upload_id=upload.id,
                                         sha256=sha, size=upload.length, object_key=key, header=upload.header,
                                         status="received", received_at=now, open_after=now))
    conn.execute(delete(upload_chunks).where(upload_chunks.c.upload_id == upload.id))
    _kit_seen(conn, upload.kit_id, now)
    return Stored(upload.capture_id, sha, "received", None, upload.id)


def claim(engine: Engine, capture_id: str, lease_s: float) -> bool:
    """Take the lease on a received bundle: True if this caller may open it now (no other process holds it)."""
    now = utcnow()
    with engine.begin() as conn:
        return bool(conn.execute(update(bundles).where(bundles.c.capture_id == capture_id,
                                                       bundles.c.status == "received", bundles.c.open_after <= now)
                                 .values(open_after=now + dt.timedelta(seconds=lease_s))).rowcount)


def open_received(engine: Engine, storage: Storage, keys: KeyRing, capture_id: str) -> str:
    """Open one claimed, received bundle: the derivative stored, the ``captures`` row and the bundle's ``stored``
    (or ``refused`` with its reason) committed together. Returns the new status.

    The original photo stays where it is, inside the sealed object (``captures.photo_key`` names it, with the
    photo's SHA-256 and size): nothing at the centre reads it but :func:`original`, so it is not written a second
    time, in the clear. A crash before the commit leaves the bundle ``received``: its lease runs out and it is
    opened again (the derivative's object is content-addressed, so writing it twice is harmless)."""
    with engine.connect() as conn:
        row = conn.execute(select(bundles.c.kit_id, bundles.c.sha256, bundles.c.object_key, bundles.c.header)
                           .where(bundles.c.capture_id == capture_id, bundles.c.status == "received")).first()
    if row is None:
        return "gone"
    data = storage.get(row.object_key)
    status, reason, detail, opened, deriv_key = "stored", None, None, None, None
    try:
        # (its SHA-256 was checked on arrival; a byte changed since would fail the sealed box's Poly1305 tag)
        opened = open_bundle(json.loads(row.header), data, keys, row.sha256)
    except BundleRefused as exc:
        status, reason, detail = "refused", exc.reason, exc.detail
        log.warning("capture %s refused: %s", capture_id, exc)
    del data
    if opened is not None and opened.derivative:
        deriv_key = f"derivatives/k{row.kit_id}/{capture_id}.{opened.derivative_sha256}.jpg"
        storage.put(deriv_key, opened.derivative)
    try:
        with engine.begin() as conn:
            moved = conn.execute(update(bundles).where(bundles.c.capture_id == capture_id,
                                                       bundles.c.status == "received")
                                 .values(status=status, reason=reason, detail=detail, open_after=None)).rowcount
            if not moved:
                return "gone"  # another process's lease ran out under it and it opened this first
            if opened is not None:
                # the original stays inside the sealed object: photo_key names it
                conn.execute(captures.insert().values(_capture_row(conn, row.kit_id, opened, row.sha256,
                                                                   row.object_key, deriv_key)))
    except IntegrityError:
        return "gone"  # the same race, seen by the captures' primary key
    return status


def original(engine: Engine, storage: Storage, keys: KeyRing, capture_id: str) -> bytes:
    """The full-resolution photo of a stored capture, opened from its sealed object and checked against the
    photo's SHA-256 (to re-cut a derivative, or for a student's appeal). KeyError if the centre holds no such
    capture; BundleRefused if its object no longer opens or no longer matches."""
    with engine.connect() as conn:
        row = conn.execute(select(bundles.c.header, bundles.c.sha256, captures.c.photo_key, captures.c.photo_sha256)
                           .join(captures, captures.c.capture_id == bundles.c.capture_id)
                           .where(bundles.c.capture_id == capture_id)).first()
    if row is None:
        raise KeyError(capture_id)
    opened = open_bundle(json.loads(row.header), storage.get(row.photo_key), keys, row.sha256)
    if opened.photo_sha256 != row.photo_sha256:
        raise BundleRefused("photo_sha256_mismatch", "the sealed photo is not the one recorded for this capture")
    return opened.photo
