"""The SAM serial protocol (pure framing) and SamReader against a SAM emulated on a pty."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator

import pytest
from peers.recorder import Recorder

from appliance import idnumber
from appliance.identity import Kind, Source
from appliance.readers.idcard_text import build_text
from appliance.readers.sam import Problem, SamReader, probe
from appliance.readers.sam_emulator import SAM_ID, Fault, SamEmulator
from appliance.readers.sam_protocol import (
    HEADER_LEN,
    MAX_LEN,
    PREAMBLE,
    Command,
    FrameError,
    FrameParser,
    Outcome,
    PayloadError,
    Status,
    build_command,
    build_frame,
    build_reply,
    checksum,
    describe,
    format_sam_id,
    outcome,
    parse_command,
    parse_reply,
    split_text_photo,
    text_photo_data,
)

# -- sample cards (fictitious people; numbers with valid check characters) ---------------------

RESIDENT_NO = idnumber.make("11010519491231002")
PERMIT_NO = idnumber.make("81000019900101001")
FOREIGN_2023_NO = idnumber.make("93384019900101001")
FOREIGN_2017_NO = "USA123456789012"
NAME = "张小明"
ADDRESS = "北京市东城区景山前街4号"

CARDS = {
    "resident": (build_text("", name=NAME, sex="1", nation="01", birth_date="19491231", address=ADDRESS,
                            number=RESIDENT_NO, authority="北京市公安局东城分局", valid_from="20200101",
                            valid_to="20400101"), RESIDENT_NO),
    "permit_hmt": (build_text("J", name="陈大文", sex="1", birth_date="19900101", address="广东省深圳市福田区",
                              number=PERMIT_NO, pass_number="H12345678", issue_count="01"), PERMIT_NO),
    "foreign_pr_2017": (build_text("I", name_en="SMITH JOHN", sex="1", number=FOREIGN_2017_NO,
                                   nationality="USA", name="史密斯", birth_date="19900101"), FOREIGN_2017_NO),
    "foreign_pr_2023": (build_text("Y", name="史密斯", sex="1", birth_date="19900101", name_en="SMITH JOHN",
                                   number=FOREIGN_2023_NO, nationality="USA"), FOREIGN_2023_NO),
}
TEXT, NUMBER = CARDS["resident"]


# == pure framing ===============================================================================


def test_find_command_is_the_documented_frame() -> None:
    assert Command.FIND_CARD.frame() == bytes.fromhex("AA AA AA 96 69 00 03 20 01 22")


@pytest.mark.parametrize("command", list(Command))
def test_every_command_frame_has_len_3_and_xor_checksum(command: Command) -> None:
    frame = command.frame()
    assert frame[:5] == PREAMBLE and frame[5:7] == b"\x00\x03" and tuple(frame[7:9]) == command.value
    assert frame[9] == frame[5] ^ frame[6] ^ frame[7] ^ frame[8]
    assert parse_command(FrameParser(min_len=3).feed(frame)[0]) == (*command.value, b"")


@pytest.mark.parametrize(("raw", "sw3", "data"), [
    ("AA AA AA 96 69 00 08 00 00 9F 00 00 00 00 97", 0x9F, bytes(4)),  # find ok (id-readers.md)
    ("AA AA AA 96 69 00 0C 00 00 90" + " 00" * 8 + " 9C", 0x90, bytes(8)),  # select ok
    ("AA AA AA 96 69 00 04 00 00 41 45", 0x41, b""),  # read failed (softs.im protocol notes)
    ("AA AA AA 96 69 00 04 00 00 32 36", 0x32, b""),  # SAM failed to authenticate the card
])
def test_documented_replies_parse(raw: str, sw3: int, data: bytes) -> None:
    [body] = FrameParser().feed(bytes.fromhex(raw))
    reply = parse_reply(body)
    assert (reply.sw1, reply.sw2, reply.sw3, reply.data) == (0, 0, sw3, data)
    assert build_reply(sw3, data) == bytes.fromhex(raw)


def test_text_photo_reply_is_1295_bytes_with_text_at_byte_14() -> None:
    photo = os.urandom(1024)
    frame = build_reply(0x90, text_photo_data(TEXT, photo))
    assert len(frame) == 1295
    assert frame[5:7] == (1288).to_bytes(2, "big")  # LEN 0x0508
    assert frame[7:10] == b"\x00\x00\x90" and frame[10:14] == b"\x01\x00\x04\x00"
    assert frame[14:270] == TEXT and frame[270:1294] == photo
    assert frame[-1] == checksum(frame[5:-1])
    [body] = FrameParser().feed(frame)
    assert split_text_photo(parse_reply(body).data) == (TEXT, 1024)


@pytest.mark.parametrize("size", [0, 1, 4, 8, 16, 1284, MAX_LEN - 4])
def test_reply_round_trip(size: int) -> None:
    data = os.urandom(size)
    [body] = FrameParser().feed(build_reply(0x41, data, sw1=0x6A, sw2=0x82))
    reply = parse_reply(body)
    assert (reply.sw1, reply.sw2, reply.sw3, reply.data) == (0x6A, 0x82, 0x41, data)


def test_reply_repr_hides_data() -> None:
    reply = parse_reply(b"\x00\x00\x90" + TEXT)
    assert "data" not in repr(reply) and NAME not in repr(reply)


def test_parser_takes_frames_byte_by_byte_and_several_per_chunk() -> None:
    frames = [build_reply(0x9F, bytes(4)), build_reply(0x90, bytes(8)), build_reply(0x90, text_photo_data(TEXT, b"x"))]
    parser = FrameParser()
    out = [item for byte in b"".join(frames) for item in parser.feed(bytes([byte]))]
    assert [parse_reply(b).sw3 for b in out] == [0x9F, 0x90, 0x90]
    assert len(FrameParser().feed(b"".join(frames))) == 3
    assert parser.pending == 0 and parser.discarded == 0


def test_parser_resynchronises_after_garbage_and_broken_preambles() -> None:
    garbage = b"\x00\xff\xaa\xaa\x13\xaa\xaa\xaa\x96\x00\xaa\x96\x69"
    parser = FrameParser()
    assert parser.feed(garbage) == []
    assert parser.pending <= 4  # only a possible preamble start is kept
    [body] = parser.feed(build_reply(0x90))
    assert parse_reply(body).sw3 == 0x90 and parser.discarded == len(garbage)


def test_parser_keeps_a_preamble_split_across_chunks() -> None:
    frame = build_reply(0x9F, bytes(4))
    parser = FrameParser()
    assert parser.feed(b"\x01\x02" + frame[:3]) == [] and parser.pending == 3
    assert len(parser.feed(frame[3:])) == 1 and parser.discarded == 2


def test_bad_checksum_is_reported_and_the_next_frame_still_parses() -> None:
    bad = bytearray(build_reply(0x90, bytes(8)))
    bad[-1] ^= 0x01
    items = FrameParser().feed(bytes(bad) + build_reply(0x9F, bytes(4)))
    assert isinstance(items[0], FrameError) and items[0].reason == "bad_checksum"
    assert parse_reply(items[1]).sw3 == 0x9F


@pytest.mark.parametrize("length", [0, 1, 3, MAX_LEN + 1, 0xFFFF])
def test_impossible_length_is_bad_length_then_resync(length: int) -> None:
    bogus = PREAMBLE + length.to_bytes(2, "big") + b"\x00\x00\x90"
    items = FrameParser().feed(bogus + build_reply(0x90))
    assert isinstance(items[0], FrameError) and items[0].reason == "bad_length"
    assert parse_reply(items[-1]).sw3 == 0x90


def test_command_parser_accepts_len_3_but_reply_parser_does_not() -> None:
    frame = build_command(0x11, 0xFF)
    assert isinstance(FrameParser().feed(frame)[0], FrameError)
    assert FrameParser(min_len=3).feed(frame) == [b"\x11\xff"]


@pytest.mark.parametrize("cut", [3, 5, 6, HEADER_LEN, 20, 1294])
def test_truncated_frame_is_reported_on_flush(cut: int) -> None:
    frame = build_reply(0x90, text_photo_data(TEXT, bytes(1024)))
    parser = FrameParser()
    assert parser.feed(frame[:cut]) == []
    error = parser.flush()
    if cut < len(PREAMBLE):  # not even a preamble yet: that is silence, not a truncated frame
        assert error is None
    else:
        assert isinstance(error, FrameError) and error.reason == "truncated_frame"
    assert parser.pending == 0 and parser.flush() is None


def test_flush_with_nothing_buffered_is_none() -> None:
    assert FrameParser().flush() is None


def test_build_frame_rejects_oversized_body() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        build_frame(bytes(0xFFFF))


@pytest.mark.parametrize(("sw3", "expected"), [
    (0x90, Outcome.OK), (0x9F, Outcome.OK), (0x80, Outcome.NO_CARD), (0x81, Outcome.CARD_ERROR),
    (0x31, Outcome.CARD_ERROR), (0x32, Outcome.CARD_ERROR), (0x33, Outcome.CARD_ERROR),
    (0x40, Outcome.CARD_ERROR), (0x41, Outcome.CARD_ERROR), (0x47, Outcome.CARD_ERROR),
    (0x10, Outcome.SAM_ERROR), (0x11, Outcome.SAM_ERROR), (0x21, Outcome.SAM_ERROR), (0x23, Outcome.SAM_ERROR),
    (0x24, Outcome.SAM_ERROR), (0x60, Outcome.SAM_ERROR), (0x66, Outcome.SAM_ERROR), (0x91, Outcome.NO_CONTENT),
    (0x55, Outcome.SAM_ERROR), (0x00, Outcome.SAM_ERROR),
])
def test_status_outcomes(sw3: int, expected: Outcome) -> None:
    assert outcome(sw3) is expected
    assert describe(sw3).startswith(f"0x{sw3:02X} ")


def test_every_documented_status_has_a_description() -> None:
    assert all("undocumented" not in describe(s) for s in Status)
    assert "undocumented" in describe(0x55)


@pytest.mark.parametrize(("data", "match"), [
    (b"\x01\x00", "no length fields"),
    (text_photo_data(TEXT[:128], bytes(1024)), "text length 128"),
    (text_photo_data(TEXT, bytes(1024))[:-1], "lengths announce"),
    (text_photo_data(TEXT, bytes(1024)) + b"\x00", "lengths announce"),
])
def test_malformed_text_photo_data(data: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        split_text_photo(data)


def test_sam_id_format() -> None:
    assert format_sam_id(SAM_ID) == "05.01-20240101-0000012345-1234567890"
    with pytest.raises(PayloadError):
        format_sam_id(SAM_ID[:15])


# == the reader against the emulated SAM ========================================================

FAST = {"poll_interval": 0.01, "command_timeout": 0.15, "read_timeout": 0.3, "backoff_max": 0.08}


@pytest.fixture
def emulator(tmp_path) -> Iterator[SamEmulator]:
    with SamEmulator(tmp_path) as emu:
        yield emu


@pytest.fixture
def run_reader() -> Iterator[Callable[..., tuple[SamReader, Recorder]]]:
    readers: list[SamReader] = []

    def run(path: str, **options) -> tuple[SamReader, Recorder]:
        reader = SamReader(path, name="sam-test", **{**FAST, **options})
        recorder = Recorder(timeout=3.0)
        reader.start(recorder.on_identity, recorder.on_problem)
        readers.append(reader)
        return reader, recorder

    yield run
    for reader in readers:
        reader.stop()


def settle(emulator: SamEmulator, polls: int = 8) -> None:
    """Let the reader poll ``polls`` more times."""
    assert emulator.wait_count(Command.FIND_CARD, emulator.count(Command.FIND_CARD) + polls)


@pytest.mark.parametrize("card", list(CARDS))
def test_reads_each_card_type(emulator, run_reader, card: str) -> None:
    text, number = CARDS[card]
    emulator.place(text)
    _, rec = run_reader(emulator.path)
    rec.wait_identities(1)
    [identity] = rec.identities
    assert (identity.kind, identity.key, identity.source, identity.reader) == (
        Kind.ID_NUMBER, number, Source.SAM, "sam-test")
    assert rec.problems == []


@pytest.mark.parametrize("resting_refind", [False, True], ids=["silent-when-resting", "refinds-resting-card"])
def test_one_identity_per_tap(tmp_path, run_reader, resting_refind: bool) -> None:
    with SamEmulator(tmp_path, resting_refind=resting_refind) as emu:
        emu.place(TEXT)
        _, rec = run_reader(emu.path)
        rec.wait_identities(1)
        settle(emu, 15)  # the card stays on the reader
        assert len(rec.identities) == 1 and emu.count(Command.READ_TEXT_PHOTO) == 1
        emu.remove()
        settle(emu)
        emu.place(TEXT)  # the same student taps again: a new presentation
        rec.wait_identities(2)
        settle(emu)
        assert len(rec.identities) == 2 and rec.problems == []


def test_a_single_missed_find_is_not_a_new_tap(tmp_path, run_reader) -> None:
    with SamEmulator(tmp_path, resting_refind=True) as emu:
        emu.place(TEXT)
        _, rec = run_reader(emu.path, removal_polls=2)
        rec.wait_identities(1)
        emu.inject(Fault.STATUS, Command.FIND_CARD, status=Status.FIND_FAILED)  # RF glitch: one miss
        settle(emu, 10)
        assert len(rec.identities) == 1


def test_no_card_is_quiet(emulator, run_reader) -> None:
    _, rec = run_reader(emulator.path)
    settle(emulator, 10)
    assert rec.identities == [] and rec.problems == []
    assert set(emulator.received()) == {Command.STATUS, Command.FIND_CARD}


@pytest.mark.parametrize("command", [Command.STATUS, Command.FIND_CARD, Command.SELECT_CARD,
                                     Command.READ_TEXT_PHOTO])
@pytest.mark.parametrize(("fault", "code"), [
    (Fault.BAD_CHECKSUM, Problem.BAD_CHECKSUM),
    (Fault.TRUNCATED, Problem.TRUNCATED_FRAME),
    (Fault.SILENT, Problem.TIMEOUT),
    (Fault.GARBAGE, None),
])
def test_link_faults_are_reported_then_recovered(tmp_path, run_reader, command, fault, code) -> None:
    # A SAM that re-finds a resting card lets the reader retry without a new tap.
    with SamEmulator(tmp_path, resting_refind=True) as emu:
        emu.place(TEXT)
        emu.inject(fault, command)
        _, rec = run_reader(emu.path)
        rec.wait_identities(1)
        assert [identity.key for identity in rec.identities] == [NUMBER]
        assert rec.codes() == ([] if code is None else [code])
        assert command.name in "".join(detail for _, detail in rec.problems) or code is None


def test_truncated_read_on_a_sam_that_stops_answering_find_needs_a_new_tap(emulator, run_reader) -> None:
    emulator.place(TEXT)
    emulator.inject(Fault.TRUNCATED, Command.READ_TEXT_PHOTO)
    _, rec = run_reader(emulator.path)
    rec.wait_problem(Problem.TRUNCATED_FRAME)
    settle(emulator)
    assert rec.identities == []
    emulator.remove()
    settle(emulator)
    emulator.place(TEXT)
    rec.wait_identities(1)


@pytest.mark.parametrize(("command", "status", "code"), [
    (Command.STATUS, Status.SAM_SELFTEST_FAILED, Problem.SAM_ERROR),
    (Command.FIND_CARD, Status.SAM_NOT_AUTHORISED, Problem.SAM_ERROR),
    (Command.FIND_CARD, Status.CHECKSUM_ERROR, Problem.SAM_ERROR),
    (Command.FIND_CARD, Status.UNKNOWN_ERROR, Problem.SAM_ERROR),
    (Command.FIND_CARD, 0x55, Problem.SAM_ERROR),
    (Command.FIND_CARD, Status.OK, Problem.BAD_REPLY),
    (Command.FIND_CARD, Status.UNRECOGNISED_CARD, Problem.READ_FAILED),
    (Command.SELECT_CARD, Status.SELECT_FAILED, Problem.READ_FAILED),
    (Command.SELECT_CARD, Status.CARD_FOUND, Problem.BAD_REPLY),
    (Command.READ_TEXT_PHOTO, Status.READ_FAILED, Problem.READ_FAILED),
    (Command.READ_TEXT_PHOTO, Status.CARD_AUTH_SAM_FAILED, Problem.READ_FAILED),
    (Command.READ_TEXT_PHOTO, Status.SAM_AUTH_CARD_FAILED, Problem.READ_FAILED),
    (Command.READ_TEXT_PHOTO, Status.INFO_CHECK_FAILED, Problem.READ_FAILED),
    (Command.READ_TEXT_PHOTO, Status.RANDOM_FAILED, Problem.READ_FAILED),
    (Command.READ_TEXT_PHOTO, Status.NO_CONTENT, Problem.READ_FAILED),
    (Command.READ_TEXT_PHOTO, Status.UNAUTHORISED, Problem.SAM_ERROR),
])
def test_error_statuses_are_reported_then_recovered(emulator, run_reader, command, status, code) -> None:
    emulator.place(TEXT)
    emulator.inject(Fault.STATUS, command, status=status)  # state unchanged: the card can be re-found
    _, rec = run_reader(emulator.path)
    rec.wait_identities(1)
    assert rec.codes() == [code]
    assert f"0x{status:02X}" in rec.problems[0][1] and command.name in rec.problems[0][1]


def test_persistent_sam_fault_backs_off_and_recovers(emulator, run_reader) -> None:
    emulator.sam_status = Status.SAM_SELFTEST_FAILED
    emulator.place(TEXT)
    _, rec = run_reader(emulator.path, backoff_max=0.1)
    time.sleep(0.6)
    reports = rec.codes().count(Problem.SAM_ERROR)
    assert 2 <= reports <= 12  # backed off: at full poll speed this would be ~60
    emulator.sam_status = None
    rec.wait_identities(1)


def test_card_removed_between_select_and_read(emulator, run_reader) -> None:
    emulator.place(TEXT)
    emulator.inject(Fault.REMOVE_CARD, Command.READ_TEXT_PHOTO)
    _, rec = run_reader(emulator.path)
    rec.wait_problem(Problem.READ_FAILED)
    settle(emulator)
    assert rec.identities == [] and rec.codes() == [Problem.READ_FAILED]
    emulator.place(TEXT)
    rec.wait_identities(1)


def test_unreadable_card_is_given_up_until_lifted(tmp_path, run_reader) -> None:
    with SamEmulator(tmp_path, resting_refind=True) as emu:
        emu.place(TEXT)
        emu.inject(Fault.STATUS, Command.READ_TEXT_PHOTO, status=Status.READ_FAILED, times=3)
        _, rec = run_reader(emu.path, max_attempts=3)
        rec.wait_problem(Problem.CARD_UNREADABLE)
        settle(emu, 10)
        assert rec.codes() == [Problem.READ_FAILED] * 3 + [Problem.CARD_UNREADABLE]
        assert emu.count(Command.READ_TEXT_PHOTO) == 3 and rec.identities == []
        emu.remove()
        settle(emu)
        emu.place(TEXT)
        rec.wait_identities(1)


def test_undecodable_text_is_card_data_once_per_tap(tmp_path, run_reader) -> None:
    bad = bytearray(TEXT)
    bad[248:250] = "Z".encode("utf-16-le")  # a card-type flag nobody defines
    with SamEmulator(tmp_path, resting_refind=True) as emu:
        emu.place(bytes(bad))
        _, rec = run_reader(emu.path)
        rec.wait_problem(Problem.CARD_DATA)
        settle(emu, 10)
        assert rec.codes() == [Problem.CARD_DATA] and emu.count(Command.READ_TEXT_PHOTO) == 1
        emu.remove()
        settle(emu)
        emu.place(TEXT)
        rec.wait_identities(1)


def test_port_lost_and_replugged(emulator, run_reader) -> None:
    emulator.place(TEXT)
    _, rec = run_reader(emulator.path)
    rec.wait_identities(1)
    emulator.unplug()
    rec.wait_problem(Problem.PORT_LOST)
    emulator.remove()
    time.sleep(0.2)  # the reader retries while the port is gone
    emulator.replug()
    settle(emulator)
    emulator.place(CARDS["permit_hmt"][0])
    rec.wait_identities(2)
    assert rec.identities[1].key == PERMIT_NO
    assert rec.codes().count(Problem.PORT_LOST) == 1
    assert set(rec.codes()) <= {Problem.PORT_LOST, Problem.PORT_UNAVAILABLE}


def test_port_absent_at_start_then_plugged(tmp_path, run_reader) -> None:
    emu = SamEmulator(tmp_path)
    emu.start(plugged=False)
    try:
        emu.place(TEXT)
        _, rec = run_reader(emu.path)
        rec.wait_problem(Problem.PORT_UNAVAILABLE)
        time.sleep(0.2)
        emu.replug()
        rec.wait_identities(1)
        assert rec.codes() == [Problem.PORT_UNAVAILABLE]  # reported once per outage, not per retry
    finally:
        emu.stop()


def test_stop_returns_promptly_during_a_long_read(emulator, run_reader) -> None:
    emulator.place(TEXT)
    emulator.inject(Fault.SILENT, Command.READ_TEXT_PHOTO)
    reader, _ = run_reader(emulator.path, read_timeout=10.0)
    assert emulator.wait_count(Command.READ_TEXT_PHOTO, 1)
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 0.5
    assert reader._thread is None and reader._link is None


def test_start_twice_is_an_error(emulator, run_reader) -> None:
    reader, rec = run_reader(emulator.path)
    with pytest.raises(RuntimeError):
        reader.start(rec.on_identity, rec.on_problem)


def test_a_failing_callback_does_not_stop_the_reader(emulator, run_reader, caplog) -> None:
    calls: list = []

    def explode(identity) -> None:
        calls.append(identity)
        raise RuntimeError("daemon bug")

    reader = SamReader(emulator.path, name="sam-test", **FAST)
    reader.start(explode, lambda code, detail: None)
    try:
        emulator.place(TEXT)
        assert emulator.wait_count(Command.READ_TEXT_PHOTO, 1)
        emulator.remove()
        settle(emulator)
        emulator.place(TEXT)
        assert emulator.wait_count(Command.READ_TEXT_PHOTO, 2)
        deadline = time.monotonic() + 2
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(calls) == 2
        assert "on_identity raised" in caplog.text
    finally:
        reader.stop()


def test_only_the_identity_key_leaves_the_adapter(emulator, run_reader, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    photo = os.urandom(1024)
    emulator.place(TEXT, photo)
    emulator.inject(Fault.STATUS, Command.READ_TEXT_PHOTO, status=Status.READ_FAILED)  # exercise error paths
    emulator.inject(Fault.GARBAGE, Command.READ_TEXT_PHOTO)
    reader, rec = run_reader(emulator.path)
    rec.wait_identities(1)
    settle(emulator)
    [identity] = rec.identities
    assert identity.key == NUMBER and identity.display == ""  # the name is dropped unless policy allows it
    assert set(identity.__slots__) == {"kind", "key", "source", "reader", "protected", "display"}
    # Logs and problem details: no name, address, photo, text, and the number only masked.
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    logged += "\n".join(detail for _, detail in rec.problems)
    for secret in (NAME, ADDRESS, NUMBER, photo.hex(), photo.hex(" "), TEXT.hex(), repr(photo)[:40]):
        assert secret not in logged
    assert "id_number#" in logged and NUMBER[-4:] not in logged  # not a character of the key
    # Nothing of the card lingers on the reader object.
    for value in vars(reader).values():
        assert not (isinstance(value, bytes | bytearray) and (photo in value or TEXT[:60] in value))
    assert NAME not in repr(vars(reader))
    # Only the commands needed for the number are ever sent (no fingerprints, no address updates).
    assert set(emulator.received()) <= {Command.STATUS, Command.FIND_CARD, Command.SELECT_CARD,
                                         Command.READ_TEXT_PHOTO}


def test_probe_reports_status_sam_id_and_card(emulator) -> None:
    result = probe(emulator.path, timeout=0.3)
    assert result == {"port": emulator.path, "baudrate": 115200, "status": "0x90 ok",
                      "sam_id": "05.01-20240101-0000012345-1234567890", "sam_id_hex": SAM_ID.hex(" "),
                      "card_present": False, "error": None}
    emulator.place(TEXT)
    assert probe(emulator.path, timeout=0.3)["card_present"] is True
    assert emulator.count(Command.READ_TEXT_PHOTO) == 0  # a probe never reads a card


def test_probe_reports_sam_errors_timeouts_and_missing_ports(emulator, tmp_path) -> None:
    emulator.sam_status = Status.SAM_NOT_AUTHORISED
    result = probe(emulator.path, timeout=0.2)
    assert result["status"] == "0x66 SAM not authorised" and result["error"].startswith("sam_error")
    emulator.sam_status = None
    emulator.inject(Fault.SILENT, times=5)
    result = probe(emulator.path, timeout=0.1, scan=True)
    assert result["error"].startswith("timeout") and emulator.count(Command.STATUS) == 1 + 5
    assert probe(str(tmp_path / "nothing"))["error"].startswith("port_unavailable")


def test_port_is_locked_while_the_reader_runs(emulator, run_reader) -> None:
    _, rec = run_reader(emulator.path)
    settle(emulator, 2)
    assert probe(emulator.path, timeout=0.2)["error"].startswith("port_unavailable")
    assert rec.problems == []
