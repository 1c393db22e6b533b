"""The sync daemon against a real centre on loopback: every capture exactly once, confirmed only when the centre
names it, through every network fault the proxy can make; roster down, heartbeats up, status, purge."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STUDENTS, card
from peers import faultproxy as fp
from peers.centre import CentreServer

from appliance.simulate import run, sim_config
from appliance.status import status_report
from sync.daemon import SyncDaemon


@pytest.fixture(scope="module")
def centre(tmp_path_factory, centre_keys):
    with CentreServer(tmp_path_factory.mktemp("centre"), keys_dir=centre_keys) as c:
        yield c


def classroom(kit_config, n: int = 12, seed: int = 2) -> dataclasses.dataclass:
    """A simulated classroom on the kit (simulated reader, scripted QC): a backlog of real sealed bundles."""
    cfg = sim_config(kit_config, kit_config.data_path, (640, 480))
    summary = run(cfg, n, seed=seed, qc="sim", sources=False)
    assert not summary["mismatches"]
    return cfg


def syncing(cfg, centre: CentreServer, url: str | None = None, **sync):
    name = f"{cfg.kit_id}"
    token = centre.add_kit(name) if not getattr(centre, "_tokens", {}).get(name) else centre._tokens[name]
    centre.__dict__.setdefault("_tokens", {})[name] = token
    s = dataclasses.replace(cfg.sync, centre_url=url or centre.url, token=token, rescan_s=3600, heartbeat_s=3600,
                            roster_s=3600, backoff_initial_s=0.05, backoff_max_s=0.5, inactivity_timeout_s=3,
                            connect_timeout_s=2, **sync)
    return dataclasses.replace(cfg, sync=s)


def uploads(cfg) -> dict[str, str]:
    db = sqlite3.connect(f"file:{cfg.data_path / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT capture_id, status FROM uploads"))
    finally:
        db.close()


def outbox(cfg) -> set[str]:
    return {p.name.removesuffix(".bundle") for p in (cfg.data_path / "spool" / "outbox").glob("*.bundle")}


def assert_exactly_once(cfg, centre: CentreServer) -> None:
    """Every bundle of the kit is confirmed in its journal and held once, with the kit's SHA-256, by the centre."""
    from sqlalchemy import func, select

    from centre.db import bundles

    db = sqlite3.connect(f"file:{cfg.data_path / 'journal.sqlite'}?mode=ro", uri=True)
    rows = dict(db.execute("SELECT capture_id, sha256 FROM frames WHERE dest = 'outbox' AND status = 'stored'"))
    db.close()
    assert rows and set(rows) == outbox(cfg)
    status = uploads(cfg)
    assert all(status.get(cid) == "confirmed" for cid in rows), {c: status.get(c) for c in rows}
    with centre.centre.engine.connect() as conn:
        for cid, sha in rows.items():
            n = conn.execute(select(func.count()).select_from(bundles).where(bundles.c.capture_id == cid)).scalar()
            held = centre.holds(cid)
            assert n == 1 and held.sha256 == sha and held.status == "stored", cid


def drain(d: SyncDaemon, limit: float = 60.0) -> None:
    d.settle(limit)


@contextlib.contextmanager
def running(cfg) -> Iterator[SyncDaemon]:
    """A started sync daemon, closed afterwards (its lock, journal, watcher and connections)."""
    d = SyncDaemon(cfg)
    d.start()
    try:
        yield d
    finally:
        d.close()


def synced(cfg, limit: float = 60.0) -> SyncDaemon:
    """Run a sync daemon until nothing is pending; the closed daemon (for its counters)."""
    with running(cfg) as d:
        drain(d, limit)
    return d


def test_a_backlog_reaches_the_centre_exactly_once(kit_config, centre):
    cfg = syncing(classroom(kit_config), centre)
    with running(cfg) as d:
        drain(d)
        assert d.uploaded == len(outbox(cfg))
        assert_exactly_once(cfg, centre)
        d.scan()
        assert d._pending == []  # nothing is sent twice
    # a new sync daemon (a restart) finds nothing to do, and a journal row lost to a crash is re-confirmed
    # from the centre's own record without a second copy ("already have it")
    cid = sorted(outbox(cfg))[0]
    db = sqlite3.connect(cfg.data_path / "journal.sqlite")
    with db:
        db.execute("DELETE FROM uploads WHERE capture_id = ?", [cid])
    db.close()
    assert synced(cfg).uploaded == 1
    assert_exactly_once(cfg, centre)
    report = status_report(cfg)
    assert report["sync"]["backlog"] == 0 and report["sync"]["last_confirmed"] and report["sync"]["last_contact"]


