"""What the centre tests send: real sealed bundles (appliance.bundle.seal) and a small tus client on requests."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from peers.centre import CentreServer
from peers.postgres import Postgres
from peers.s3 import S3
from PIL import Image

from appliance.bundle import CentreKey, Header, seal


def jpeg(width: int, height: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    img = Image.new("RGB", (width, height), (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    img.putpixel((rnd.randrange(width), rnd.randrange(height)), (255, 255, 255))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


@dataclass(frozen=True)
class Bundle:
    header: Header
    sealed: bytes
    photo: bytes
    derivative: bytes | None

    @property
    def capture_id(self) -> str:
        return self.header.capture_id

    @property
    def sha256(self) -> str:
        return self.header.sealed_sha256

    def metadata(self, **over: str) -> dict[str, str]:
        meta = {"capture_id": self.capture_id, "sha256": self.sha256, "header": json.dumps(self.header.to_dict())}
        meta.update(over)
        return {k: v for k, v in meta.items() if v is not None}


def make_bundle(sealing_line: str, kit: str, shot: int = 1, frame: int = 1, *, journal: str | None = None,
                kind: str = "id_number", key: str = "110105200001011234", school: str = "",
                captured_at: str = "2026-11-25T09:00:00.000+08:00", supersedes: str | None = None,
                derivative: bool = True, protected: bool = False, photo_size: tuple[int, int] = (64, 48),
                seed: int | None = None) -> Bundle:
    """A bundle exactly as the kit's spool seals it (appliance.spool → appliance.bundle.seal)."""
    journal = journal or secrets.token_hex(4)
    seed = seed if seed is not None else random.randrange(1 << 30)
    photo = jpeg(*photo_size, seed)
    deriv = jpeg(480, 640, seed + 1) if derivative else None
    cid = f"{kit}-{journal}-{shot:06d}-{frame:02d}"
    identity: dict[str, Any] = {"kind": kind, "key": key, "source": "sim", "reader": "test"}
    if protected:
        identity["protected"] = True
    record = {"capture_id": cid, "kit_id": kit, "journal_id": journal, "session": {"id": 1, "school": school},
              "shot": shot, "frame": frame, "identity": identity, "roster_check": "on_roster",
              "captured_at": captured_at, "stored_at": captured_at,
              "photo": {"width": photo_size[0], "height": photo_size[1], "camera": {}},
              "verdict": {"result": "pass", "reasons": [], "accepted_by_operator": False, "qc": None},
              "derivative_error": None, "frames": [], "supersedes": supersedes}
    data, header = seal(CentreKey.parse(sealing_line), {"kind": "capture", "capture_id": cid, "kit_id": kit,
                                                        "journal_id": journal, "shot": shot, "frame": frame},
                        record, photo, deriv)
    sealed = data[len(data) - header.sizes["sealed"]:]
    return Bundle(header, sealed, photo, deriv)


def encode_metadata(meta: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" if v != "" else k for k, v in meta.items())


class Tus:
    """Raw tus requests as a kit sends them (each one a real HTTP request on loopback)."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base
        self.s = requests.Session()
        if token is not None:
            self.s.headers["Authorization"] = f"Bearer {token}"
        self.s.headers["Tus-Resumable"] = "1.0.0"

    def create(self, length: int, meta: dict[str, str] | str | None, body: bytes | None = None,
               **headers: str) -> requests.Response:
        """POST /uploads; with ``body``, the first bytes go with it (creation-with-upload)."""
        h = {"Upload-Length": str(length), **headers}
        if meta is not None:
            h["Upload-Metadata"] = meta if isinstance(meta, str) else encode_metadata(meta)
        if body is not None:
            h.setdefault("Content-Type", "application/offset+octet-stream")
        return self.s.post(f"{self.base}/api/v1/uploads", headers=h, data=body, timeout=60)

    def url(self, r: requests.Response) -> str:
        return self.base + r.headers["Location"]

    def patch(self, url: str, offset: int, body: bytes, checksum: str | None = None,
              **headers: str) -> requests.Response:
        h = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **headers}
        if checksum:
            h["Upload-Checksum"] = checksum
        return self.s.patch(url, data=body, headers=h, timeout=60)

    def head(self, url: str) -> requests.Response:
        return self.s.head(url, timeout=30)

    def delete(self, url: str) -> requests.Response:
        return self.s.delete(url, timeout=30)

    def upload(self, b: Bundle, chunk: int = 1 << 20) -> requests.Response:
        """The whole bundle in chunks of ``chunk`` bytes, each with its sha256 Upload-Checksum; the last answer."""
        r = self.create(len(b.sealed), b.metadata())
        assert r.status_code == 201, r.text
        if "Capturekit-Capture-Id" in r.headers:
            return r
        url, offset = self.url(r), 0
        while True:
            body = b.sealed[offset:offset + chunk]
            r = self.patch(url, offset, body, "sha256 " + base64.b64encode(hashlib.sha256(body).digest()).decode())
            assert r.status_code == 204, r.text
            offset = int(r.headers["Upload-Offset"])
            if offset == len(b.sealed):
                return r

    def capture(self, capture_id: str) -> requests.Response:
        return self.s.get(f"{self.base}/api/v1/captures/{capture_id}", timeout=30)


def new_pg_s3(root: Path, pg: Postgres, s3: S3, **kw) -> CentreServer:
    name = f"ck_{secrets.token_hex(4)}"
    bucket = s3.bucket(name.replace("_", "-"))
    return CentreServer(root, database_url=pg.create_database(name), storage_url=f"s3://{bucket}/centre", s3=s3,
                        **kw)
