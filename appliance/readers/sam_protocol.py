"""The resident-ID-card SAM serial protocol (GA 467 / GA/T 467-2019), sans I/O.

Frames in both directions share one envelope::

    AA AA AA 96 69 | LEN (2 bytes, big-endian) | body | CHK

``LEN`` counts the body and ``CHK``; ``CHK`` is the XOR of every byte after the preamble (``LEN``
and body). A command's body is ``CMD PARA DATA``; a reply's is ``SW1 SW2 SW3 DATA``, where SW1/SW2
echo the card's APDU status and SW3 is the SAM's own status (:class:`Status`). Checked against
the documented bytes: find card ``AA AA AA 96 69 00 03 20 01 22`` and its reply
``… 00 08 00 00 9F 00 00 00 00 97``.

This module only builds and parses bytes: :class:`FrameParser` turns a byte stream into frame
bodies and :class:`FrameError` values, resynchronising on the preamble. The serial I/O lives in
:mod:`appliance.readers.sam`. Sources: ``../shared/reference/id-readers.md`` and
``docs/readers-sam.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from functools import reduce

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
HEADER_LEN = len(PREAMBLE) + 2  # preamble + LEN
COMMAND_MIN_LEN = 3  # CMD PARA CHK
REPLY_MIN_LEN = 4  # SW1 SW2 SW3 CHK
# The largest reply in the command set is 30 10 (text + photo + fingerprints, ~2.3 KB); anything
# claiming more is a corrupt LEN field, not a frame worth waiting for.
MAX_LEN = 4096
SAM_ID_LEN = 16


class Command(Enum):
    """Host commands as ``(CMD, PARA)``."""

    RESET = (0x10, 0xFF)
    STATUS = (0x11, 0xFF)
    READ_SAM_ID = (0x12, 0xFF)
    FIND_CARD = (0x20, 0x01)
    SELECT_CARD = (0x20, 0x02)
    READ_TEXT_PHOTO = (0x30, 0x01)
    READ_NEW_ADDRESS = (0x30, 0x03)
    READ_TEXT_PHOTO_FINGERPRINTS = (0x30, 0x10)
    SET_BAUD_115200 = (0x60, 0x00)
    SET_BAUD_57600 = (0x60, 0x01)
    SET_BAUD_38400 = (0x60, 0x02)
    SET_BAUD_19200 = (0x60, 0x03)
    SET_BAUD_9600 = (0x60, 0x04)

    @property
    def success(self) -> int:
        """The SW3 of a successful reply: 9F for find card, 90 for everything else."""
        return Status.CARD_FOUND if self is Command.FIND_CARD else Status.OK

    def frame(self, data: bytes = b"") -> bytes:
        """The complete command frame."""
        return build_command(*self.value, data)


class Outcome(StrEnum):
    """What an SW3 means for the caller."""

    OK = "ok"  # 90, 9F
    NO_CARD = "no_card"  # 80: nothing in the field (or the card no longer answers find)
    CARD_ERROR = "card_error"  # the card could not be selected, authenticated or read: re-find and retry
    NO_CONTENT = "no_content"  # 91: e.g. no appended address
    SAM_ERROR = "sam_error"  # the SAM or the host link is at fault; unknown codes land here too


class Status(IntEnum):
    """SW3 values (GA 467; names after the public SDK headers)."""

    OK = 0x90
    CARD_FOUND = 0x9F
    FIND_FAILED = 0x80
    SELECT_FAILED = 0x81
    CHECKSUM_ERROR = 0x10
    LENGTH_ERROR = 0x11
    COMMAND_ERROR = 0x21
    UNAUTHORISED = 0x23
    UNKNOWN_ERROR = 0x24
    CARD_AUTH_SAM_FAILED = 0x31
    SAM_AUTH_CARD_FAILED = 0x32
    INFO_CHECK_FAILED = 0x33
    UNRECOGNISED_CARD = 0x40
    READ_FAILED = 0x41
    RANDOM_FAILED = 0x47
    SAM_SELFTEST_FAILED = 0x60
    SAM_NOT_AUTHORISED = 0x66
    NO_CONTENT = 0x91


_MEANING = {
    Status.OK: ("ok", Outcome.OK),
    Status.CARD_FOUND: ("card found", Outcome.OK),
    Status.FIND_FAILED: ("find card failed (no card)", Outcome.NO_CARD),
    Status.SELECT_FAILED: ("select card failed", Outcome.CARD_ERROR),
    Status.CHECKSUM_ERROR: ("SAM received a bad checksum", Outcome.SAM_ERROR),
    Status.LENGTH_ERROR: ("SAM received a bad length", Outcome.SAM_ERROR),
    Status.COMMAND_ERROR: ("SAM rejected the command", Outcome.SAM_ERROR),
    Status.UNAUTHORISED: ("unauthorised operation", Outcome.SAM_ERROR),
    Status.UNKNOWN_ERROR: ("unknown SAM error", Outcome.SAM_ERROR),
    Status.CARD_AUTH_SAM_FAILED: ("card failed to authenticate the SAM", Outcome.CARD_ERROR),
    Status.SAM_AUTH_CARD_FAILED: ("SAM failed to authenticate the card", Outcome.CARD_ERROR),
    Status.INFO_CHECK_FAILED: ("card information check failed", Outcome.CARD_ERROR),
    Status.UNRECOGNISED_CARD: ("unrecognised card", Outcome.CARD_ERROR),
    Status.READ_FAILED: ("reading the card failed", Outcome.CARD_ERROR),
    Status.RANDOM_FAILED: ("getting a random number from the card failed", Outcome.CARD_ERROR),
    Status.SAM_SELFTEST_FAILED: ("SAM self-test failed", Outcome.SAM_ERROR),
    Status.SAM_NOT_AUTHORISED: ("SAM not authorised", Outcome.SAM_ERROR),
    Status.NO_CONTENT: ("no content", Outcome.NO_CONTENT),
}


def _meaning(sw3: int) -> tuple[str, Outcome]:
    try:
        return _MEANING[Status(sw3)]
    except ValueError:
        return "undocumented status", Outcome.SAM_ERROR


def outcome(sw3: int) -> Outcome:
    """Classify an SW3 value; codes not in GA 467 count as SAM errors."""
    return _meaning(sw3)[1]


def describe(sw3: int) -> str:
    """``'0x41 reading the card failed'`` — for logs and problem details."""
    return f"0x{sw3:02X} {_meaning(sw3)[0]}"


class FrameError(ValueError):
    """A malformed frame; ``reason`` is ``bad_checksum``, ``bad_length`` or ``truncated_frame``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PayloadError(ValueError):
    """A well-framed reply whose data does not have the shape its command defines."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One SAM reply. ``data`` is kept out of ``repr`` — it may be a card's personal data."""

    sw1: int
    sw2: int
    sw3: int
    data: bytes = field(default=b"", repr=False)

    @property
    def outcome(self) -> Outcome:
        return outcome(self.sw3)

    def describe(self) -> str:
        return describe(self.sw3)


