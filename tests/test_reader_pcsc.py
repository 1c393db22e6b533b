"""PcscReader on the real stack: pyscard -> a private pcscd -> vpcd -> our emulated card.

Also the card profiles on their own (no stack). The stack tests skip only when pcscd or the vpcd
driver is not installed (CI installs them: apt pcscd vsmartcard-vpcd libpcsclite-dev swig).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
from peers import pcscd as pcscd_peer
from peers.pcscd import PcscStack
from peers.recorder import Recorder
from peers.vpcd_card import (
    CardSpec,
    campus_card,
    resident_id_card,
    vendor_sam_card,
)

from appliance import idnumber
from appliance.identity import Kind, Source, masked
from appliance.readers import card_profiles
from appliance.readers.card_profiles import (
    NoAnswerError,
    ShortAnswerError,
    StatusWordError,
    UnknownCardError,
    get_profile,
)
from appliance.readers.idcard_text import build_text
from appliance.readers.pcsc import PcscReader

pcsc_stack = pcscd_peer.pcsc_stack  # module-scoped fixture: one pcscd for the whole file

UID = "04A1B2C3D4E5F6"
UID2 = "8899AABB"
NUMBER = idnumber.make("11010519491231002")


@pytest.fixture
def stack(pcsc_stack: PcscStack) -> Iterator[PcscStack]:
    """The shared stack with no card on the reader, left running with the reader afterwards."""
    if not pcsc_stack.pcscd.running:
        pcsc_stack.pcscd.start()
    pcsc_stack.remove_card()
    pcsc_stack.card.apdus.clear()
    yield pcsc_stack
    pcsc_stack.card.remove()
    if not pcsc_stack.pcscd.running or pcsc_stack.reader_name not in (pcsc_stack.pcscd.readers() or []):
        pcsc_stack.pcscd.restart()


@pytest.fixture
def run_reader(stack: PcscStack) -> Iterator[Callable[..., tuple[PcscReader, Recorder]]]:
    started: list[PcscReader] = []

    def start(profile: str = "uid", **options: float) -> tuple[PcscReader, Recorder]:
        options = {"max_backoff": 0.5, **options}
        reader = PcscReader("desk1", profile, reader_filter=stack.reader_name, **options)
        recorder = Recorder()
        reader.start(recorder.on_identity, recorder.on_problem)
        started.append(reader)
        return reader, recorder

    yield start
    for reader in started:
        reader.stop()


def reader_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("capturekit"))


def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stays(predicate: Callable[[], bool], seconds: float = 1.3) -> bool:
    """True when ``predicate`` holds for ``seconds`` (three pcscd presence polls by default)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.05)
    return True


# -- real stack ----------------------------------------------------------------------------------
def test_uid_read_and_key_not_logged(stack: PcscStack, run_reader, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="capturekit.reader.pcsc")
    _, rec = run_reader("uid")
    stack.card.insert(campus_card(UID))
    [identity] = rec.wait_identities(1)
    assert (identity.kind, identity.key, identity.source, identity.reader) == (
        Kind.CARD_UID, UID, Source.PCSC, "desk1")
    assert stack.card.count("FFCA000000") == 1
    assert rec.problems == []
    assert UID not in reader_log(caplog) and masked(identity) in reader_log(caplog)


def test_vendor_sam_text_block(stack: PcscStack, run_reader, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="capturekit.reader.pcsc")
    _, rec = run_reader("idcard_vendor_sam")
    stack.card.insert(vendor_sam_card(NUMBER, name="张三", address="北京市东城区"))
    [identity] = rec.wait_identities(1)
    assert (identity.kind, identity.key, identity.source) == (Kind.ID_NUMBER, NUMBER, Source.PCSC)
    assert stack.card.count("FFB0000000") == 1
    assert NUMBER not in reader_log(caplog) and masked(identity) in reader_log(caplog)


def test_card_left_on_reader_reads_once_and_retap_reads_again(stack: PcscStack, run_reader) -> None:
    _, rec = run_reader("uid")
    stack.card.insert(campus_card(UID))
    rec.wait_identities(1)
    assert stays(lambda: len(rec.identities) == 1)  # left on the reader: still one read
    assert stack.card.count("FFCA000000") == 1
    stack.remove_card()
    stack.card.insert(campus_card(UID))
    assert [i.key for i in rec.wait_identities(2)] == [UID, UID]
    stack.remove_card()
    stack.card.insert(campus_card(UID2))  # the next student
    assert rec.wait_identities(3)[2].key == UID2
    assert rec.problems == []


def test_unknown_card_reports_once_then_next_card_reads(stack: PcscStack, run_reader) -> None:
    _, rec = run_reader("uid")
    stack.card.insert(resident_id_card())
    detail = rec.wait_problem("unknown_card")
    assert "zero" in detail and "ATR" in detail
    assert stays(lambda: rec.codes() == ["unknown_card"]) and rec.identities == []
    stack.remove_card()
    stack.card.insert(campus_card(UID))
    assert rec.wait_identities(1)[0].key == UID


def test_get_response_is_followed(stack: PcscStack, run_reader) -> None:
    card = campus_card(UID)  # a reader that answers 61 07 ("7 bytes waiting") first
    card.answers = {bytes.fromhex("FFCA000000"): bytes.fromhex("6107"),
                    bytes.fromhex("00C0000007"): bytes.fromhex(UID + "9000")}
    _, rec = run_reader("uid")
    stack.card.insert(card)
    assert rec.wait_identities(1)[0].key == UID
    assert stack.card.count("00C0000007") == 1


