"""Start-up recovery on states a crash can leave behind, built with the real journal and spool."""

from __future__ import annotations

import pytest
from conftest import cheap_key, sealing_line

from appliance.bundle import CentreKey
from appliance.clock import ManualClock
from appliance.identity import Kind, Source, make
from appliance.journal import Journal
from appliance.recovery import recover
from appliance.spool import Spool

JPEG = b"\xff\xd8fake-but-bytes\xff\xd9"
KEY = cheap_key()


class _Spool(Spool):
    """The real spool, with the old short call for tests: write_bundle(cid, photo, ident)."""

    def write_bundle(self, cid, photo, ident):  # type: ignore[override]
        return super().write_bundle(cid, ident, {"capture_id": cid}, photo)

    def keep_reject(self, cid, photo, ident):  # type: ignore[override]
        return super().keep_reject(cid, ident, {"capture_id": cid}, photo)


def rec(j: Journal, shot: int, frame: int, journal_id: str | None = None, kit_id: str | None = None) -> dict:
    """The clear header's identity of a bundle, as the daemon passes it."""
    return {"kit_id": kit_id or j.kit_id, "journal_id": journal_id or j.journal_id, "shot": shot, "frame": frame}


@pytest.fixture(autouse=True)
def _key(centre_keys):
    global CENTRE
    CENTRE = CentreKey.parse(sealing_line(centre_keys))


CENTRE: CentreKey | None = None


def setup(tmp_path):
    j = Journal(tmp_path / "journal.sqlite", "kit-r", ManualClock().wall)
    sp = _Spool(tmp_path / "spool", CENTRE)
    sid = j.open_session("S1")
    for n in (1, 2, 3):
        ident = KEY.identity(make(Kind.COLLECTION_CODE, f"code-{n}", Source.QR_SCANNER))
        j.open_shot(n, sid, j.record_read(sid, ident, "on_roster", ""))
    return j, sp


def test_complete_bundle_with_unfinished_row_is_kept(tmp_path):
    j, sp = setup(tmp_path)
    cid = j.begin_frame(1, 1, "outbox", "pass", ())
    sp.write_bundle(cid, JPEG, rec(j, 1, 1))  # crash here: before finish_frame
    done = recover(j, sp)
    assert any("bundle complete, kept" in d for d in done)
    assert j.db.execute("SELECT status FROM shots WHERE number=1").fetchone() == ("captured",)
    assert j.db.execute("SELECT status, sha256 FROM frames").fetchone()[0] == "stored"


def test_half_written_bundle_is_removed_and_frame_marked_lost(tmp_path):
    j, sp = setup(tmp_path)
    cid = j.begin_frame(2, 1, "outbox", "pass", ())
    tmp = sp.outbox / f".tmp-{cid}.bundle"
    tmp.write_bytes(b"CKBUNDL2\x00")  # crash mid-write
    done = recover(j, sp)
    assert not tmp.exists() and any("half-written" in d for d in done)
    assert j.db.execute("SELECT status FROM frames").fetchone() == ("lost",)
    assert j.db.execute("SELECT status, void_reason FROM shots WHERE number=2").fetchone()[0] == "void"


def test_corrupt_bundle_is_quarantined_not_deleted(tmp_path):
    j, sp = setup(tmp_path)
    cid = j.begin_frame(3, 1, "outbox", "pass", ())
    w = sp.write_bundle(cid, JPEG, rec(j, 3, 1))
    raw = bytearray(w.path.read_bytes())
    raw[-5] ^= 0xFF  # bit rot in the sealed bytes: same size, wrong SHA-256
    w.path.write_bytes(bytes(raw))
    recover(j, sp)
    assert (sp.orphans / f"{cid}.bundle").exists() and cid not in sp.bundle_ids()
    assert j.db.execute("SELECT status, detail FROM frames").fetchone()[0] == "lost"


def test_open_shots_are_voided_and_unknown_bundles_adopted_in_place(tmp_path):
    j, sp = setup(tmp_path)
    sp.write_bundle("kit-r-ffffffff-000099-01", JPEG, rec(j, 99, 1, journal_id="ffffffff"))
    done = recover(j, sp)
    statuses = j.db.execute("SELECT status, void_reason FROM shots").fetchall()
    assert {s for s, _ in statuses} == {"void"} and all(r.startswith("interrupted") for _, r in statuses)
    assert "kit-r-ffffffff-000099-01" in sp.bundle_ids() and not sp.orphans.exists()  # never leaves the outbox
    assert any("adopted" in d for d in done)
    assert j.db.execute("SELECT journal_id, shot FROM adopted").fetchall() == [("ffffffff", 99)]
    assert j.db.execute("SELECT kind FROM events WHERE kind='recovery'").fetchone()
    assert j.next_shot() == 4  # this journal has shots of its own: its numbering is unchanged
    assert recover(j, sp) == []  # idempotent