def checksum(data: bytes) -> int:
    """XOR of ``data`` (pass LEN + body)."""
    return reduce(lambda a, b: a ^ b, data, 0)


def build_frame(body: bytes) -> bytes:
    """Wrap a body in preamble, LEN and checksum."""
    length = len(body) + 1
    if length > 0xFFFF:
        raise ValueError(f"body of {len(body)} bytes does not fit a 16-bit LEN")
    head = length.to_bytes(2, "big") + body
    return PREAMBLE + head + bytes([checksum(head)])


def build_command(cmd: int, para: int, data: bytes = b"") -> bytes:
    """A host command frame."""
    return build_frame(bytes([cmd, para]) + data)


def build_reply(sw3: int, data: bytes = b"", sw1: int = 0, sw2: int = 0) -> bytes:
    """A SAM reply frame (for emulators and tests)."""
    return build_frame(bytes([sw1, sw2, sw3]) + data)


def parse_reply(body: bytes) -> Reply:
    """A reply from a frame body (``SW1 SW2 SW3 DATA``)."""
    if len(body) < REPLY_MIN_LEN - 1:
        raise FrameError("bad_length", f"reply body of {len(body)} bytes has no SW1-SW3")
    return Reply(body[0], body[1], body[2], bytes(body[3:]))


def parse_command(body: bytes) -> tuple[int, int, bytes]:
    """``(CMD, PARA, DATA)`` from a command frame body (the SAM side, for emulators)."""
    if len(body) < COMMAND_MIN_LEN - 1:
        raise FrameError("bad_length", f"command body of {len(body)} bytes has no CMD/PARA")
    return body[0], body[1], bytes(body[2:])


def _preamble_prefix_at_end(buf: bytes | bytearray) -> int:
    """Length of the longest tail of ``buf`` that could be the start of a preamble."""
    for k in range(min(len(PREAMBLE) - 1, len(buf)), 0, -1):
        if buf.endswith(PREAMBLE[:k]):
            return k
    return 0


