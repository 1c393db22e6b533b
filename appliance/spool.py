"""The spool: where photos become durable — sealed — files. The outbox is the only contract with the sync daemon.

A *bundle* is one selected frame, sealed to the centre's public key before it touches the disk
(``capturekit.bundle/2``, :mod:`appliance.bundle`): one file ``outbox/<capture_id>.bundle`` with a small
clear header and the sealed photo, diploma derivative and record. It is written as a ``.tmp-`` file,
fsynced, renamed into place and the outbox fsynced, so a bundle is either wholly there or absent. Frames
that QC rejected (or that arrived too late) are kept in ``rejects/<capture_id>.bundle``, sealed the same
way. ``docs/spool-format.md`` is the format's reference.

Everything that writes or deletes a photo on disk is in :class:`Spool`. Nothing on the kit can open a
bundle; recovery and ``status`` work from the clear headers and the SHA-256 of the sealed bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import BundleFormatError, CentreKey, Header, read_header, seal
from .datadir import fsync_dir
from .errors import StorageError

log = logging.getLogger("capturekit.spool")

SUFFIX = ".bundle"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Written:
    path: Path  # the bundle file
    sha256: str  # of the sealed bytes: the transfer and idempotence key
    size: int  # bytes of the whole file
    photo_sha256: str  # of the plain photo (only the centre can check it, after opening)
    derivative_sha256: str = ""  # of the plain diploma derivative, if any


def _aside(path: Path) -> Path:
    """A free name next to ``path`` for something moved out of the way (never overwrites)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        cand = path.with_name(f"{path.name}.stray-{stamp}" + (f".{n}" if n else ""))
        if not cand.exists():
            return cand
    raise StorageError(f"no free name to move {path} aside")


