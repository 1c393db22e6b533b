"""Start-up recovery on states a crash can leave behind, built with the real journal and spool."""

from __future__ import annotations

from appliance.clock import ManualClock
from appliance.identity import Kind, Source, make
from appliance.journal import Journal
from appliance.recovery import recover
from appliance.spool import Spool

JPEG = b"\xff\xd8fake-but-bytes\xff\xd9"


def rec(j: Journal, shot: int, frame: int, journal_id: str | None = None, kit_id: str | None = None) -> dict:
    """The identifying part of a bundle record, as the daemon writes it."""
    return {"kit_id": kit_id or j.kit_id, "journal_id": journal_id or j.journal_id, "shot": shot, "frame": frame}


def setup(tmp_path):
    j = Journal(tmp_path / "journal.sqlite", "kit-r", ManualClock().wall)
    sp = Spool(tmp_path / "spool")
    sid = j.open_session("S1")
    for n in (1, 2, 3):
        read = j.record_read(sid, make(Kind.COLLECTION_CODE, f"code-{n}", Source.QR_SCANNER), "on_roster", "")
        j.open_shot(n, sid, read)
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
    tmp = sp.outbox / f".tmp-{cid}"
    tmp.mkdir()
    (tmp / f"{cid}.jpg").write_bytes(JPEG[:5])  # crash mid-write
    done = recover(j, sp)
    assert not tmp.exists() and any("half-written" in d for d in done)
    assert j.db.execute("SELECT status FROM frames").fetchone() == ("lost",)
    assert j.db.execute("SELECT status, void_reason FROM shots WHERE number=2").fetchone()[0] == "void"


def test_corrupt_bundle_is_quarantined_not_deleted(tmp_path):
    j, sp = setup(tmp_path)
    cid = j.begin_frame(3, 1, "outbox", "pass", ())
    w = sp.write_bundle(cid, JPEG, rec(j, 3, 1))
    (w.path / f"{cid}.jpg").write_bytes(b"bit rot")
    recover(j, sp)
    assert (sp.orphans / cid).exists() and cid not in sp.bundle_ids()
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
    sp.keep_reject(cid, JPEG)
    recover(j, sp)
    assert j.db.execute("SELECT status, path FROM frames").fetchone() == ("rejected", f"rejects/{cid}.jpg")


def test_journal_refuses_another_kits_file(tmp_path):
    import pytest

    from appliance.errors import StartRefused

    Journal(tmp_path / "journal.sqlite", "kit-a", ManualClock().wall).close()
    with pytest.raises(StartRefused, match="belongs to kit"):
        Journal(tmp_path / "journal.sqlite", "kit-b", ManualClock().wall)