class FrameParser:
    """Incremental frame parser: feed bytes, get frame bodies and :class:`FrameError` values.

    Bytes before a preamble are skipped and counted in :attr:`discarded`. A frame whose LEN is
    impossible (below ``min_len`` or above ``max_len``) is reported as ``bad_length`` and the
    search resumes after its preamble; a frame whose checksum fails is reported as
    ``bad_checksum`` and dropped whole. The parser has no clock: when the caller's deadline
    passes, :meth:`flush` reports a partial frame as ``truncated_frame``.
    """

    def __init__(self, min_len: int = REPLY_MIN_LEN, max_len: int = MAX_LEN) -> None:
        self.min_len = min_len
        self.max_len = max_len
        self.discarded = 0
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        """Add bytes; return every frame body or error completed by them, in order."""
        self._buf += data
        out: list[bytes | FrameError] = []
        while True:
            start = self._buf.find(PREAMBLE)
            if start < 0:
                keep = _preamble_prefix_at_end(self._buf)
                self._skip(len(self._buf) - keep)
                return out
            self._skip(start)
            if len(self._buf) < HEADER_LEN:
                return out
            length = int.from_bytes(self._buf[len(PREAMBLE):HEADER_LEN], "big")
            if not self.min_len <= length <= self.max_len:
                out.append(FrameError("bad_length", f"LEN {length} outside {self.min_len}..{self.max_len}"))
                del self._buf[:len(PREAMBLE)]
                continue
            end = HEADER_LEN + length
            if len(self._buf) < end:
                return out
            frame = bytes(self._buf[:end])
            del self._buf[:end]
            expected = checksum(frame[len(PREAMBLE):-1])
            if frame[-1] != expected:
                out.append(FrameError("bad_checksum", f"CHK 0x{frame[-1]:02X}, computed 0x{expected:02X}"))
                continue
            out.append(frame[HEADER_LEN:-1])

    def flush(self) -> FrameError | None:
        """Give up on buffered bytes: a started frame becomes ``truncated_frame``, anything else None."""
        buf, self._buf = self._buf, bytearray()
        if not buf.startswith(PREAMBLE):
            self.discarded += len(buf)
            return None
        if len(buf) < HEADER_LEN:
            return FrameError("truncated_frame", f"{len(buf)} bytes, LEN not received")
        length = int.from_bytes(buf[len(PREAMBLE):HEADER_LEN], "big")
        return FrameError("truncated_frame", f"{len(buf)} of {HEADER_LEN + length} bytes received")

    @property
    def pending(self) -> int:
        """Bytes buffered towards a frame not yet complete."""
        return len(self._buf)

    def _skip(self, n: int) -> None:
        if n:
            self.discarded += n
            del self._buf[:n]


def split_text_photo(data: bytes, text_len: int = 256) -> tuple[bytes, int]:
    """The text block and the photo's length from a 30 01 reply's data.

    Layout: text length (2, big-endian) · photo length (2, big-endian) · text · photo. Only the
    text is returned: the photo ("WLT", 1024 bytes) is never copied out of the reply.
    """
    if len(data) < 4:
        raise PayloadError(f"text+photo data of {len(data)} bytes has no length fields")
    tlen, plen = int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")
    if tlen != text_len:
        raise PayloadError(f"text length {tlen}, expected {text_len}")
    if len(data) != 4 + tlen + plen:
        raise PayloadError(f"data is {len(data)} bytes, lengths announce {4 + tlen + plen}")
    return bytes(data[4:4 + tlen]), plen


def text_photo_data(text: bytes, photo: bytes) -> bytes:
    """The data of a 30 01 reply (the inverse of :func:`split_text_photo`; for emulators)."""
    return len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big") + text + photo


def format_sam_id(data: bytes) -> str:
    """The printed form of a 16-byte SAM id, e.g. ``05.01-20230101-0000012345-1234567890``.

    Two little-endian 16-bit fields then three little-endian 32-bit fields, the middle one
    zero-padded to ten digits — as vendor SDKs print it (not in the standard; unverified).
    """
    if len(data) != SAM_ID_LEN:
        raise PayloadError(f"SAM id is {len(data)} bytes, expected {SAM_ID_LEN}")
    u16 = [int.from_bytes(data[i:i + 2], "little") for i in (0, 2)]
    u32 = [int.from_bytes(data[i:i + 4], "little") for i in (4, 8, 12)]
    return f"{u16[0]:02d}.{u16[1]:02d}-{u32[0]}-{u32[1]:010d}-{u32[2]}"
