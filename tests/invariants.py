"""An independent check of journal + spool consistency: plain sqlite3, struct, json, hashlib, PyNaCl and Pillow —
none of our code. It reads the sealed bundle format (docs/spool-format.md) from its description and opens each
bundle with the centre's private key to prove the photo inside belongs to the shot and frame that name it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import struct
from pathlib import Path

from nacl.public import PrivateKey, SealedBox
from PIL import Image


def _keys(keys_dir: Path) -> dict[str, PrivateKey]:
    out = {}
    for p in keys_dir.glob("*.key"):
        _, key_id, b64 = p.read_text().split()
        out[key_id] = PrivateKey(base64.b64decode(b64))
    return out


def _open(path: Path, keys: dict[str, PrivateKey]) -> tuple[dict, dict, bytes]:
    raw = path.read_bytes()
    assert raw[:8] == b"CKBUNDL2", f"{path.name}: not a bundle/2 file"
    (n,) = struct.unpack(">I", raw[8:12])
    header = json.loads(raw[12:12 + n])
    sealed = raw[12 + n:]
    assert len(sealed) == header["sizes"]["sealed"], f"{path.name}: truncated"
    assert hashlib.sha256(sealed).hexdigest() == header["sealed_sha256"], f"{path.name}: sealed SHA-256 mismatch"
    plain = SealedBox(keys[header["key_id"]]).decrypt(sealed)
    (m,) = struct.unpack(">I", plain[:4])
    record = json.loads(plain[4:4 + m])
    photo = plain[4 + m:4 + m + header["sizes"]["photo"]]
    assert hashlib.sha256(photo).hexdigest() == record["photo"]["sha256"], f"{path.name}: photo SHA-256 mismatch"
    return header, record, photo


def check(data_dir: Path, keys_dir: Path | None = None, opened: set[str] | None = None) -> dict[str, int]:
    """Assert every invariant the kit promises after a restart; return counts for the caller.

    ``opened``: capture ids whose bundle an earlier call already opened and checked (bundles are immutable, so
    a campaign need not decrypt them again; their header and SHA-256 are still checked). It is added to."""
    keys_dir = keys_dir or data_dir.with_name(data_dir.name + ".centre-keys")
    keys = _keys(keys_dir)
    if not (data_dir / "journal.sqlite").exists():  # killed before the daemon made its journal
        outbox = data_dir / "spool" / "outbox"
        assert not (outbox.exists() and any(outbox.iterdir())), "bundles without a journal"
        return {"shots": 0, "captured": 0, "void": 0, "bundles": 0}
    db = sqlite3.connect(f"file:{data_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        shots = db.execute("SELECT number, status, void_reason, selected_frame FROM shots ORDER BY number").fetchall()
        frames = db.execute("SELECT shot, frame, capture_id, status, dest, sha256, path FROM frames").fetchall()
        adopted = {r[0] for r in db.execute("SELECT capture_id FROM adopted")}
        purged = {r[0] for r in db.execute("SELECT capture_id FROM purged")}
    finally:
        db.close()
    numbers = [s[0] for s in shots]
    assert numbers == list(range(numbers[0] if numbers else 1, (numbers[-1] + 1) if numbers else 1)), \
        "shot numbers must have no gaps"
    for number, status, reason, selected in shots:
        assert status in ("captured", "void"), f"shot {number} is {status}"
        if status == "void":
            assert reason, f"void shot {number} has no reason"
        else:
            assert selected is not None, f"captured shot {number} has no selected frame"
            assert any(f[0] == number and f[1] == selected and f[3] == "stored" for f in frames)
    assert not [f for f in frames if f[3] == "storing"], "a frame is still half-stored"
    outbox = data_dir / "spool" / "outbox"
    names = {p.name for p in outbox.iterdir()} if outbox.exists() else set()
    assert not [n for n in names if n.startswith(".")], f"half-written bundles left: {names}"
    files = {n.removesuffix(".bundle") for n in names}
    stored = {f[2]: f for f in frames if f[3] == "stored" and f[2] not in purged}
    assert set(stored) | (adopted - purged) == files, \
        f"bundles without rows {files - set(stored) - adopted}, rows without bundles {set(stored) - files}"
    for cid, (shot, frame, _, _, _, sha, path) in stored.items():
        if opened is not None and cid in opened:
            raw = (data_dir / "spool" / path).read_bytes()
            (n,) = struct.unpack(">I", raw[8:12])
            assert json.loads(raw[12:12 + n])["sealed_sha256"] == sha, f"{cid}: header changed"
            continue
        header, record, photo = _open(data_dir / "spool" / path, keys)
        if opened is not None:
            opened.add(cid)
        assert header["sealed_sha256"] == sha, f"{cid}: journal and bundle disagree on the SHA-256"
        assert (header["shot"], header["frame"], header["capture_id"]) == (shot, frame, cid)
        assert record["header"]["capture_id"] == cid and (record["shot"], record["frame"]) == (shot, frame)
        tag = Image.open(io.BytesIO(photo)).info.get("comment", b"").decode()
        assert tag == f"capturekit-sim shot={shot} frame={frame}", f"{cid} holds the photo of {tag}"
    for f in frames:
        if f[3] == "rejected" and f[2] not in purged:
            header, _, photo = _open(data_dir / "spool" / f[6], keys)
            assert header["sealed_sha256"] == f[5], f"reject {f[2]} mismatch"
    return {"shots": len(shots), "captured": sum(s[1] == "captured" for s in shots),
            "void": sum(s[1] == "void" for s in shots), "bundles": len(files)}
