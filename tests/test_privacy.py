"""A stolen kit reveals nothing: every byte the kit wrote is searched for what it must never hold; the centre's
key opens every bundle to exactly the camera's photos; tampered bundles are refused whole; purge after confirmation."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHEAP, STUDENTS, card, opened, sealing_line
from invariants import check

from appliance import config as config_mod
from appliance.bundle import MAGIC, read_header
from appliance.simulate import make_students
from centre.sealing import BundleRefused, KeyRing, keygen, open_bundle, open_bundle_file

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = re.compile(rb"\xff\xd8\xff.{0,16}(JFIF|Exif|\xff\xdb)", re.DOTALL)  # a JPEG's start, not 3 random bytes


def secrets_of(n: int, seed: int) -> list[bytes]:
    """What the simulated school knows about its students, which the kit must never write down."""
    out = []
    for s in make_students(n, seed):
        if s.id_number:
            out += [s.id_number.encode(), s.id_number[6:14].encode()]  # the number, and the birth date in it
        if s.name:
            out.append(s.name.encode())
        if s.collection_code:
            out.append(s.collection_code.encode())
        if s.card_uid:
            out.append(s.card_uid.encode())
    return out


def test_a_classroom_with_every_source_leaves_nothing_readable_on_the_kit(tmp_path):
    n, seed = 40, 12  # a seed whose script has every source, a typed number, a visitor and a QC retake
    data, tmp = tmp_path / "kit", tmp_path / "tmp"
    tmp.mkdir()
    cfg = tmp_path / "kit.toml"
    cfg.write_text(f'kit_id = "kit-priv"\n[privacy]\nargon2_opslimit = {CHEAP[0]}\n'
                   f"argon2_memlimit_kib = {CHEAP[1] // 1024}\n")
    env = {**os.environ, "CAPTUREKIT_CONFIG": str(cfg), "TMPDIR": str(tmp)}
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "-v", "simulate", "-n", str(n), "--seed", str(seed),
                          "--size", "640x480", "--qc", "sim", "--data-dir", str(data), "--json"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["mismatches"] == []
    assert set(summary["reads"]) == {"sam", "sim", "qr_camera", "makeup_qr", "manual"}  # every identity source
    # everything the kit wrote: journal (+WAL), spool, rejects, roster, logs (stderr at DEBUG), temp files
    files = [p for p in [*data.rglob("*"), *tmp.rglob("*")] if p.is_file()]
    assert any(p.name.endswith("-wal") or p.name == "journal.sqlite" for p in files)
    assert any(p.suffix == ".bundle" and "rejects" in p.parts for p in files)
    blobs = {str(p): p.read_bytes() for p in files}
    blobs["the log"] = out.stderr.encode()
    assert "DEBUG" in out.stderr  # the log really is the verbose one
    for secret in secrets_of(n, seed):
        for where, blob in blobs.items():
            assert secret not in blob, f"{secret!r} found in {where}"
    for where, blob in blobs.items():
        assert PNG not in blob and not JPEG.search(blob), f"an image in {where}"
        assert b"capturekit-sim shot=" not in blob, f"a photo's own text in {where}"
    # ... while the centre, holding the key, gets everything back (the summary opened every bundle too)
    assert summary["opened"] == summary["frames_stored"] and summary["centre_keys"]
    counts = check(data, Path(summary["centre_keys"]))  # independent reader: each photo is its shot's
    assert counts["bundles"] == summary["bundles"]


def test_every_bundle_opens_to_the_cameras_photo_and_qc_derivative(tmp_path, centre_keys):
    """Real QC (face photos, the diploma derivative) through the real daemon; the simulator's own record of
    what the camera and QC produced is compared with what the centre's key opens."""
    from appliance.simulate import run, sim_config

    base = config_mod.Config()
    cfg = sim_config(dataclasses.replace(
        base, kit_id="kit-open", sealing=dataclasses.replace(base.sealing, public_keys=(sealing_line(centre_keys),)),
        privacy=dataclasses.replace(base.privacy, argon2_opslimit=CHEAP[0], argon2_memlimit_kib=CHEAP[1] // 1024)),
        tmp_path / "kit", (1014, 760))
    import appliance.simulate as sim

    seen = {}
    real_summarise = sim.summarise

    def summarise(room, session, wall, keys=None):
        seen["photos"], seen["derivatives"] = dict(room.produced.photos), dict(room.produced.derivatives)
        return real_summarise(room, session, wall, keys=centre_keys)

    sim.summarise = summarise
    try:
        summary = run(cfg, 12, seed=3, qc="real", sources=False)
    finally:
        sim.summarise = real_summarise
    assert summary["mismatches"] == [] and summary["opened"] == summary["frames_stored"] > 0
    import hashlib

    ring = KeyRing.load(centre_keys)
    outbox = tmp_path / "kit" / "spool" / "outbox"
    derivatives = 0
    for f in sorted(outbox.iterdir()):
        b = open_bundle_file(f, ring)
        assert hashlib.sha256(b.photo).hexdigest() == seen["photos"][(b.header.shot, b.header.frame)]
        want = seen["derivatives"][hashlib.sha256(b.photo).hexdigest()]
        assert (hashlib.sha256(b.derivative).hexdigest() if b.derivative else None) == want
        derivatives += b.derivative is not None
    assert derivatives == summary["derivatives"] > 0


# ---- tampering: refused whole, with a reason, the file kept as it is
@pytest.fixture
def one_bundle(room):
    room.tap(card(STUDENTS[0]))
    room.press()
    (cid,) = room.daemon.spool.bundle_ids()
    return room.daemon.spool.path(cid)


def _refused(path: Path, keys: KeyRing) -> str:
    before = path.read_bytes()
    with pytest.raises(BundleRefused) as exc:
        open_bundle_file(path, keys)
    assert path.read_bytes() == before  # kept for inspection, untouched
    return exc.value.reason


def test_a_bundle_for_another_centre_key_is_refused(one_bundle, tmp_path):
    keygen(tmp_path / "other")
    assert _refused(one_bundle, KeyRing.load(tmp_path / "other")) == "unknown_key"


def test_a_flipped_byte_anywhere_is_refused(one_bundle, centre_keys):
    keys = KeyRing.load(centre_keys)
    raw = one_bundle.read_bytes()
    with open(one_bundle, "rb") as fh:
        _, offset = read_header(fh)
    reasons = set()
    for pos in (3, 10, offset - 20, offset, offset + 40, (offset + len(raw)) // 2, len(raw) - 1):
        bad = bytearray(raw)
        bad[pos] ^= 0x20
        one_bundle.write_bytes(bytes(bad))
        reasons.add(_refused(one_bundle, keys))
    one_bundle.write_bytes(raw)
    assert opened(one_bundle).photo  # the untouched file still opens
    assert reasons <= {"not_a_bundle", "bad_header", "unsupported_format", "sha256_mismatch", "truncated"}
    assert "sha256_mismatch" in reasons and len(reasons) >= 2


def test_a_truncated_bundle_is_refused(one_bundle, centre_keys):
    raw = one_bundle.read_bytes()
    one_bundle.write_bytes(raw[:-100])
    assert _refused(one_bundle, KeyRing.load(centre_keys)) == "truncated"
    one_bundle.write_bytes(raw[:len(MAGIC) + 6])
    assert _refused(one_bundle, KeyRing.load(centre_keys)) == "truncated"


def test_a_header_that_does_not_match_is_refused(one_bundle, centre_keys):
    keys = KeyRing.load(centre_keys)
    with open(one_bundle, "rb") as fh:
        header, offset = read_header(fh)
    sealed = one_bundle.read_bytes()[offset:]
    d = header.to_dict()
    with pytest.raises(BundleRefused, match="sha256_mismatch"):
        open_bundle({**d, "sealed_sha256": "0" * 64}, sealed, keys)
    relabelled = {**d, "shot": header.shot + 1,
                  "capture_id": f"{header.kit_id}-{header.journal_id}-{header.shot + 1:06d}-{header.frame:02d}"}
    with pytest.raises(BundleRefused, match="header_mismatch"):  # the sealed record says which shot it is
        open_bundle(relabelled, sealed, keys)


# ---- purge: only what the centre confirmed, after the retention
def _confirm(journal, cid: str, at: str) -> None:
    """What the sync daemon writes when the centre confirms (its only rows in the journal)."""
    with journal.db.conn:
        journal.db.execute("INSERT INTO uploads(capture_id, status, sha256, confirmed_at)"
                           " VALUES (?, 'confirmed', ?, ?) ON CONFLICT(capture_id)"
                           " DO UPDATE SET status='confirmed', confirmed_at=excluded.confirmed_at", [cid, "x" * 64, at])


def test_purge_deletes_only_confirmed_bundles_after_the_end_of_the_day(room):
    room.tap(card(STUDENTS[0]))
    room.press()
    room.wait(10)
    room.tap(card(STUDENTS[1]))
    room.qc.fail_next = ("blurred",)
    room.press()  # a reject for shot 2
    room.wait(3)
    room.press()
    room.wait(10)
    room.tap(card(STUDENTS[2]))
    room.press()
    d = room.daemon
    first, second, third = d.spool.bundle_ids()
    reject = next(d.spool.rejects.iterdir())
    _confirm(d.journal, first, "2000-01-01T10:00:00.000+08:00")  # confirmed long ago
    _confirm(d.journal, second, "2000-01-01T10:00:00.000+08:00")
    _confirm(d.journal, third, d.journal.wall())  # confirmed today: kept until the end of the day
    d.journal.db.execute("INSERT INTO uploads(capture_id, status, sha256) VALUES ('x', 'pending', 'y')")
    assert sorted(d.purge()) == sorted([first, second, reject.name.removesuffix(".bundle")])
    assert d.spool.bundle_ids() == [third] and not reject.exists()
    assert d.purge() == []  # idempotent
    assert d.journal.db.execute("SELECT COUNT(*) FROM purged").fetchone() == (3,)


def test_capturekit_purge_on_demand_never_touches_unconfirmed_bundles(tmp_path):
    from peers.kitproc import Daemon, cli, write_config

    from appliance.clock import SystemClock
    from appliance.journal import Journal

    data = tmp_path / "data"
    cfg = write_config(tmp_path / "kit.toml", data, extra="[purge]\nend_of_day = false\n")
    env = {**os.environ, "CAPTUREKIT_CONFIG": str(cfg)}
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "simulate", "-n", "6", "--size", "320x240", "--qc",
                          "sim", "--readers", "sim", "--data-dir", str(data)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    ids = sorted(p.name.removesuffix(".bundle") for p in (data / "spool" / "outbox").iterdir())
    j = Journal(data / "journal.sqlite", "kit-proc", SystemClock().wall, create=False)
    for cid in ids[:2]:
        _confirm(j, cid, "2000-01-01T10:00:00.000+08:00")
    j.close()
    done = cli(cfg, "purge")
    assert done.returncode == 0 and "purged 2" in done.stdout, done.stderr
    left = sorted(p.name.removesuffix(".bundle") for p in (data / "spool" / "outbox").iterdir())
    assert left == ids[2:]
    # with the daemon running, the command goes through it
    j = Journal(data / "journal.sqlite", "kit-proc", SystemClock().wall, create=False)
    _confirm(j, ids[2], "2000-01-01T10:00:00.000+08:00")
    j.close()
    daemon = Daemon(cfg).wait_ready()
    try:
        done = cli(cfg, "purge")
        assert done.returncode == 0 and "purged" in done.stdout, done.stderr
    finally:
        daemon.stop()
    assert ids[2] not in {p.name.removesuffix(".bundle") for p in (data / "spool" / "outbox").iterdir()}
