"""tus uploads into a real centre on loopback: exactly once, confirmed only when durable, opened with the key."""

from __future__ import annotations

import base64
import hashlib
import json

from centrekit import Tus, make_bundle
from sqlalchemy import select

from centre.db import bundles, captures, conflicts, upload_chunks, uploads
from centre.ingest import original


def _objects_of(storage, prefix: str, capture_id: str) -> int:
    """How many objects of one capture the store (directory or S3) holds under ``prefix``."""
    if hasattr(storage, "root"):
        return sum(1 for p in (storage.root / prefix).rglob(f"{capture_id}.*") if p.is_file())
    listed = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=storage._key(prefix) + "/")
    return sum(1 for o in listed.get("Contents", []) if o["Key"].rsplit("/", 1)[-1].startswith(f"{capture_id}."))


def test_options_tells_the_protocol(centre):
    r = Tus(centre.url, None).s.options(f"{centre.url}/api/v1/uploads", timeout=10)
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0" and r.headers["Tus-Resumable"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "creation-with-upload", "checksum", "termination"}
    assert r.headers["Tus-Checksum-Algorithm"] == "sha256,sha1"
    assert int(r.headers["Tus-Max-Size"]) == 4 * 2**20


def test_upload_in_chunks_is_stored_opened_and_confirmed(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name, photo_size=(800, 600))
    tus = Tus(centre.url, token)
    r = tus.create(len(b.sealed), b.metadata())
    assert r.status_code == 201 and r.headers["Location"].startswith("/api/v1/uploads/")
    assert "Capturekit-Capture-Id" not in r.headers
    url, offset = tus.url(r), 0
    third = len(b.sealed) // 3 + 1
    for i in range(3):
        body = b.sealed[offset:offset + third]
        r = tus.patch(url, offset, body)
        assert r.status_code == 204, r.text
        if i < 2:  # nothing confirmed, nothing visible before the last byte
            assert "Capturekit-Status" not in r.headers
            assert centre.holds(b.capture_id) is None
            assert tus.head(url).headers["Upload-Offset"] == r.headers["Upload-Offset"]
        offset = int(r.headers["Upload-Offset"])
    assert offset == len(b.sealed)
    assert r.headers["Capturekit-Capture-Id"] == b.capture_id
    assert r.headers["Capturekit-Sha256"] == b.sha256
    assert r.headers["Capturekit-Status"] == "received"
    row = centre.holds(b.capture_id)
    assert row.status == "stored" and row.sha256 == b.sha256
    st = centre.centre.storage
    assert hashlib.sha256(st.get(row.object_key)).hexdigest() == b.sha256
    with centre.centre.engine.connect() as conn:
        cap = conn.execute(select(captures).where(captures.c.capture_id == b.capture_id)).one()
        assert not conn.execute(select(upload_chunks).where(upload_chunks.c.upload_id == url.rsplit("/", 1)[1])).all()
    assert st.get(cap.derivative_key) == b.derivative
    # the original is kept sealed only (one copy, not in the clear), and opens to the kit's photo on demand
    assert cap.photo_key == row.object_key and _objects_of(st, "photos", b.capture_id) == 0
    assert _objects_of(st, "derivatives", b.capture_id) == 1 and _objects_of(st, "bundles", b.capture_id) == 1
    assert original(centre.centre.engine, st, centre.centre.keys.ring, b.capture_id) == b.photo
    assert cap.identity_kind == "id_number" and cap.identity_key == "110105200001011234"
    assert cap.shot == 1 and cap.frame == 1 and cap.verdict == "pass"
    head = tus.head(url)
    assert head.status_code == 200 and head.headers["Cache-Control"] == "no-store"
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(b.sealed))
    assert head.headers["Capturekit-Sha256"] == b.sha256
    got = tus.capture(b.capture_id)
    assert got.status_code == 200
    assert got.json() == {"capture_id": b.capture_id, "sha256": b.sha256, "status": "stored", "reason": None}


