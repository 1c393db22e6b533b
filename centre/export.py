"""The print bureau's delivery folder for one school (``docs/delivery-format.md``).

``capturekit centre export SCHOOL DIR`` writes, for the school and its joint-programme sites::

    DIR/<school code>/<class>/<name>.jpg     the selected capture's 480×640 diploma derivative, per student
    DIR/<SCHOOL>.csv                         one row per student: who, which file, which capture, SHA-256s

``<name>`` is the student's collection code if the roster has one, else the ID number, else the student number,
else the card UID, through :func:`file_name` (reversible: :func:`original_name`). Every photo is checked against the
SHA-256 the kit recorded before it is written. The folder is built as ``DIR.partial-*`` and renamed to ``DIR``
at the end, so a ``DIR`` that exists is complete.
"""

from __future__ import annotations

import csv
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine, select

from .db import schools
from .errors import CentreError
from .selection import captures_by_student, family_students, selected
from .storage import ObjectMissing, Storage

CSV_COLUMNS = ("school", "class", "major", "student_no", "name", "id_number", "collection_code", "card_uid",
               "status", "file", "capture_id", "kit", "captured_at", "derivative_sha256", "photo_sha256")


def file_name(text: str) -> str:
    """A name safe on every file system: ASCII letters and digits, ``-`` and ``_`` as they are, other letters and
    digits (e.g. Chinese) as they are, everything else — ``/``, ``+``, ``=``, ``.``, ``%``, spaces — as ``%XX``
    of its UTF-8 bytes (upper-case hex). ``urllib.parse.unquote`` reverses it."""
    out = []
    for ch in text:
        if (ch.isascii() and (ch.isalnum() or ch in "-_")) or (not ch.isascii() and ch.isalnum()):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
    return "".join(out) or "%00"


def original_name(name: str) -> str:
    """The key (or class) a file or folder name stands for."""
    return unquote(name.removesuffix(".jpg"))


@dataclass
class ExportReport:
    directory: Path
    students: int = 0
    photos: int = 0
    missing: int = 0
    problems: list[str] = field(default_factory=list)


def _fsync_tree(root: Path) -> None:
    for d, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def export(engine: Engine, storage: Storage, code: str, directory: Path) -> ExportReport:
    """Write the delivery folder (module docstring); CentreError if ``directory`` exists or the school does not."""
    if directory.exists():
        raise CentreError(f"{directory} already exists: export into a new directory")
    with engine.connect() as conn:
        school_id = conn.execute(select(schools.c.id).where(schools.c.code == code)).scalar()
        if school_id is None:
            raise CentreError(f"no school {code!r}")
        people = family_students(conn, school_id)
        caps = captures_by_student(conn, school_id)
    tmp = directory.with_name(f"{directory.name}.partial-{secrets.token_hex(4)}")
    tmp.mkdir(parents=True)
    report = ExportReport(directory, students=len(people))
    names: dict[str, str] = {}  # case-folded relative path -> student, to catch clashes on Windows file systems
    rows = []
    try:
        for s in people:
            pick = selected(caps.get(s.id, []))
            key = (s.keys.get("collection_code") or s.keys.get("id_number") or s.student_no
                   or s.keys.get("card_uid") or f"student-{s.id}")
            rel = Path(file_name(s.school)) / file_name(s.class_name or "-") / f"{file_name(key)}.jpg"
            row = {"school": s.school, "class": s.class_name, "major": s.major, "student_no": s.student_no,
                   "name": s.name, **{k: s.keys.get(k, "") for k in ("id_number", "collection_code", "card_uid")},
                   "status": "missing", "file": "", "capture_id": "", "kit": "", "captured_at": "",
                   "derivative_sha256": "", "photo_sha256": ""}
            if pick is not None:
                row.update(capture_id=pick.capture_id, kit=pick.kit_name, captured_at=pick.captured_at,
                           photo_sha256=pick.photo_sha256)
                status = _write_photo(storage, pick, tmp / rel, names, str(rel), report)
                row["status"] = status
                if status == "ok":
                    row.update(file=rel.as_posix(), derivative_sha256=pick.derivative_sha256)
                    report.photos += 1
            if row["status"] == "missing":
                report.missing += 1
            rows.append(row)
        with open(tmp / f"{file_name(code)}.csv", "w", encoding="utf-8-sig", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        _fsync_tree(tmp)
        os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _write_photo(storage: Storage, pick: Any, path: Path, names: dict[str, str], rel: str,
                 report: ExportReport) -> str:
    if not pick.derivative_key:
        report.problems.append(f"{pick.capture_id}: no diploma derivative (the kit could not cut one)")
        return "no_derivative"
    try:
        data = storage.get(pick.derivative_key)
    except ObjectMissing:
        report.problems.append(f"{pick.capture_id}: derivative object {pick.derivative_key} is missing")
        return "object_missing"
    if hashlib.sha256(data).hexdigest() != pick.derivative_sha256:
        report.problems.append(f"{pick.capture_id}: derivative does not match the SHA-256 the kit recorded")
        return "sha256_mismatch"
    folded = rel.casefold()
    if folded in names:
        report.problems.append(f"{rel}: same name as {names[folded]} on a case-insensitive file system")
        return "name_clash"
    names[folded] = rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "ok"