def test_reject_written_before_crash_is_kept(tmp_path):
    j, sp = setup(tmp_path)
    cid = j.begin_frame(1, 1, "rejects", "fail", ("blur",))
    sp.keep_reject(cid, JPEG, rec(j, 1, 1))
    recover(j, sp)
    assert j.db.execute("SELECT status, path FROM frames").fetchone() == ("rejected", f"rejects/{cid}.bundle")


def test_journal_refuses_another_kits_file(tmp_path):

    from appliance.errors import StartRefused

    Journal(tmp_path / "journal.sqlite", "kit-a", ManualClock().wall).close()
    with pytest.raises(StartRefused, match="belongs to kit"):
        Journal(tmp_path / "journal.sqlite", "kit-b", ManualClock().wall)


# ---- nothing captured leaves the upload path (issue: a lost journal, foreign files, crashes in recovery)
def _classroom(data, n=8, seed=1):
    """A real simulated classroom on ``data`` (simulated reader, scripted QC): real bundles and journal."""
    import dataclasses

    from appliance import config as config_mod
    from appliance.simulate import run, sim_config

    base = config_mod.Config()
    cfg = sim_config(dataclasses.replace(
        base, kit_id="kit-r", sealing=dataclasses.replace(base.sealing, public_keys=(str(CENTRE),)),
        privacy=dataclasses.replace(base.privacy, argon2_opslimit=1, argon2_memlimit_kib=8)), data, (320, 240))
    summary = run(cfg, n, seed=seed, qc="sim", sources=False)
    assert not summary["mismatches"]
    return cfg


def _daemon(cfg):
    from appliance.daemon import Daemon, Devices
    from appliance.devices.camera import SimCamera
    from appliance.devices.gpio import pin_factory
    from appliance.readers.sim import SimReader

    return Daemon(cfg, Devices(SimCamera(320, 240), [SimReader()], pin_factory("mock")), ManualClock())


def test_missing_journal_beside_a_full_outbox_adopts_every_bundle_and_numbers_carry_on(tmp_path):
    data = tmp_path / "data"
    cfg = _classroom(data)
    before = set(Spool(data / "spool").bundle_ids())
    last = max(int(c.split("-")[-2]) for c in before)
    old_journal = (data / "journal.sqlite").read_bytes()
    for f in data.glob("journal.sqlite*"):
        f.unlink()
    d = _daemon(cfg)
    d.start()
    try:
        assert set(d.spool.bundle_ids()) == before and not d.spool.orphans.exists()  # nothing left the outbox
        assert d.journal.known_capture_ids() == before
        assert d.session.next_shot == last + 1  # the crew's numbers carry on; none is given twice
        assert sum("adopted" in line for line in d.recovered) == len(before)
    finally:
        d.close()
    from appliance.status import status_report

    assert f"adopted bundles (an earlier journal's, kept for sync): {len(before)}" in status_report(cfg)["text"]
    assert old_journal  # (the old journal is simply gone; what it alone knew — voids, reads — is lost)


def test_empty_journal_file_is_a_new_journal_and_bundles_are_adopted(tmp_path):
    data = tmp_path / "data"
    cfg = _classroom(data)
    n = len(Spool(data / "spool").bundle_ids())
    for f in data.glob("journal.sqlite*"):
        f.unlink()
    (data / "journal.sqlite").write_bytes(b"")
    d = _daemon(cfg)
    d.start()
    try:
        assert len(d.journal.known_capture_ids()) == n == len(d.spool.bundle_ids())
    finally:
        d.close()


def test_another_journal_id_keeps_its_own_numbers_and_adopts_the_rest(tmp_path):
    data = tmp_path / "data"
    cfg = _classroom(data)
    sp = Spool(data / "spool")
    j = Journal(data / "journal.sqlite", "kit-r", ManualClock().wall)
    sp = _Spool(data / "spool", CENTRE)
    own_next = j.next_shot()
    sp.write_bundle("kit-r-0badf00d-000005-01", JPEG, rec(j, 5, 1, journal_id="0badf00d"))
    j.close()
    d = _daemon(cfg)
    d.start()
    try:
        assert "kit-r-0badf00d-000005-01" in d.spool.bundle_ids()
        assert d.session.next_shot == own_next
    finally:
        d.close()


def test_another_kits_bundles_refuse_start_and_change_nothing(tmp_path):

    from appliance.errors import StartRefused

    data = tmp_path / "data"
    cfg = _classroom(data)
    sp = _Spool(data / "spool", CENTRE)
    j = Journal(data / "journal.sqlite", "kit-r", ManualClock().wall)
    sp.write_bundle("kit-z-12345678-000001-01", JPEG, rec(j, 1, 1, journal_id="12345678", kit_id="kit-z"))
    events = j.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    j.close()
    d = _daemon(cfg)
    with pytest.raises(StartRefused, match="bundles of kit kit-z"):
        d.start()
    d.close()
    j = Journal(data / "journal.sqlite", "kit-r", ManualClock().wall)
    assert j.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == events
    assert "kit-z-12345678-000001-01" in Spool(data / "spool").bundle_ids()