def test_a_new_bundle_is_sent_at_once_without_waiting_for_the_rescan(kit_config, centre, room):
    cfg = syncing(room.cfg, centre)
    d = SyncDaemon(cfg)
    d.start()
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        room.tap(card(STUDENTS[0]))
        room.press()
        (cid,) = outbox(cfg)
        deadline = time.monotonic() + 20
        while uploads(cfg).get(cid) != "confirmed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert uploads(cfg).get(cid) == "confirmed"  # inotify woke it: the rescan is an hour away
    finally:
        d.stop()
        thread.join(10)
        d.close()


BODIES = ("POST", "PATCH")  # upload bytes go in the creation request (one chunk) or in PATCHes (several)


@pytest.mark.parametrize("chunk", [8 << 20, 16 << 10], ids=["with-creation", "chunked"])
@pytest.mark.parametrize("rules", [
    pytest.param([fp.status(500, method=BODIES, every=2)], id="500s"),
    pytest.param([fp.status(503, retry_after=0.2, probability=0.4)], id="503-retry-after"),
    pytest.param([fp.status(429, retry_after=0.1, method="POST", every=2)], id="429"),
    pytest.param([fp.cut_request_body(10_000, method=BODIES, every=2)], id="cut-mid-body"),
    pytest.param([fp.cut_response(method=BODIES, every=3)], id="cut-response"),
    pytest.param([fp.stall(method=BODIES, times=2)], id="stall"),
    pytest.param([fp.slow(2_000_000)], id="slow-link"),
])
def test_every_network_fault_still_delivers_exactly_once(kit_config, centre, rules, chunk):
    cfg = classroom(kit_config, n=6)
    with fp.FaultProxy(("127.0.0.1", centre.port), seed=7) as proxy:
        cfg = syncing(cfg, centre, url=proxy.url, chunk_bytes=chunk)
        proxy.set(*[fp.Rule.from_dict(r.to_dict()) for r in rules])  # fresh counters: the params are shared
        synced(cfg, 120)
        faults = proxy.stats().actions
        patches = proxy.stats().count("PATCH", "/api/v1/uploads/")
    assert_exactly_once(cfg, centre)
    assert sum(v for k, v in faults.items() if k != "pass") > 0, faults  # the faults really happened
    assert (patches > 0) == (chunk < 8 << 20)  # one request per bundle when it fits a chunk


def test_a_captive_portal_is_never_taken_for_the_centre(kit_config, centre):
    cfg = classroom(kit_config, n=4)
    with fp.FaultProxy(("127.0.0.1", centre.port)) as proxy:
        cfg = syncing(cfg, centre, url=proxy.url)
        proxy.set(fp.captive_portal())
        with running(cfg) as d:
            deadline = time.monotonic() + 5
            d.scan()
            while time.monotonic() < deadline:
                d.step()
            assert set(uploads(cfg).values()) <= {"pending", "uploading"}  # nothing confirmed, nothing given up
            assert proxy.stats().actions.get("captive_portal", 0) > 2
            assert "captive portal" in (d.state.get("last_error") or {}).get("error", "")
            proxy.clear()  # the crew logs the kit in to the campus Wi-Fi
            drain(d)
    assert_exactly_once(cfg, centre)


def test_an_upload_begun_on_one_centre_process_resumes_on_another(kit_config, centre):
    """Two centre processes on the same database and store; the link to the first is cut mid-upload."""
    cfg = classroom(kit_config, n=3)
    other = centre.second().start()
    try:
        with fp.FaultProxy(("127.0.0.1", centre.port)) as proxy:
            # one upload in flight: the one whose answer is lost is the one that moves to the other process
            cfg = syncing(cfg, centre, url=proxy.url, chunk_bytes=16384, parallel_uploads=1)
            proxy.set(fp.cut_response(method="PATCH", path="/api/v1/uploads/", times=1))
            with running(cfg) as d:
                d.scan()
                first = d._pending[0]
                while d.step() != "upload":  # the upload is created on the first process; a PATCH answer is lost
                    pass
                assert d.state.upload_url(first) and uploads(cfg)[first] == "pending"
                d.centre.base = d.centre.origin = other.url  # the kit now reaches the second process
                drain(d)
        assert_exactly_once(cfg, centre)
    finally:
        other.stop()


