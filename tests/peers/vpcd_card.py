"""A contactless card of ours on the card side of vpcd (vsmartcard's virtual PC/SC reader driver).

vpcd listens on TCP (one port per slot); the card connects to it. Wire protocol (vsmartcard
``doc/api.txt``, checked against ``src/vpcd/vpcd.c``): every message is a 2-byte big-endian length
and a payload. A 1-byte payload is a control message — ``00`` power off, ``01`` power on, ``02``
reset (no answer), ``04`` get ATR (answered with the ATR). Anything longer is an APDU, answered
with the response APDU. vpcd asks for the ATR on every presence poll of pcscd (about every
400 ms), so a connected card that answers is "present"; a closed connection is "removed".

vpcd forwards APDUs unchanged, so the card answers the reader pseudo-APDUs (``FF CA``, ``FF B0``)
itself: here the card plays both the chip and the reader firmware.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from appliance.readers import idcard_text

log = logging.getLogger("tests.vpcd_card")

SW_OK = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"

# PC/SC part 3 ATRs for contactless cards (the reader builds them; TCK is computed).
ATR_ISO14443A_MIFARE_1K = "3B8F8001804F0CA000000306030001000000006A"


def _atr_with_tck(body: bytes) -> bytes:
    tck = 0
    for b in body[1:]:
        tck ^= b
    return body + bytes([tck])


# ISO 14443-B card (ATQB application data + protocol info, as PC/SC part 3 builds it).
ATR_ISO14443B = _atr_with_tck(bytes.fromhex("3B888001" + "00000000" + "000000" + "81"))


@dataclass
class CardSpec:
    """What a card answers: its ATR and a response per APDU (exact match, else ``6D 00``)."""

    label: str
    atr: bytes
    answers: dict[bytes, bytes] = field(default_factory=dict)
    # Card pulled mid-read: on an APDU starting with this prefix, wait ``pull_after`` seconds
    # without answering, then drop the connection (the card leaves the field).
    pull_on: bytes | None = None
    pull_after: float = 0.0

    def answer(self, apdu: bytes) -> bytes:
        return self.answers.get(apdu, SW_INS_NOT_SUPPORTED)


def campus_card(uid: str) -> CardSpec:
    """An ISO 14443-A campus card whose reader answers ``FF CA 00 00 00`` with ``uid``."""
    return CardSpec(f"campus {uid}", bytes.fromhex(ATR_ISO14443A_MIFARE_1K),
                    {bytes.fromhex("FFCA000000"): bytes.fromhex(uid) + SW_OK})


def resident_id_card() -> CardSpec:
    """A resident ID card on a reader without SAM: ``FF CA`` answers a zero PUPI."""
    return CardSpec("resident id (no SAM)", ATR_ISO14443B,
                    {bytes.fromhex("FFCA000000"): bytes(4) + SW_OK})


def vendor_sam_card(number: str, card_type: str = "", header: bytes = b"\x01\x00\x04\x00",
                    **fields: str) -> CardSpec:
    """A resident ID card on a vendor reader with built-in SAM answering ``FF B0 00 00 00``.

    The answer is a 4-byte header and the 256-byte text block, as the public vendor code
    (Johann356/readinfo ``PCSCGetData.cpp``) reads it; the header bytes are our assumption.
    """
    block = idcard_text.build_text(card_type, number=number, **fields)
    return CardSpec(f"vendor SAM {card_type or 'resident'}", ATR_ISO14443B, {
        bytes.fromhex("FFCA000000"): bytes(4) + SW_OK,
        bytes.fromhex("FFB0000000"): header + block + SW_OK,
    })


class VpcdCard:
    """The card side of one vpcd slot: insert a :class:`CardSpec`, remove it, pull it mid-read.

    While a card is inserted the peer keeps a connection to vpcd and reconnects if vpcd drops it
    (pcscd restarted, reader re-added): a card lying on a reader is still there afterwards.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.apdus: list[bytes] = []  # every APDU received, for assertions
        self._card: CardSpec | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._generation = 0
        self.connected = threading.Event()

    # -- control -------------------------------------------------------------------------------
    def insert(self, card: CardSpec) -> None:
        """Put ``card`` on the reader (connect to vpcd in the background)."""
        self.remove()
        with self._lock:
            self._generation += 1
            self._card = card
            self.connected.clear()
            self._thread = threading.Thread(target=self._run, args=(self._generation, card),
                                            name=f"vpcd-card-{self.port}", daemon=True)
            self._thread.start()
        log.info("insert %s", card.label)

    def remove(self) -> None:
        """Take the card off the reader (close the connection; no reconnect)."""
        with self._lock:
            self._generation += 1
            card, self._card = self._card, None
            thread, self._thread = self._thread, None
            self._close_socket()
        if thread is not None:
            thread.join(timeout=5)
        if card is not None:
            log.info("remove %s", card.label)

    def wait_connected(self, timeout: float = 5.0) -> bool:
        return self.connected.wait(timeout)

    def count(self, apdu_hex: str) -> int:
        """How many times the card received this APDU."""
        wanted = bytes.fromhex(apdu_hex)
        return sum(1 for a in self.apdus if a == wanted)

    # -- wire ----------------------------------------------------------------------------------
    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already disconnected by vpcd
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        self.connected.clear()

    def _current(self, generation: int) -> bool:
        return self._generation == generation

    def _run(self, generation: int, card: CardSpec) -> None:
        while self._current(generation):
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError:
                time.sleep(0.1)  # vpcd not listening (pcscd down or reader removed): retry
                continue
            with self._lock:
                if not self._current(generation):
                    sock.close()
                    return
                self._sock = sock
            try:
                self._serve(generation, card, sock)
            except OSError as exc:
                log.debug("vpcd connection ended: %s", exc)
            with self._lock:
                if self._sock is sock:
                    self._close_socket()
                else:
                    sock.close()
            time.sleep(0.05)

    def _serve(self, generation: int, card: CardSpec, sock: socket.socket) -> None:
        sock.settimeout(2.0)
        while self._current(generation):
            readable, _, _ = select.select([sock], [], [], 0.2)
            if not readable:
                continue
            header = _recv_exact(sock, 2)
            if header is None:
                return  # vpcd closed the connection
            payload = _recv_exact(sock, struct.unpack(">H", header)[0])
            if payload is None:
                return
            self.connected.set()
            if len(payload) == 1:
                if payload[0] == 0x04:
                    _send(sock, card.atr)
                continue  # power off / on / reset: no answer
            self.apdus.append(payload)
            if card.pull_on is not None and payload.startswith(card.pull_on):
                log.info("pull %s mid-read after %.1fs", card.label, card.pull_after)
                deadline = time.monotonic() + card.pull_after
                while time.monotonic() < deadline and self._current(generation):
                    time.sleep(0.02)
                with self._lock:
                    if self._current(generation):
                        self._generation += 1  # the card is gone: no reconnect
                        self._card = None
                        self._close_socket()
                return
            _send(sock, card.answer(payload))


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
