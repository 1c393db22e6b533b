"""The spool: where photos become durable files. The outbox is the only contract with the sync daemon.

A *bundle* is one selected frame: a directory ``outbox/<capture_id>/`` holding ``<capture_id>.jpg``
(the camera's original, never altered) and ``capture.json`` (who, when, which shot, SHA-256 of the
JPEG, frame history). It is written in a temporary directory, every file and the directory are
fsynced, then renamed into place and the outbox fsynced, so a bundle is either wholly there or
absent. Frames that QC rejected (or that arrived too late) are kept in ``rejects/<capture_id>.jpg``
the same way. ``docs/spool-format.md`` is the format's reference.

Everything that writes a photo to disk is in :class:`Spool` (the sealed spool of the roadmap changes
this class only). Nothing else reads a JPEG back from the spool; :meth:`Spool.verify` is the one
exception, for recovery and tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StorageError

log = logging.getLogger("capturekit.spool")

FORMAT = "capturekit.bundle/1"
RECORD = "capture.json"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Written:
    path: Path  # the bundle directory, or the reject file
    sha256: str
    size: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one new file (never retried: a failed fsync leaves the data unknown)."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass(frozen=True)
class Header:
    """What identifies a bundle, read from the bundle itself (no journal needed)."""

    capture_id: str
    kit_id: str
    journal_id: str
    shot: int
    frame: int
    sha256: str
    size: int


def _aside(path: Path) -> Path:
    """A free name next to ``path`` for something moved out of the way (never overwrites)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        cand = path.with_name(f"{path.name}.stray-{stamp}" + (f".{n}" if n else ""))
        if not cand.exists():
            return cand
    raise StorageError(f"no free name to move {path} aside")


