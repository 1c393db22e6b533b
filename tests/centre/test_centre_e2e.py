"""The operator's path without the web: school, roster, kit, assignment → the kit's roster → real captures from
the real capture daemon → progress → the print bureau's delivery folder, every photo checked against the kit."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import secrets
from pathlib import Path

from centrekit import Tus, make_bundle
from PIL import Image

from appliance import idnumber
from appliance.bundle import read_header
from appliance.identity import Kind, Source, make
from appliance.roster import Roster, install_protected
from centre.export import original_name
from centre.sealing import KeyRing, open_bundle_file

STUDENTS = [idnumber.make(f"310104200309{i + 1:02d}{i:03d}") for i in range(4)]
CODE = "Qm9v/ZX+a1==ab"  # a collection code with '/', '+' and '='


def card(number: str):
    return make(Kind.ID_NUMBER, number, Source.SIM, "test-reader")


def _upload_outbox(centre, token: str, outbox: Path) -> list[str]:
    tus, ids = Tus(centre.url, token), []
    for path in sorted(outbox.glob("*.bundle")):
        data = path.read_bytes()
        header, offset = read_header(io.BytesIO(data))
        sealed = data[offset:]
        r = tus.create(len(sealed), {"capture_id": header.capture_id, "sha256": header.sealed_sha256,
                                     "header": json.dumps(header.to_dict())})
        r = tus.patch(tus.url(r), 0, sealed)
        assert r.headers["Capturekit-Status"] == "received", r.text
        assert r.headers["Capturekit-Sha256"] == header.sealed_sha256
        ids.append(header.capture_id)
    return ids


def test_roster_down_captures_up_progress_and_export(centre, kit_config, tmp_path):
    from appliance.simulate import Classroom

    school, site, kit_name = f"S{secrets.token_hex(3)}", f"T{secrets.token_hex(3)}", f"kit{secrets.token_hex(3)}"
    cfg = dataclasses.replace(kit_config, kit_id=kit_name,  # a frame size the real QC takes (test_privacy's)
                              camera=dataclasses.replace(kit_config.camera, width=1014, height=760))
    centre.cli("school", "add", school, "--name", "示范大学", "--argon2-opslimit", "1", "--argon2-memlimit-kib", "8")
    centre.cli("school", "add", site, "--name", "Joint site", "--parent", school)
    roster = tmp_path / "roster.csv"
    rows = [f"{n},Student {i},计算机{i % 2 + 1}班,,\n" for i, n in enumerate(STUDENTS[:4])]
    rows.append(f",Code Student,计算机1班,{CODE},{site}\n")
    roster.write_text("id_number,name,class,collection_code,school\n" + "".join(rows), encoding="utf-8")
    out = centre.cli("roster", "load", school, str(roster)).stdout
    assert "5 students" in out and f"{site} 1" in out
    token = centre.cli("add-kit", kit_name).stdout.splitlines()[1].strip()
    centre.cli("assign", kit_name, school)

    tus = Tus(centre.url, token)
    r = tus.s.get(f"{centre.url}/api/v1/roster", timeout=10)
    assert r.status_code == 200 and r.headers["ETag"]
    doc = r.json()
    assert len(doc["students"]) == 5 and {s["school"] for s in doc["students"]} == {school, site}
    assert all(len(s["key"]) == 64 for s in doc["students"])  # protected only: no clear key goes to a kit
    assert STUDENTS[0] not in r.text and CODE not in r.text and "Student" not in r.text
    assert tus.s.get(f"{centre.url}/api/v1/roster", headers={"If-None-Match": r.headers["ETag"]},
                     timeout=10).status_code == 304
    cfg.roster_path.unlink()
    install_protected(doc, cfg.roster_path)  # what the sync daemon does with it
    kit_roster = Roster(cfg.roster_path)
    ident = make(Kind.COLLECTION_CODE, CODE, "qr_scanner")
    assert kit_roster.lookup(kit_roster.key().identity(ident)).school == site  # the kit's own code agrees
    kit_roster.close()

    room = Classroom(cfg, qc="real")  # the real QC cuts the 480×640 diploma derivative
    room.daemon.start()
    try:
        for n in STUDENTS[:3]:
            room.tap(card(n))
            room.wait(4)
            room.press()
            room.wait(3)
        room.tap(card(STUDENTS[0]))  # a retake of the first student's record, in the same session
        room.wait(4)
        room.press()
        room.wait(3)
    finally:
        room.daemon.close()
    outbox = cfg.data_path / "spool" / "outbox"
    ids = _upload_outbox(centre, token, outbox)
    assert len(ids) == 4
    code_bundle = make_bundle(centre.sealing_line, kit_name, 99, kind="collection_code", key=CODE)
    tus.upload(code_bundle)

    progress = centre.cli("progress", school).stdout
    lines = {tuple(line.split()[:2]): line.split() for line in progress.splitlines()[1:]}
    assert lines[(school, "计算机1班")][2:6] == ["2", "2", "0", "1"]  # students, photographed, missing, retakes
    assert lines[(school, "计算机2班")][2:5] == ["2", "1", "1"]
    assert lines[(site, "计算机1班")][2:5] == ["1", "1", "0"]

    dest = tmp_path / "delivery"
    done = centre.cli("export", school, str(dest), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 photos of 5 students, 1 missing" in done.stdout
    with open(dest / f"{school}.csv", encoding="utf-8-sig", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 5
    recorded = {}
    keys = KeyRing.load(centre.keys_dir)

    def opened(path: Path):
        return open_bundle_file(path, keys)

    for cid in ids:  # what the kit sealed: the derivative's SHA-256 in its own record
        rec = opened(outbox / f"{cid}.bundle").record
        recorded[cid] = rec["derivative"]["sha256"]
    for row in table:
        if row["status"] == "missing":
            assert row["id_number"] == STUDENTS[3] and not row["file"]
            continue
        path = dest / row["file"]
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["derivative_sha256"]
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.size == (480, 640)
        key = row["collection_code"] or row["id_number"]
        assert original_name(path.name) == key and path.parent.name == row["class"]
        if row["collection_code"]:
            assert path.name == "Qm9v%2FZX%2Ba1%3D%3Dab.jpg" and path.parts[-3] == site
            assert row["capture_id"] == code_bundle.capture_id
        else:
            assert recorded[row["capture_id"]] == row["derivative_sha256"]
    first = next(r for r in table if r["id_number"] == STUDENTS[0])
    frames = sorted(c for c in ids if opened(outbox / f"{c}.bundle").record["identity"]["key"] == STUDENTS[0])
    assert first["capture_id"] == frames[-1]  # the retake, which supersedes the first frame
    assert not (tmp_path / "delivery.partial").exists() and len(list(tmp_path.iterdir())) >= 2
