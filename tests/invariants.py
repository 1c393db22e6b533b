"""An independent check of journal + spool consistency: plain sqlite3, hashlib and Pillow, none of our code."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

from PIL import Image


def check(data_dir: Path) -> dict[str, int]:
    """Assert every invariant the kit promises after a restart; return counts for the caller."""
    db = sqlite3.connect(data_dir / "journal.sqlite")
    try:
        shots = db.execute("SELECT number, status, void_reason, selected_frame FROM shots ORDER BY number").fetchall()
        frames = db.execute("SELECT shot, frame, capture_id, status, dest, sha256 FROM frames").fetchall()
    finally:
        db.close()
    numbers = [s[0] for s in shots]
    assert numbers == list(range(1, len(numbers) + 1)), "shot numbers must have no gaps"
    for number, status, reason, selected in shots:
        assert status in ("captured", "void"), f"shot {number} is {status}"
        if status == "void":
            assert reason, f"void shot {number} has no reason"
        else:
            assert selected is not None, f"captured shot {number} has no selected frame"
            assert any(f[0] == number and f[1] == selected and f[3] == "stored" for f in frames)
    assert not [f for f in frames if f[3] == "storing"], "a frame is still half-stored"
    outbox = data_dir / "spool" / "outbox"
    dirs = {p.name for p in outbox.iterdir()} if outbox.exists() else set()
    assert not [d for d in dirs if d.startswith(".")], f"half-written bundles left: {dirs}"
    stored = {f[2]: f for f in frames if f[3] == "stored"}
    assert set(stored) == dirs, f"bundles without rows {dirs - set(stored)}, rows without bundles {set(stored) - dirs}"
    for cid, (shot, frame, _, _, _, sha) in stored.items():
        rec = json.loads((outbox / cid / "capture.json").read_text())
        data = (outbox / cid / rec["photo"]["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec["photo"]["sha256"] == sha, f"{cid}: SHA-256 mismatch"
        assert (rec["shot"], rec["frame"], rec["capture_id"]) == (shot, frame, cid)
        tag = Image.open(io.BytesIO(data)).info.get("comment", b"").decode()
        assert tag == f"capturekit-sim shot={shot} frame={frame}", f"{cid} holds the photo of {tag}"
    for f in frames:
        if f[3] == "rejected":
            p = data_dir / "spool" / "rejects" / f"{f[2]}.jpg"
            assert hashlib.sha256(p.read_bytes()).hexdigest() == f[5], f"reject {f[2]} mismatch"
    return {"shots": len(shots), "captured": sum(s[1] == "captured" for s in shots),
            "void": sum(s[1] == "void" for s in shots), "bundles": len(dirs)}
