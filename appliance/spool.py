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
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal import StorageError

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


class Spool:
    """Outbox bundles and kept rejects under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outbox = root / "outbox"
        self.rejects = root / "rejects"
        self.orphans = root / "orphans"
        for d in (self.outbox, self.rejects):
            d.mkdir(parents=True, exist_ok=True)

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
        """Remove half-written bundles/rejects left by a crash; return their names."""
        removed = []
        for d in (self.outbox, self.rejects):
            for p in d.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                removed.append(p.name)
        return removed

    def bundle_ids(self) -> list[str]:
        return sorted(p.name for p in self.outbox.iterdir() if p.is_dir() and not p.name.startswith(TMP_PREFIX))

    def record(self, capture_id: str) -> dict[str, Any]:
        return json.loads((self.outbox / capture_id / RECORD).read_text(encoding="utf-8"))

    def verify(self, capture_id: str) -> str | None:
        """None if the bundle is complete and its JPEG matches its SHA-256, else what is wrong."""
        d = self.outbox / capture_id
        try:
            rec = self.record(capture_id)
            data = (d / rec["photo"]["file"]).read_bytes()
        except (OSError, ValueError, KeyError) as exc:
            return f"unreadable: {exc}"
        if hashlib.sha256(data).hexdigest() != rec["photo"]["sha256"]:
            return "sha256 mismatch"
        deriv = rec.get("derivative")
        if deriv:
            try:
                if hashlib.sha256((d / deriv["file"]).read_bytes()).hexdigest() != deriv["sha256"]:
                    return "derivative sha256 mismatch"
            except OSError as exc:
                return f"derivative unreadable: {exc}"
        return None

    def reject_written(self, capture_id: str) -> Written | None:
        """The kept reject of ``capture_id`` with its digest, or None if it never reached its place."""
        p = self.rejects / f"{capture_id}.jpg"
        if not p.exists():
            return None
        data = p.read_bytes()
        return Written(p, hashlib.sha256(data).hexdigest(), len(data))

    def quarantine(self, capture_id: str) -> Path:
        """Move a bundle the journal does not know out of the outbox (kept, never deleted)."""
        self.orphans.mkdir(exist_ok=True)
        dest = self.orphans / capture_id
        os.rename(self.outbox / capture_id, dest)
        _fsync_dir(self.outbox)
        return dest