class Spool:
    """Outbox bundles and kept rejects under ``root``.

    ``notes`` lists what opening the spool had to put right (a file where a directory belongs is moved
    aside, never deleted); recovery journals them. ``create=False`` (``status``) changes nothing on disk.
    """

    def __init__(self, root: Path, create: bool = True) -> None:
        self.root = root
        self.outbox = root / "outbox"
        self.rejects = root / "rejects"
        self.orphans = root / "orphans"
        self.notes: list[str] = []
        if not create:
            return
        try:
            for d in (root, self.outbox, self.rejects):
                if d.exists() and not d.is_dir():
                    dest = _aside(d)
                    os.rename(d, dest)
                    self.notes.append(f"{d} was not a directory: moved to {dest.name}")
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"spool {root}: {exc}") from exc

    def write_bundle(self, capture_id: str, jpeg: bytes, record: dict[str, Any],
                     derivative: bytes | None = None) -> Written:
        """Atomically publish a bundle; ``record`` gets ``format``, ``capture_id`` and the files' hashes.

        ``derivative`` is the diploma-spec JPEG cut from ``jpeg`` (``<capture_id>.diploma.jpg``).
        """
        final = self.outbox / capture_id
        tmp = self.outbox / f"{TMP_PREFIX}{capture_id}"
        digest = hashlib.sha256(jpeg).hexdigest()
        name = f"{capture_id}.jpg"
        body = {"format": FORMAT, "capture_id": capture_id, **record,
                "photo": {**record.get("photo", {}), "file": name, "sha256": digest, "bytes": len(jpeg)},
                "derivative": None if derivative is None else {
                    "file": f"{capture_id}.diploma.jpg", "sha256": hashlib.sha256(derivative).hexdigest(),
                    "bytes": len(derivative)}}
        try:
            if final.exists():
                raise FileExistsError(f"bundle {capture_id} already exists")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            _write_file(tmp / name, jpeg)
            if derivative is not None:
                _write_file(tmp / body["derivative"]["file"], derivative)
            _write_file(tmp / RECORD, json.dumps(body, ensure_ascii=False, indent=1).encode())
            _fsync_dir(tmp)
            os.rename(tmp, final)
            _fsync_dir(self.outbox)
        except OSError as exc:
            raise StorageError(f"bundle {capture_id} not written: {exc}") from exc
        return Written(final, digest, len(jpeg))

    def keep_reject(self, capture_id: str, jpeg: bytes) -> Written:
        """Atomically keep a frame that is not spooled (QC reject, late arrival)."""
        final = self.rejects / f"{capture_id}.jpg"
        tmp = self.rejects / f"{TMP_PREFIX}{capture_id}.jpg"
        try:
            tmp.unlink(missing_ok=True)
            _write_file(tmp, jpeg)
            os.rename(tmp, final)
            _fsync_dir(self.rejects)
        except OSError as exc:
            raise StorageError(f"reject {capture_id} not written: {exc}") from exc
        return Written(final, hashlib.sha256(jpeg).hexdigest(), len(jpeg))

    # ---- recovery and inspection
    def clean_temp(self) -> list[str]:
        """Remove half-written bundles/rejects left by a crash (our ``.tmp-`` names only); return their names."""
        removed = []
        for d in (self.outbox, self.rejects):
            for p in d.glob(f"{TMP_PREFIX}*"):
                try:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                except OSError as exc:
                    log.error("cannot remove half-written %s: %s", p, exc)
                    continue
                removed.append(p.name)
        return removed

    def bundle_ids(self) -> list[str]:
        """Bundle directories in the outbox. Dot names are not bundles (ours are half-written, others are
        someone else's, e.g. a sync daemon's ``.sync-state/``): readers ignore them, as the format says."""
        return sorted(p.name for p in self.outbox.iterdir() if not p.name.startswith(".") and p.is_dir()
                      and not p.is_symlink())

    def strays(self) -> list[str]:
        """Outbox entries that are neither bundles nor dot names (a file where a bundle directory belongs)."""
        return sorted(p.name for p in self.outbox.iterdir() if not p.name.startswith(".")
                      and (not p.is_dir() or p.is_symlink()))

    def record(self, capture_id: str) -> dict[str, Any]:
        rec = json.loads((self.outbox / capture_id / RECORD).read_text(encoding="utf-8"))
        if not isinstance(rec, dict):
            raise ValueError(f"{RECORD} is not an object")
        return rec

    def header(self, capture_id: str) -> Header:
        """The bundle's identity from its own record; ValueError/OSError if it cannot be read."""
        rec = self.record(capture_id)
        try:
            h = Header(str(rec["capture_id"]), str(rec["kit_id"]), str(rec["journal_id"]), int(rec["shot"]),
                       int(rec["frame"]), str(rec["photo"]["sha256"]), int(rec["photo"]["bytes"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{RECORD} lacks {exc}") from exc
        if h.capture_id != capture_id:
            raise ValueError(f"{RECORD} names {h.capture_id!r}, not its directory")
        return h

    def check(self, capture_id: str, deep: bool = True) -> str | None:
        """None if the bundle is sound, else what is wrong. Shallow: the record parses and the files have
        their recorded sizes (a few small reads); deep: also every file's SHA-256 (reads every byte)."""
        d = self.outbox / capture_id
        try:
            rec = self.record(capture_id)
            self.header(capture_id)
        except (OSError, ValueError) as exc:
            return f"record unreadable: {exc}"
        parts = [("photo", rec["photo"])] + ([("derivative", rec["derivative"])] if rec.get("derivative") else [])
        for what, part in parts:
            try:
                f = d / part["file"]
                if f.stat().st_size != part["bytes"]:
                    return f"{what} has {f.stat().st_size} bytes, its record says {part['bytes']}"
                if deep and _sha256_file(f) != part["sha256"]:
                    return f"{what} does not match its SHA-256"
            except (OSError, KeyError, TypeError) as exc:
                return f"{what} unreadable: {exc}"
        return None

    def verify(self, capture_id: str) -> str | None:
        """None if the bundle is complete and every file matches its SHA-256, else what is wrong."""
        return self.check(capture_id, deep=True)

    def reject_written(self, capture_id: str) -> Written | None:
        """The kept reject of ``capture_id`` with its digest, or None if it never reached its place."""
        p = self.rejects / f"{capture_id}.jpg"
        if not p.exists():
            return None
        data = p.read_bytes()
        return Written(p, hashlib.sha256(data).hexdigest(), len(data))

    def quarantine(self, capture_id: str) -> Path:
        """Move an interrupted, incomplete bundle out of the outbox into ``orphans/`` (kept, never deleted)."""
        try:
            if self.orphans.exists() and not self.orphans.is_dir():
                os.rename(self.orphans, _aside(self.orphans))
            self.orphans.mkdir(exist_ok=True)
            dest = self.orphans / capture_id
            if dest.exists() or dest.is_symlink():
                dest = _aside(dest)
            os.rename(self.outbox / capture_id, dest)
            _fsync_dir(self.outbox)
        except OSError as exc:
            raise StorageError(f"cannot move {capture_id} to {self.orphans}: {exc}") from exc
        return dest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