def test_status_word_error_is_unknown_card(stack: PcscStack, run_reader) -> None:
    _, rec = run_reader("idcard_vendor_sam")  # a campus card does not know FF B0: SW 6D 00
    stack.card.insert(campus_card(UID))
    assert "SW 6D 00" in rec.wait_problem("unknown_card")
    assert rec.identities == []


def test_card_pulled_mid_read_then_next_tap_reads(stack: PcscStack, run_reader) -> None:
    _, rec = run_reader("uid")
    card = campus_card(UID)
    card.pull_on, card.pull_after = bytes.fromhex("FFCA"), 0.3
    stack.card.insert(card)
    rec.wait_problem("card_removed_mid_read")
    assert rec.identities == []
    stack.card.insert(campus_card(UID2))
    assert rec.wait_identities(1)[0].key == UID2
    assert rec.codes() == ["card_removed_mid_read"]


def test_pcscd_restart_recovers_without_new_reader_object(stack: PcscStack, run_reader) -> None:
    reader, rec = run_reader("uid")
    stack.card.insert(campus_card(UID))
    rec.wait_identities(1)
    stack.pcscd.stop()
    rec.wait_problem("pcsc_unavailable")
    stack.pcscd.start()
    # the card stayed on the reader through the restart: it is not a new tap
    assert stays(lambda: len(rec.identities) == 1, 2.0)
    stack.remove_card()
    stack.card.insert(campus_card(UID2))
    assert rec.wait_identities(2)[1].key == UID2
    assert rec.codes() == ["pcsc_unavailable"]
    assert reader._thread is not None and reader._thread.is_alive()


def test_reader_missing_unplugged_and_back(stack: PcscStack, run_reader) -> None:
    stack.pcscd.restart(with_reader=False)
    _, rec = run_reader("uid")
    assert stack.reader_name in rec.wait_problem("reader_missing")
    stack.pcscd.restart(with_reader=True)  # reader plugged in
    stack.card.insert(campus_card(UID))
    rec.wait_identities(1)
    stack.card.remove()
    stack.pcscd.restart(with_reader=False)  # reader unplugged (pcscd restarted without it)
    assert rec.wait_problem("reader_unplugged") == stack.reader_name
    stack.pcscd.restart(with_reader=True)  # and back
    stack.card.insert(campus_card(UID2))
    assert rec.wait_identities(2)[1].key == UID2
    assert rec.codes().count("reader_missing") == 1


def test_stop_is_prompt_even_while_pcscd_is_down(stack: PcscStack, run_reader) -> None:
    reader, rec = run_reader("uid", max_backoff=5.0)
    stack.card.insert(campus_card(UID))
    rec.wait_identities(1)
    t0 = time.monotonic()
    reader.stop()
    assert time.monotonic() - t0 < 0.5
    reader.start(rec.on_identity, rec.on_problem)
    stack.pcscd.stop()
    rec.wait_problem("pcsc_unavailable")
    time.sleep(0.5)  # inside the back-off wait
    t0 = time.monotonic()
    reader.stop()
    assert time.monotonic() - t0 < 0.5


def test_stop_returns_while_a_card_stalls_mid_apdu(stack: PcscStack, run_reader) -> None:
    reader, rec = run_reader("uid")
    card = campus_card(UID)
    card.pull_on, card.pull_after = bytes.fromhex("FFCA"), 30.0  # never answers while on the reader
    stack.card.insert(card)
    assert until(lambda: stack.card.count("FFCA000000") == 1)
    thread = reader._thread
    t0 = time.monotonic()
    reader.stop()
    assert time.monotonic() - t0 < 1.3
    stack.card.remove()  # the stalled card leaves: the transaction fails and the thread ends
    assert thread is not None
    thread.join(3.0)
    assert not thread.is_alive() and rec.identities == []


# -- profiles on their own -----------------------------------------------------------------------
def answer(hex_response: str) -> Callable[[bytes], bytes]:
    return lambda apdu: bytes.fromhex(hex_response)


def test_uid_profile() -> None:
    uid = get_profile("uid")
    assert uid.read(answer("04a1b2c3 9000"), "r").key == "04A1B2C3"
    with pytest.raises(UnknownCardError, match="zero"):
        uid.read(answer("00000000 9000"))
    with pytest.raises(StatusWordError, match="SW 6A 81") as exc:
        uid.read(answer("6A81"))
    assert exc.value.sw == 0x6A81
    with pytest.raises(ShortAnswerError, match=r"2 data bytes.*SW 90 00"):
        uid.read(answer("0102 9000"))
    with pytest.raises(NoAnswerError):
        uid.read(answer(""))


def test_vendor_sam_profile_slices_the_block() -> None:
    block = build_text("J", number=NUMBER)
    profile = get_profile("idcard_vendor_sam")
    identity = profile.read(lambda apdu: b"\x01\x00\x04\x00" + block + b"\x90\x00", "r")
    assert (identity.kind, identity.key) == (Kind.ID_NUMBER, NUMBER)
    with pytest.raises(ShortAnswerError, match="256 data bytes"):
        profile.read(lambda apdu: block + b"\x90\x00")


def test_profiles_by_name_and_as_table_rows() -> None:
    with pytest.raises(ValueError, match="unknown card profile 'nope'; known: idcard_vendor_sam, uid"):
        get_profile("nope")
    custom = card_profiles.CardProfile(
        "uid_7", (card_profiles.Step("FF CA 00 00 07", min_len=7),), card_profiles.parse_uid)
    assert get_profile(custom) is custom
    assert custom.read(answer("04112233445566 9000")).key == "04112233445566"


def test_card_spec_default_answer() -> None:
    assert CardSpec("x", b"\x3b\x00").answer(b"\x00\xa4\x04\x00") == b"\x6d\x00"