def test_odd_entries_never_block_start_up(tmp_path):
    j, sp = setup(tmp_path)
    # an orphan of the same name already exists
    cid = j.begin_frame(1, 1, "outbox", "pass", ())
    w = sp.write_bundle(cid, JPEG, rec(j, 1, 1))
    w.path.write_bytes(w.path.read_bytes()[:-3])  # truncated: an interrupted frame's incomplete bundle
    (sp.orphans / f"{cid}.bundle").mkdir(parents=True)
    # a file where a bundle directory belongs, and someone else's dot-directory
    (sp.outbox / "notes.txt").write_text("hello")
    (sp.outbox / ".sync-state").mkdir()
    (sp.outbox / ".sync-state" / "cursor").write_text("42")
    # a file where the rejects directory belongs
    import shutil

    shutil.rmtree(sp.rejects)
    sp.rejects.write_text("oops")
    sp = Spool(tmp_path / "spool")
    done = recover(j, sp)
    assert sp.rejects.is_dir() and any(p.name.startswith("rejects.stray-") for p in sp.root.iterdir())
    assert (sp.orphans / f"{cid}.bundle").is_dir()
    assert any(p.name.startswith(f"{cid}.bundle.stray-") for p in sp.orphans.iterdir())
    assert (sp.outbox / ".sync-state" / "cursor").read_text() == "42"  # not ours: untouched
    assert (sp.outbox / "notes.txt").exists() and any("notes.txt is not a bundle" in d for d in done)
    kinds = [k for (k,) in j.db.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds[0] == "recovery_started" and kinds[-1] == "recovery_done"
    assert kinds.count("recovery") + kinds.count("recovery_problem") == len(done)  # each step journalled


def test_damaged_journal_is_refused_and_kept_byte_for_byte(tmp_path):

    from appliance.errors import JournalDamaged

    data = tmp_path / "data"
    cfg = _classroom(data, n=20)
    path = data / "journal.sqlite"
    raw = bytearray(path.read_bytes())
    page = 4096
    for p in range(2, len(raw) // page):  # wreck the b-tree page headers of every table page after the schema
        raw[p * page] = 0x77
    path.write_bytes(bytes(raw))
    before = path.read_bytes()
    d = _daemon(cfg)
    with pytest.raises(JournalDamaged, match=r"damaged|not readable"):
        d.start()
    d.close()
    assert path.read_bytes() == before


def test_finish_frame_never_turns_a_void_shot_into_a_captured_one(tmp_path):

    from appliance.errors import StorageError

    j, sp = setup(tmp_path)
    cid = j.begin_frame(2, 1, "outbox", "pass", ())
    j.void_shot(2, "operator cancel")
    w = sp.write_bundle(cid, JPEG, rec(j, 2, 1))
    with pytest.raises(StorageError, match="void"):
        j.finish_frame(2, 1, w.sha256, w.size, f"outbox/{cid}.bundle")
    row = j.db.execute("SELECT status, void_reason FROM shots WHERE number=2").fetchone()
    assert row == ("void", "operator cancel")
    assert j.db.execute("SELECT kind FROM events WHERE kind='frame_for_void_shot'").fetchone()


def test_damaged_bundles_are_named_at_start_and_by_status(tmp_path):
    from appliance.status import status_report

    data = tmp_path / "data"
    cfg = _classroom(data)
    sp = Spool(data / "spool")
    flipped, broken, *_ = sp.bundle_ids()
    path = sp.path(flipped)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit: same size, only a SHA-256 finds it
    path.write_bytes(bytes(raw))
    raw = bytearray(sp.path(broken).read_bytes())
    raw[20:30] = b"{ not json"  # the clear header no longer parses
    sp.path(broken).write_bytes(bytes(raw))
    d = _daemon(cfg)
    d.start()
    try:
        assert broken in d.damaged and flipped not in d.damaged  # the start-up check is shallow and cheap
        d.start_scrub().join(60)
        d.settle()
        found = {r[0].split(":")[0] for r in d.journal.db.execute(
            "SELECT detail FROM events WHERE kind='bundle_damaged'")}
        assert {flipped, broken} <= found
    finally:
        d.close()
    report = status_report(cfg)
    assert set(report["damaged"]) == {flipped, broken}  # the daemon's scrub result, and the shallow check
    assert f"DAMAGED bundle {flipped}" in report["text"]
    assert set(status_report(cfg, deep=True)["damaged"]) == {flipped, broken}