def test_unopenable_bundles_are_confirmed_and_conflicting_ones_kept_and_not_retried(kit_config, centre, tmp_path):
    from appliance.bundle import CentreKey
    from appliance.spool import Spool
    from centre.sealing import keygen

    cfg = classroom(kit_config, n=3)
    keygen(tmp_path / "stranger")  # a key the centre does not hold
    stranger = CentreKey.parse(next((tmp_path / "stranger").glob("*.pub")).read_text())
    sp = Spool(cfg.data_path / "spool", stranger)
    journal_id = sorted(outbox(cfg))[0].split("-")[-3]
    ident = {"kit_id": cfg.kit_id, "journal_id": journal_id, "shot": 900, "frame": 1}
    sp.write_bundle(f"{cfg.kit_id}-{journal_id}-000900-01", ident, {"capture_id": "x"}, b"\xff\xd8 photo")
    cfg = syncing(cfg, centre)
    synced(cfg)
    status = uploads(cfg)
    # sealed to a key the centre lacks: the centre holds the very bytes (refused, kept with its reason, opened
    # again once the key is installed); nothing the kit could send would differ, so for the kit it is confirmed
    stranger_cid = f"{cfg.kit_id}-{journal_id}-000900-01"
    assert status[stranger_cid] == "confirmed"
    row = centre.holds(stranger_cid)
    assert row.status == "refused" and row.reason == "unknown_key"
    # the same capture id with other content: a conflict, flagged at the centre, never overwritten
    cid = sorted(c for c, s in status.items() if s == "confirmed")[0]
    held = centre.holds(cid).sha256
    path = cfg.data_path / "spool" / "outbox" / f"{cid}.bundle"
    sp2 = Spool(cfg.data_path / "spool-other", CentreKey.parse(cfg.sealing.public_keys[0]))
    shot, frame = int(cid.split("-")[-2]), int(cid.split("-")[-1])
    w = sp2.write_bundle(cid, {"kit_id": cfg.kit_id, "journal_id": journal_id, "shot": shot, "frame": frame},
                         {"capture_id": cid}, b"\xff\xd8 another photo")
    path.write_bytes(w.path.read_bytes())
    db = sqlite3.connect(cfg.data_path / "journal.sqlite")
    with db:
        db.execute("DELETE FROM uploads WHERE capture_id = ?", [cid])
    db.close()
    synced(cfg)
    assert uploads(cfg)[cid] == "conflict" and centre.holds(cid).sha256 == held


@pytest.mark.parametrize("chunk", [8 << 20, 16 << 10], ids=["with-creation", "chunked"])
def test_a_bundle_damaged_on_the_kit_is_never_stored_and_is_marked_damaged(kit_config, centre, chunk):
    """The centre checks every upload against the bundle's SHA-256; told "mismatch", the kit hashes its copy."""
    cfg = classroom(kit_config, n=3)
    cid = sorted(outbox(cfg))[0]
    path = cfg.data_path / "spool" / "outbox" / f"{cid}.bundle"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 1
    path.write_bytes(bytes(raw))
    synced(syncing(cfg, centre, chunk_bytes=chunk))
    assert uploads(cfg)[cid] == "damaged" and centre.holds(cid) is None