def sha256_from(path: Path, offset: int) -> str:
    """The SHA-256 of a file's bytes from ``offset`` to its end (a bundle's sealed bytes), read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Spool:
    """Outbox bundles and kept rejects under ``root``, sealed to ``key`` (None: read, check, purge only).

    ``notes`` lists what opening the spool had to put right (a file where a directory belongs is moved
    aside, never deleted); recovery journals them. ``create=False`` (``status``) changes nothing on disk.
    """

    def __init__(self, root: Path, key: CentreKey | None = None, create: bool = True) -> None:
        self.root = root
        self.key = key
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

    # ---- writing
    def _publish(self, directory: Path, capture_id: str, data: bytes) -> Path:
        final = directory / f"{capture_id}{SUFFIX}"
        tmp = directory / f"{TMP_PREFIX}{capture_id}{SUFFIX}"
        if final.exists():
            raise StorageError(f"{final.name} already exists")
        tmp.unlink(missing_ok=True)
        with open(tmp, "xb") as fh:  # never retried: a failed fsync leaves the data unknown
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, final)
        fsync_dir(directory)
        return final

    def _write(self, directory: Path, kind: str, capture_id: str, ident: dict[str, Any], record: dict[str, Any],
               photo: bytes, derivative: bytes | None) -> Written:
        if self.key is None:
            raise StorageError("no centre key to seal with (sealing.public_keys)")
        data, header = seal(self.key, {"kind": kind, "capture_id": capture_id, **ident}, record, photo, derivative)
        try:
            path = self._publish(directory, capture_id, data)
        except OSError as exc:
            raise StorageError(f"{kind} {capture_id} not written: {exc}") from exc
        return Written(path, header.sealed_sha256, len(data), hashlib.sha256(photo).hexdigest(),
                       hashlib.sha256(derivative).hexdigest() if derivative else "")

    def write_bundle(self, capture_id: str, ident: dict[str, Any], record: dict[str, Any], photo: bytes,
                     derivative: bytes | None = None) -> Written:
        """Seal and atomically publish a bundle. ``ident``: kit_id, journal_id, shot, frame (the clear header);
        ``record``: the capture record, sealed with the photo and its diploma ``derivative``."""
        return self._write(self.outbox, "capture", capture_id, ident, record, photo, derivative)

    def keep_reject(self, capture_id: str, ident: dict[str, Any], record: dict[str, Any], photo: bytes) -> Written:
        """Seal and atomically keep a frame that is not spooled (QC reject, late arrival)."""
        return self._write(self.rejects, "reject", capture_id, ident, record, photo, None)

    # ---- recovery and inspection (no key needed)
    def path(self, capture_id: str) -> Path:
        return self.outbox / f"{capture_id}{SUFFIX}"

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
        """Capture ids of the bundle files in the outbox. Dot names are not bundles (ours are half-written,
        others are someone else's, e.g. a sync daemon's ``.sync-state/``): readers ignore them."""
        return sorted(p.name[:-len(SUFFIX)] for p in self.outbox.iterdir() if not p.name.startswith(".")
                      and p.name.endswith(SUFFIX) and p.is_file() and not p.is_symlink())

    def strays(self) -> list[str]:
        """Outbox entries that are neither bundles nor dot names (a directory, a foreign file, a symlink)."""
        return sorted(p.name for p in self.outbox.iterdir() if not p.name.startswith(".")
                      and not (p.name.endswith(SUFFIX) and p.is_file() and not p.is_symlink()))

    def header(self, capture_id: str, directory: Path | None = None) -> Header:
        """The bundle's clear header; BundleFormatError (a ValueError) or OSError if it cannot be read."""
        path = (directory or self.outbox) / f"{capture_id}{SUFFIX}"
        with open(path, "rb") as fh:
            h, _ = read_header(fh)
        if h.capture_id != capture_id:
            raise BundleFormatError("bad_header", f"the header names {h.capture_id!r}, not its file")
        return h

    def check(self, capture_id: str, deep: bool = True, directory: Path | None = None) -> str | None:
        """None if the bundle is sound, else what is wrong. Shallow: the header parses and the file has its
        size (one small read); deep: also the SHA-256 of the sealed bytes (reads every byte)."""
        path = (directory or self.outbox) / f"{capture_id}{SUFFIX}"
        try:
            with open(path, "rb") as fh:
                h, offset = read_header(fh)
            size = path.stat().st_size
        except (OSError, BundleFormatError) as exc:
            return f"header unreadable: {exc}"
        if h.capture_id != capture_id:
            return f"the header names {h.capture_id!r}, not its file"
        if size != offset + h.sizes["sealed"]:
            return f"{size - offset} sealed bytes, the header says {h.sizes['sealed']} (truncated?)"
        try:
            if deep and sha256_from(path, offset) != h.sealed_sha256:
                return "the sealed bytes do not match their SHA-256"
        except OSError as exc:
            return f"unreadable: {exc}"
        return None

    def verify(self, capture_id: str) -> str | None:
        """None if the bundle is complete and its sealed bytes match their SHA-256, else what is wrong."""
        return self.check(capture_id, deep=True)

    def reject_written(self, capture_id: str) -> Written | None:
        """The kept reject of ``capture_id`` if it reached its place and is complete, else None."""
        path = self.rejects / f"{capture_id}{SUFFIX}"
        if not path.exists() or self.check(capture_id, deep=True, directory=self.rejects):
            return None
        h = self.header(capture_id, self.rejects)
        return Written(path, h.sealed_sha256, path.stat().st_size, "")

    def quarantine(self, capture_id: str) -> Path:
        """Move an interrupted, incomplete bundle out of the outbox into ``orphans/`` (kept, never deleted)."""
        try:
            if self.orphans.exists() and not self.orphans.is_dir():
                os.rename(self.orphans, _aside(self.orphans))
            self.orphans.mkdir(exist_ok=True)
            dest = self.orphans / f"{capture_id}{SUFFIX}"
            if dest.exists() or dest.is_symlink():
                dest = _aside(dest)
            os.rename(self.path(capture_id), dest)
            fsync_dir(self.outbox)
        except OSError as exc:
            raise StorageError(f"cannot move {capture_id} to {self.orphans}: {exc}") from exc
        return dest

    def delete(self, path: Path) -> bool:
        """Purge one sealed file the centre has confirmed (a plain unlink: it is sealed). False if already gone."""
        try:
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot purge {path}: {exc}") from exc
        return True
