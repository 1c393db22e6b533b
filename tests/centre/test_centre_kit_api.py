"""The rest of the kit API: a stock tus client, keys and roster down, heartbeats, the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import requests
from centrekit import make_bundle
from sqlalchemy import select

from centre.db import heartbeats, kits


def test_stock_tuspy_client_uploads_a_bundle(centre, kit):
    from tusclient import client

    name, token = kit
    b = make_bundle(centre.sealing_line, name, photo_size=(900, 700))
    tus = client.TusClient(f"{centre.url}/api/v1/uploads", headers={"Authorization": f"Bearer {token}"})
    import io

    up = tus.uploader(file_stream=io.BytesIO(b.sealed), chunk_size=20_000, upload_checksum=True,
                      metadata={"capture_id": b.capture_id, "sha256": b.sha256,
                                "header": json.dumps(b.header.to_dict())})
    up.upload()
    assert up.offset == len(b.sealed)
    row = centre.holds(b.capture_id)
    assert row.status == "stored" and row.sha256 == b.sha256


def test_keys_down(centre, kit):
    _, token = kit
    r = requests.get(f"{centre.url}/api/v1/keys", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["sealing_public_keys"][0] == centre.sealing_line
    assert r.json()["makeup_public_keys"] == []


def test_roster_needs_an_assignment_and_follows_reloads(centre, kit, tmp_path):
    from centre.rosters import add_school, assign, load_roster

    name, token = kit
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.get(f"{centre.url}/api/v1/roster", headers=auth, timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "no_roster"
    code = f"R{secrets.token_hex(3)}"
    add_school(centre.centre.engine, code, "A school", opslimit=1, memlimit=8192)
    csv = tmp_path / "r.csv"
    csv.write_text("collection_code,class\nAAAA+/1,1\nBBBB+/2,1\n")
    load_roster(centre.centre.engine, code, csv)
    assign(centre.centre.engine, name, code)
    first = requests.get(f"{centre.url}/api/v1/roster", headers=auth, timeout=10)
    assert first.status_code == 200 and len(first.json()["students"]) == 2
    same = requests.get(f"{centre.url}/api/v1/roster", headers={**auth, "If-None-Match": first.headers["ETag"]},
                        timeout=10)
    assert same.status_code == 304 and same.headers["ETag"] == first.headers["ETag"]
    csv.write_text("collection_code,class\nAAAA+/1,1\nBBBB+/2,1\nCCCC+/3,2\n")
    load_roster(centre.centre.engine, code, csv)
    changed = requests.get(f"{centre.url}/api/v1/roster", headers={**auth, "If-None-Match": first.headers["ETag"]},
                           timeout=10)
    assert changed.status_code == 200 and len(changed.json()["students"]) == 3
    assert changed.headers["ETag"] != first.headers["ETag"]


def test_heartbeat_is_recorded_and_answers_the_time(centre, kit):
    name, token = kit
    beat = {"kit_id": name, "software_version": "0.1.0", "kit_time": "2026-11-25T09:00:00.000+08:00",
            "disk_free_mb": 20480, "cpu_temp_c": 51.5, "throttled": 0,
            "backlog": {"bundles": 3, "bytes": 15_000_000, "oldest_pending_age_s": 42.0},
            "last_shot_at": "2026-11-25T08:59:00.000+08:00", "clock_offset_s": -0.25,
            "camera_failures_since_start": 1}
    before = dt.datetime.now(dt.UTC)
    r = requests.post(f"{centre.url}/api/v1/heartbeat", json=beat, headers={"Authorization": f"Bearer {token}"},
                      timeout=10)
    assert r.status_code == 200 and r.json()["received"] is True
    server_time = dt.datetime.fromisoformat(r.json()["server_time"])
    assert before - dt.timedelta(seconds=1) <= server_time <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with centre.centre.engine.connect() as conn:
        k = conn.execute(select(kits).where(kits.c.name == name)).one()
        hist = conn.execute(select(heartbeats).where(heartbeats.c.kit_id == k.id)).all()
    assert json.loads(k.last_heartbeat)["backlog"]["bundles"] == 3 and k.last_seen_at is not None
    assert len(hist) == 1 and hist[0].kit_time == beat["kit_time"]
    other = requests.post(f"{centre.url}/api/v1/heartbeat", json={**beat, "kit_id": "someone-else"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert other.status_code == 403
    bad = requests.post(f"{centre.url}/api/v1/heartbeat", json={**beat, "disk_free_mb": "lots"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"


def test_openapi_document_describes_the_kit_api(centre):
    doc = requests.get(f"{centre.url}/openapi.json", timeout=10).json()
    paths = doc["paths"]
    assert set(paths) >= {"/api/v1/uploads", "/api/v1/uploads/{upload_id}", "/api/v1/captures/{capture_id}",
                          "/api/v1/roster", "/api/v1/keys", "/api/v1/heartbeat"}
    assert set(paths["/api/v1/uploads/{upload_id}"]) == {"head", "patch", "delete"}
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
