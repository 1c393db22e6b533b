"""Bad uploads are a 4xx with a reason, and leave nothing stored."""

from __future__ import annotations

import base64
import json
import socket
import time
from urllib.parse import urlparse

import pytest
from centrekit import Tus, encode_metadata, make_bundle
from sqlalchemy import func, select

from centre.db import bundles, uploads


def _nothing_for(centre, capture_id: str) -> bool:
    with centre.centre.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(bundles).where(bundles.c.capture_id == capture_id)).scalar()
    return n == 0


def test_wrong_overall_sha256_is_460_and_the_upload_is_discarded(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    other = make_bundle(centre.sealing_line, name)
    lie = {**b.header.to_dict(), "sealed_sha256": other.sha256, "sizes": {**b.header.sizes}}
    tus = Tus(centre.url, token)
    r = tus.create(len(b.sealed), {"capture_id": b.capture_id, "sha256": other.sha256, "header": json.dumps(lie)})
    assert r.status_code == 201
    url = tus.url(r)
    r = tus.patch(url, 0, b.sealed)
    assert r.status_code == 460 and r.json()["error"] == "checksum_mismatch"
    assert "Capturekit-Status" not in r.headers
    assert tus.head(url).status_code == 404  # discarded: the kit starts again
    assert _nothing_for(centre, b.capture_id)


def test_truncated_body_is_kept_as_far_as_it_came_and_is_not_a_capture(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name, photo_size=(400, 300))
    tus = Tus(centre.url, token)
    url = tus.url(tus.create(len(b.sealed), b.metadata()))
    u = urlparse(url)
    half = len(b.sealed) // 2
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:  # says all, sends half, hangs up
        s.sendall((f"PATCH {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {token}\r\n"
                   f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                   f"Content-Length: {len(b.sealed)}\r\n\r\n").encode() + b.sealed[:half])
        time.sleep(0.3)
    for _ in range(50):  # the centre notices the hang-up and keeps what arrived
        offset = int(tus.head(url).headers["Upload-Offset"])
        if offset:
            break
        time.sleep(0.1)
    assert 0 < offset <= half
    assert _nothing_for(centre, b.capture_id)
    assert tus.capture(b.capture_id).status_code == 404
    r = tus.patch(url, offset, b.sealed[offset:])  # and the kit resumes from there
    assert r.headers["Capturekit-Status"] == "received"


def test_a_creation_body_cut_off_keeps_nothing(centre, kit):
    """creation-with-upload: the kit never got the upload's URL, so half a body is worth nothing: no upload,
    no bundle, no object, no temporary file left behind; the kit's next creation goes in whole."""
    name, token = kit
    b = make_bundle(centre.sealing_line, name, photo_size=(400, 300))
    tus = Tus(centre.url, token)
    u = urlparse(centre.url)
    meta = encode_metadata(b.metadata())
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:  # says all, sends half, hangs up
        s.sendall((f"POST /api/v1/uploads HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {token}\r\n"
                   f"Tus-Resumable: 1.0.0\r\nUpload-Length: {len(b.sealed)}\r\nUpload-Metadata: {meta}\r\n"
                   f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(b.sealed)}\r\n\r\n"
                   ).encode() + b.sealed[: len(b.sealed) // 2])
        time.sleep(0.3)
    st = centre.centre.storage
    for _ in range(50):  # the centre notices the hang-up and drops what arrived
        if not hasattr(st, "root") or not list(st.root.rglob(f".tmp-*{b.capture_id}*")):
            break
        time.sleep(0.1)
    assert _nothing_for(centre, b.capture_id)
    with centre.centre.engine.connect() as conn:
        assert not conn.execute(select(uploads).where(uploads.c.capture_id == b.capture_id)).all()
    if hasattr(st, "root"):
        assert not list(st.root.rglob(f"*{b.capture_id}*"))
    r = tus.create(len(b.sealed), b.metadata(), body=b.sealed)
    assert r.status_code == 201 and r.headers["Capturekit-Status"] == "received"


def test_oversized_uploads_and_bodies_are_413(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    r = tus.create(4 * 2**20 + 1, b.metadata())
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    url = tus.url(tus.create(len(b.sealed), b.metadata()))
    r = tus.patch(url, 0, b.sealed + b"x")
    assert r.status_code == 413 and r.json()["error"] == "past_upload_length"
    assert tus.head(url).headers["Upload-Offset"] == "0"
    def chunked():
        yield b.sealed
        yield b"more"
    r = tus.s.patch(url, data=chunked(), headers={"Upload-Offset": "0",
                                                 "Content-Type": "application/offset+octet-stream"}, timeout=30)
    assert r.status_code == 413
    assert tus.head(url).headers["Upload-Offset"] == "0"
    r = tus.s.post(f"{centre.url}/api/v1/heartbeat", data=b"{" + b" " * (300 * 1024) + b"}",
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert 400 <= r.status_code < 500


def _meta(b, **over):
    return b.metadata(**over)


@pytest.mark.parametrize("case", [
    "no-metadata", "not-base64", "no-sha256", "short-sha256", "no-header", "header-not-json", "header-other-id",
    "header-other-size", "dotdot-id", "slash-id", "space-id", "pair-with-three-parts", "no-length", "bad-length",
    "zero-length", "defer-length",
])
def test_malformed_creation_is_400(centre, kit, case):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    n = len(b.sealed)
    h = b.header.to_dict()
    meta: dict | str | None = b.metadata()
    extra: dict[str, str] = {}
    if case == "no-metadata":
        meta = None
    elif case == "not-base64":
        meta = "capture_id !!!,sha256 " + base64.b64encode(b.sha256.encode()).decode()
    elif case == "no-sha256":
        meta = _meta(b, sha256=None)
    elif case == "short-sha256":
        meta = _meta(b, sha256=b.sha256[:10])
    elif case == "no-header":
        meta = _meta(b, header=None)
    elif case == "header-not-json":
        meta = _meta(b, header="{not json")
    elif case == "header-other-id":
        meta = _meta(b, header=json.dumps({**h, "shot": 2}))
    elif case == "header-other-size":
        n += 1
    elif case == "dotdot-id":
        meta = _meta(b, capture_id=f"../{b.capture_id}")
    elif case == "slash-id":
        meta = _meta(b, capture_id=f"{name}/x-00000000-000001-01")
    elif case == "space-id":
        meta = _meta(b, capture_id=f"{b.capture_id} x")
    elif case == "pair-with-three-parts":
        meta = encode_metadata(b.metadata()) + ",x a b"
    elif case == "no-length":
        r = Tus(centre.url, token).s.post(f"{centre.url}/api/v1/uploads", timeout=10,
                                          headers={"Upload-Metadata": encode_metadata(b.metadata())})
        assert r.status_code == 400 and r.json()["error"] == "missing_header"
        return
    elif case == "bad-length":
        extra = {"Upload-Length": "-5"}
    elif case == "zero-length":
        n = 0
    elif case == "defer-length":
        extra = {"Upload-Defer-Length": "1"}
    r = Tus(centre.url, token).create(n, meta, **extra)
    assert r.status_code == 400, (r.status_code, r.text)
    assert set(r.json()) == {"error", "detail"} and r.json()["detail"]
    assert _nothing_for(centre, b.capture_id)
    with centre.centre.engine.connect() as conn:
        assert not conn.execute(select(uploads).where(uploads.c.capture_id == b.capture_id)).all()


@pytest.mark.parametrize("upload_id", ["..", "..%2F..%2Fetc", "%2e%2e", "0" * 31 + "g", "x" * 300])
def test_path_characters_in_upload_ids_are_4xx(centre, kit, upload_id):
    _, token = kit
    tus = Tus(centre.url, token)
    for r in (tus.head(f"{centre.url}/api/v1/uploads/{upload_id}"),
              tus.patch(f"{centre.url}/api/v1/uploads/{upload_id}", 0, b"x"),
              tus.delete(f"{centre.url}/api/v1/uploads/{upload_id}")):
        assert 400 <= r.status_code < 500, (upload_id, r.status_code)


@pytest.mark.parametrize("capture_id", ["..", "a..b/c", "%2e%2e%2fx", "x" * 200, "kit-ä"])
def test_path_characters_in_capture_ids_are_4xx(centre, kit, capture_id):
    _, token = kit
    r = Tus(centre.url, token).capture(capture_id)
    assert 400 <= r.status_code < 500
    if r.status_code == 400:
        assert r.json()["error"] == "bad_capture_id"


def test_patch_needs_its_content_type_offset_and_a_known_checksum(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    url = tus.url(tus.create(len(b.sealed), b.metadata()))
    assert tus.patch(url, 0, b.sealed[:10], **{"Content-Type": "text/plain"}).status_code == 415
    r = tus.s.patch(url, data=b"x", headers={"Content-Type": "application/offset+octet-stream"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "missing_header"
    assert tus.patch(url, 0, b"x", "md5 AAAA").json()["error"] == "bad_checksum_algorithm"
    assert tus.patch(url, 0, b"x", "sha256 notbase64!").json()["error"] == "bad_checksum"
    assert tus.head(url).headers["Upload-Offset"] == "0"