def test_heartbeats_up_and_the_roster_down(kit_config, centre, tmp_path):
    from sqlalchemy import select

    from appliance.roster import Roster
    from centre.db import kits

    cfg = syncing(classroom(kit_config, n=2), centre)
    school = f"9{time.monotonic_ns() % 10**6:06d}"
    csv = tmp_path / "school.csv"
    csv.write_text("id_number,name,class\n" + "".join(f"{n},学生{i},3班\n" for i, n in enumerate(STUDENTS[:7])))
    centre.cli("school", "add", school, "--name", "测试学校", "--argon2-opslimit", "1", "--argon2-memlimit-kib", "8")
    centre.cli("roster", "load", school, str(csv))
    centre.cli("assign", cfg.kit_id, school, "--replace")
    with running(cfg) as d:
        d.heartbeat()
        d.roster()
        etag = d.state.get("roster_etag")
        d.roster()  # unchanged: If-None-Match, 304
        assert d.state.get("roster_etag") == etag
        assert abs(d.state.get("clock_offset_s")) < 2
    roster = Roster(cfg.roster_path)
    assert roster.count() == 7 and roster.lookup(roster.key().identity(card(STUDENTS[3]))) is not None
    with centre.centre.engine.connect() as conn:
        row = conn.execute(select(kits).where(kits.c.name == cfg.kit_id)).first()
    assert row.last_seen_at is not None
    beat = json.loads(row.last_heartbeat) if isinstance(row.last_heartbeat, str) else row.last_heartbeat
    assert beat["backlog"]["bundles"] == 2 and beat["software_version"]


def test_a_revoked_kit_stops_and_says_why(kit_config, centre):
    cfg = syncing(classroom(dataclasses.replace(kit_config, kit_id="kit-revoked"), n=2), centre)
    centre.cli("revoke-kit", cfg.kit_id)
    with running(cfg) as d:
        while d.step() != "upload" or d._inflight:  # every upload in flight answered
            pass
        assert "401" in d.state.get("last_error")["error"] and set(uploads(cfg).values()) == {"pending"}


def test_confirmed_bundles_are_purged_at_the_end_of_the_day_and_only_they(kit_config, centre, room):
    cfg = syncing(room.cfg, centre)
    room.tap(card(STUDENTS[0]))
    room.press()
    room.wait(10)
    room.tap(card(STUDENTS[1]))
    room.press()
    synced(cfg)
    confirmed = outbox(cfg)
    room.wait(10)
    room.tap(card(STUDENTS[2]))  # a third, not yet uploaded
    room.press()
    assert room.daemon.purge() == []  # confirmed today: kept until the end of the day
    room.daemon.cfg = dataclasses.replace(room.cfg, purge=dataclasses.replace(room.cfg.purge, end_of_day=False))
    assert set(room.daemon.purge()) == confirmed
    assert len(outbox(cfg)) == 1 and not outbox(cfg) & confirmed


def test_sync_needs_a_centre_and_a_token(kit_config, tmp_path):
    from appliance.config import ConfigError

    with pytest.raises(ConfigError, match=r"sync\.centre_url"):
        SyncDaemon(kit_config)
    cfg = dataclasses.replace(kit_config, sync=dataclasses.replace(
        kit_config.sync, centre_url="http://127.0.0.1:9", token_file=str(tmp_path / "none")))
    with pytest.raises(ConfigError, match=r"sync\.token_file"):
        SyncDaemon(cfg)


def test_the_state_lives_in_the_journal_only(kit_config, centre):
    cfg = syncing(classroom(kit_config, n=2), centre)
    before = {p for p in cfg.data_path.rglob("*") if p.is_file()}
    synced(cfg)
    after = {p for p in cfg.data_path.rglob("*") if p.is_file()}
    new = {p.name for p in after - before}
    assert new <= {"sync.lock", "journal.sqlite-wal", "journal.sqlite-shm"}, new
    assert Path(cfg.data_path / "journal.sqlite").exists()


def test_two_uploads_in_flight_oldest_first_each_on_its_own_connection(kit_config, centre):
    """The two oldest bundles go out at once, each on its own client; the rest wait their turn."""
    cfg = syncing(classroom(kit_config, n=4), centre, parallel_uploads=2)
    with running(cfg) as d:
        d.scan()
        oldest = d._pending[:2]
        sessions = {id(c.session) for c in [*d._centres, d.centre]}
        assert len(d._centres) == 2 and len(sessions) == 3  # two upload clients and the heartbeats' own
        while d.step() != "upload":
            pass
        status = uploads(cfg)
        busy = {cid for _, cid, _ in d._inflight.values()}
        confirmed = {c for c, s in status.items() if s == "confirmed"}
        assert confirmed and confirmed | busy == set(oldest) and d.uploaded == len(confirmed)
        assert all(status[c] == "pending" for c in d._pending) and d._pending
        drain(d)
    assert_exactly_once(cfg, centre)