def test_second_upload_of_the_same_capture_is_already_have_it(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    first = tus.upload(b)
    assert first.headers["Capturekit-Status"] == "received"
    again = tus.create(len(b.sealed), b.metadata())
    assert again.status_code == 201
    assert again.headers["Capturekit-Capture-Id"] == b.capture_id and again.headers["Capturekit-Sha256"] == b.sha256
    assert again.headers["Upload-Offset"] == str(len(b.sealed))
    with centre.centre.engine.connect() as conn:  # no second upload, no second bundle
        assert len(conn.execute(select(uploads).where(uploads.c.capture_id == b.capture_id)).all()) == 1
        assert len(conn.execute(select(bundles).where(bundles.c.capture_id == b.capture_id)).all()) == 1
    assert tus.head(tus.url(again)).headers["Capturekit-Status"] in ("received", "stored")


def test_different_bytes_under_a_held_capture_id_are_409_and_flagged(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name, journal="0badc0de")
    other = make_bundle(centre.sealing_line, name, journal="0badc0de")  # same id, new photo: other bytes
    assert other.capture_id == b.capture_id and other.sha256 != b.sha256
    tus = Tus(centre.url, token)
    tus.upload(b)
    r = tus.create(len(other.sealed), other.metadata())
    assert r.status_code == 409 and r.json()["error"] == "capture_conflict"
    assert centre.holds(b.capture_id).sha256 == b.sha256  # never overwritten
    with centre.centre.engine.connect() as conn:
        flagged = conn.execute(select(conflicts).where(conflicts.c.capture_id == b.capture_id)).all()
    assert [(f.held_sha256, f.offered_sha256) for f in flagged] == [(b.sha256, other.sha256)]


def test_two_uploads_racing_for_one_capture_store_it_once(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    urls = [tus.url(tus.create(len(b.sealed), b.metadata())) for _ in range(2)]
    answers = [tus.patch(u, 0, b.sealed) for u in urls]
    assert [a.status_code for a in answers] == [204, 204]
    assert {a.headers["Capturekit-Sha256"] for a in answers} == {b.sha256}
    centre.opened()
    with centre.centre.engine.connect() as conn:
        assert len(conn.execute(select(captures).where(captures.c.capture_id == b.capture_id)).all()) == 1


def test_a_bundle_that_does_not_open_is_kept_reported_refused_and_reopened(centre, kit, tmp_path):
    from centre.sealing import keygen

    name, token = kit
    keygen(tmp_path / "foreign")  # sealed to a key this centre does not hold
    b = make_bundle(next((tmp_path / "foreign").glob("*.pub")).read_text().strip(), name)
    r = Tus(centre.url, token).upload(b)
    assert r.headers["Capturekit-Status"] == "received"  # held: the kit is done with it
    assert r.headers["Capturekit-Sha256"] == b.sha256
    row = centre.holds(b.capture_id)
    assert row.status == "refused" and row.reason == "unknown_key"
    assert centre.centre.storage.get(row.object_key) == b.sealed  # kept for inspection
    got = Tus(centre.url, token).capture(b.capture_id).json()
    assert got["status"] == "refused" and got["reason"] == "unknown_key"


def test_a_refused_bundle_opens_once_its_key_is_installed_and_reopen_is_run(tmp_path):
    """The kit is done with a bundle the centre cannot open yet: the sealed bytes wait there for the key."""
    import shutil

    from peers.centre import CentreServer

    from centre.sealing import keygen

    keygen(tmp_path / "late")  # the key the kit sealed to; the centre does not have it yet
    with CentreServer(tmp_path / "c") as centre:
        name = "kit-late"
        token = centre.add_kit(name)
        b = make_bundle(next((tmp_path / "late").glob("*.pub")).read_text().strip(), name)
        assert Tus(centre.url, token).upload(b).headers["Capturekit-Status"] == "received"
        assert centre.holds(b.capture_id).reason == "unknown_key"
        centre.stop()
        for key in (tmp_path / "late").glob("*.key"):
            shutil.copy2(key, centre.keys_dir / key.name)
        centre.start()
        assert "1 refused bundles will be opened again" in centre.cli("reopen", "--reason", "unknown_key").stdout
        row = centre.holds(b.capture_id)
        assert row.status == "stored" and row.reason is None, row
        with centre.centre.engine.connect() as conn:
            cap = conn.execute(select(captures).where(captures.c.capture_id == b.capture_id)).one()
        from centre.keys import load_keys

        ring = load_keys(centre.centre.config).ring  # (this process's view was loaded before the key came)
        assert original(centre.centre.engine, centre.centre.storage, ring, cap.capture_id) == b.photo


def test_a_tampered_bundle_is_refused_not_stored_as_a_capture(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    bad = bytearray(b.sealed)
    bad[100] ^= 1
    h = {**b.header.to_dict(), "sealed_sha256": hashlib.sha256(bytes(bad)).hexdigest()}
    tus = Tus(centre.url, token)
    r = tus.create(len(bad), {"capture_id": b.capture_id, "sha256": h["sealed_sha256"], "header": json.dumps(h)})
    r = tus.patch(tus.url(r), 0, bytes(bad))
    assert r.status_code == 204 and r.headers["Capturekit-Status"] == "received"
    row = centre.holds(b.capture_id)
    assert row.status == "refused" and row.reason == "not_openable"
    with centre.centre.engine.connect() as conn:
        assert not conn.execute(select(captures).where(captures.c.capture_id == b.capture_id)).all()


def test_sha1_checksums_are_accepted_and_a_wrong_one_keeps_nothing(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    url = tus.url(tus.create(len(b.sealed), b.metadata()))
    half = b.sealed[:1000]
    wrong = "sha1 " + base64.b64encode(hashlib.sha1(b"not this").digest()).decode()
    r = tus.patch(url, 0, half, wrong)
    assert r.status_code == 460 and r.json()["error"] == "checksum_mismatch"
    assert tus.head(url).headers["Upload-Offset"] == "0"
    right = "sha1 " + base64.b64encode(hashlib.sha1(half).digest()).decode()
    assert tus.patch(url, 0, half, right).headers["Upload-Offset"] == "1000"
    r = tus.patch(url, 1000, b.sealed[1000:])
    assert r.headers["Capturekit-Status"] == "received"


def test_resume_from_the_offset_after_a_lost_answer(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    url = tus.url(tus.create(len(b.sealed), b.metadata()))
    assert tus.patch(url, 0, b.sealed[:500]).status_code == 204
    again = tus.patch(url, 0, b.sealed[:500])  # the kit did not see the answer and sends the chunk again
    assert again.status_code == 409 and again.headers["Upload-Offset"] == "500"
    offset = int(tus.head(url).headers["Upload-Offset"])
    r = tus.patch(url, offset, b.sealed[offset:])
    assert r.headers["Capturekit-Status"] == "received"
    final_again = tus.patch(url, len(b.sealed), b"")  # the last answer lost too: ask again, same confirmation
    assert final_again.status_code == 204 and final_again.headers["Capturekit-Sha256"] == b.sha256


def test_termination_removes_an_incomplete_upload_and_its_chunks(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    url = tus.url(tus.create(len(b.sealed), b.metadata()))
    tus.patch(url, 0, b.sealed[:700])
    upload_id = url.rsplit("/", 1)[1]
    with centre.centre.engine.connect() as conn:
        keys = [r.object_key for r in conn.execute(select(upload_chunks).where(upload_chunks.c.upload_id == upload_id))]
    assert keys and all(centre.centre.storage.exists(k) for k in keys)
    assert tus.delete(url).status_code == 204
    assert tus.head(url).status_code == 404
    assert not any(centre.centre.storage.exists(k) for k in keys)
    done = tus.upload(b)
    assert tus.delete(tus.base + "/api/v1/uploads/" + centre.holds(b.capture_id).upload_id).status_code == 403
    assert done.headers["Capturekit-Status"] == "received"


def _rows(centre, capture_id: str) -> tuple[int, int]:
    with centre.centre.engine.connect() as conn:
        return (len(conn.execute(select(uploads).where(uploads.c.capture_id == capture_id)).all()),
                len(conn.execute(select(bundles).where(bundles.c.capture_id == capture_id)).all()))


def test_creation_with_upload_confirms_in_one_request(centre, kit):
    """tus creation-with-upload: every byte in the POST; its 201 is the confirmation (verified, durable)."""
    name, token = kit
    b = make_bundle(centre.sealing_line, name, photo_size=(800, 600))
    tus = Tus(centre.url, token)
    r = tus.create(len(b.sealed), b.metadata(), body=b.sealed)
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Offset"] == str(len(b.sealed))
    assert r.headers["Capturekit-Capture-Id"] == b.capture_id and r.headers["Capturekit-Sha256"] == b.sha256
    assert r.headers["Capturekit-Status"] == "received"
    head = tus.head(tus.url(r))
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(b.sealed))
    row = centre.holds(b.capture_id)
    assert row.status == "stored"
    assert hashlib.sha256(centre.centre.storage.get(row.object_key)).hexdigest() == b.sha256
    assert _rows(centre, b.capture_id) == (1, 1)
    # the same bytes again, in a creation request: "already have it", no second upload, no copy
    again = tus.create(len(b.sealed), b.metadata(), body=b.sealed)
    assert again.status_code == 201 and again.headers["Capturekit-Sha256"] == b.sha256
    assert again.headers["Location"] == r.headers["Location"]
    assert _rows(centre, b.capture_id) == (1, 1)


def test_creation_with_part_of_the_upload_continues_by_patch(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name, photo_size=(800, 600))
    tus = Tus(centre.url, token)
    half = len(b.sealed) // 2
    r = tus.create(len(b.sealed), b.metadata(), body=b.sealed[:half])
    assert r.status_code == 201 and r.headers["Upload-Offset"] == str(half)
    assert "Capturekit-Status" not in r.headers and centre.holds(b.capture_id) is None
    p = tus.patch(tus.url(r), half, b.sealed[half:])
    assert p.status_code == 204 and p.headers["Capturekit-Sha256"] == b.sha256
    assert centre.holds(b.capture_id).status == "stored"


def test_creation_with_a_wrong_body_keeps_nothing(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    foreign = make_bundle(centre.sealing_line, "kit-someone-else")
    tus = Tus(centre.url, token)
    damaged = bytearray(b.sealed)
    damaged[-5] ^= 1
    r = tus.create(len(b.sealed), b.metadata(), body=bytes(damaged))
    assert r.status_code == 460 and r.json()["error"] == "checksum_mismatch"
    assert _rows(centre, b.capture_id) == (0, 0)
    st = centre.centre.storage
    if hasattr(st, "root"):  # the body went into a temporary file as it came: gone with the refusal
        assert not [p for p in st.root.rglob(f".tmp-*{b.capture_id}*")]
    assert _objects_of(st, "bundles", b.capture_id) == 0
    bad_sum = "sha256 " + base64.b64encode(hashlib.sha256(b"else").digest()).decode()
    r = tus.create(len(b.sealed), b.metadata(), body=b.sealed, **{"Upload-Checksum": bad_sum})
    assert r.status_code == 460 and _rows(centre, b.capture_id) == (0, 0)
    r = tus.create(len(b.sealed), b.metadata(), body=b.sealed + b"x")
    assert r.status_code == 413 and r.json()["error"] == "past_upload_length"
    r = tus.create(len(b.sealed), b.metadata(), body=b.sealed, **{"Content-Type": "application/octet-stream"})
    assert r.status_code == 415 and r.json()["error"] == "bad_content_type"
    assert _rows(centre, b.capture_id) == (0, 0)
    r = tus.create(len(foreign.sealed), foreign.metadata(), body=foreign.sealed)  # another kit's capture
    assert r.status_code == 403 and r.json()["error"] == "not_your_capture"
    assert _rows(centre, foreign.capture_id) == (0, 0)
    r = tus.create(len(b.sealed), b.metadata(), body=b.sealed)  # the right bytes still go in, whole
    assert r.status_code == 201 and r.headers["Capturekit-Sha256"] == b.sha256


def test_creation_with_other_content_under_a_held_id_is_a_conflict(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    tus = Tus(centre.url, token)
    assert tus.create(len(b.sealed), b.metadata(), body=b.sealed).status_code == 201
    other = make_bundle(centre.sealing_line, name, journal=b.capture_id.split("-")[1], photo_size=(700, 500))
    assert other.capture_id == b.capture_id and other.sha256 != b.sha256
    r = tus.create(len(other.sealed), other.metadata(), body=other.sealed)
    assert r.status_code == 409 and r.json()["error"] == "capture_conflict"
    assert centre.holds(b.capture_id).sha256 == b.sha256
    with centre.centre.engine.connect() as conn:
        flagged = conn.execute(select(conflicts).where(conflicts.c.capture_id == b.capture_id)).all()
    assert [f.offered_sha256 for f in flagged] == [other.sha256]


def test_bytes_a_whole_upload_could_not_store_are_discarded_whatever_failed(tmp_path):
    """receive_whole drops the received bytes (a temporary file) when it does not store them: a wrong SHA-256,
    or a database that fails before the object is stored; once stored, they are never discarded."""
    import pytest
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from centre.errors import ApiError
    from centre.ingest import receive_whole

    calls: list[str] = []

    def receive(engine, sha: str):
        return receive_whole(engine, 1, "0" * 32, "kit-x-00000000-000001-01", "a" * 64, "{}", "{}", 10, sha,
                             lambda _key: calls.append("store"), lambda: calls.append("discard"))

    broken = create_engine(f"sqlite:///{tmp_path}/no/such/dir/centre.sqlite")
    with pytest.raises(OperationalError):
        receive(broken, "a" * 64)
    assert calls == ["discard"]
    calls.clear()
    with pytest.raises(ApiError) as err:
        receive(broken, "b" * 64)
    assert err.value.status == 460 and calls == ["discard"]