def test_a_slow_bundle_does_not_hold_up_the_ones_behind_it(kit_config, centre):
    """A sliding window: while the oldest bundle crawls over a slow link on one client, the other client sends
    every newer one; each client takes the next bundle as soon as its own is confirmed."""
    import os

    from appliance.bundle import CentreKey
    from appliance.spool import Spool

    cfg = classroom(kit_config, n=4)
    journal_id = sorted(outbox(cfg))[0].split("-")[-3]
    big = f"{cfg.kit_id}-{journal_id}-000900-01"
    sp = Spool(cfg.data_path / "spool", CentreKey.parse(cfg.sealing.public_keys[0]))
    ident = {"kit_id": cfg.kit_id, "journal_id": journal_id, "shot": 900, "frame": 1}
    path = sp.write_bundle(big, ident, {"capture_id": big}, b"\xff\xd8" + os.urandom(1_500_000)).path
    os.utime(path, ns=(1, 1))  # the oldest in the outbox: sent first
    with fp.FaultProxy(("127.0.0.1", centre.port)) as proxy:
        cfg = syncing(cfg, centre, url=proxy.url, parallel_uploads=2)
        proxy.set(fp.slow(600_000))  # each connection: ~2.5 s for the big one, a fraction of that for the others
        with running(cfg) as d:
            d.scan()
            assert d._pending[0] == big
            drain(d)
    db = sqlite3.connect(f"file:{cfg.data_path / 'journal.sqlite'}?mode=ro", uri=True)
    at = dict(db.execute("SELECT capture_id, confirmed_at FROM uploads"))
    db.close()
    others = [c for c in at if c != big]
    assert len(others) >= 4 and all(at[c] < at[big] for c in others), at


def test_reading_bundles_does_not_wake_the_loop_and_publishing_one_does(kit_config, centre, room):
    """The daemon opens and reads bundles as it uploads them: those events must not wake it (each wake is a
    rescan of the whole outbox); a bundle published by the spool (written, renamed in) must."""
    room.tap(card(STUDENTS[0]))
    room.press()
    cfg = syncing(room.cfg, centre)
    d = SyncDaemon(cfg)
    d.start()
    try:
        (first,) = outbox(cfg)
        time.sleep(0.3)
        d._wake.clear()
        for _ in range(5):  # what an upload does to a bundle: read its header, then its bytes
            (cfg.data_path / "spool" / "outbox" / f"{first}.bundle").read_bytes()
        assert not d._wake.wait(1.0), "reading a bundle woke the loop"
        room.wait(10)  # the next student steps up
        room.tap(card(STUDENTS[1]))
        room.press()
        assert len(outbox(cfg)) == 2
        assert d._wake.wait(5.0), "a published bundle did not wake the loop"
    finally:
        d.close()


def test_one_request_per_bundle_and_one_tus_options_per_daemon(kit_config, centre):
    """Bundles that fit one chunk each go in their creation request, and the daemon's parallel clients share
    the one OPTIONS answer that told them they may (no HEAD, no PATCH, no journal URL for a finished upload)."""
    cfg = classroom(kit_config, n=6)
    with fp.FaultProxy(("127.0.0.1", centre.port)) as proxy:
        cfg = syncing(cfg, centre, url=proxy.url, parallel_uploads=2)
        d = synced(cfg)
        s = proxy.stats()
    n = len(outbox(cfg))
    assert n >= 6 and d.uploaded == n
    assert s.count("OPTIONS", "/api/v1/uploads") == 1
    assert s.count("POST", "/api/v1/uploads") == n
    assert s.count("PATCH", "/api/v1/uploads/") == 0 and s.count("HEAD", "/api/v1/uploads/") == 0
    db = sqlite3.connect(f"file:{cfg.data_path / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT COUNT(*) FROM uploads WHERE upload_url IS NOT NULL").fetchone()[0] == 0
    finally:
        db.close()
    assert_exactly_once(cfg, centre)


def test_the_sync_daemon_loads_no_camera_or_image_library():
    """Sync reads the kit's configuration (which names the QC settings) but never OpenCV, Pillow or the face
    models: ~18 MB of RSS and an import time a Pi pays for nothing."""
    import subprocess
    import sys

    probe = ("import sys, sync.daemon, appliance.cli; print(sorted(m for m in ('cv2', 'PIL', 'mediapipe',"
             " 'picamera2', 'appliance.qc.assess') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert out == "[]"
