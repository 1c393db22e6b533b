"""A GA/T 467 SAM on a pseudo-terminal — the SAM reader's simulated twin (tests, `capturekit simulate`).

The emulator owns the pty master and answers command frames on its own thread; the code under
test opens :attr:`SamEmulator.path` with pyserial like a real ``/dev/idcard``. That path is a
symlink to the current pty slave, so :meth:`~SamEmulator.unplug` (close the pty: the reader's
next read or write fails) and :meth:`~SamEmulator.replug` (a new pty behind the same symlink)
behave like a USB reader pulled and plugged back into the same port under a udev symlink.

The SAM's card state follows the usual sequence: find (20 01) → select (20 02) → read (30 01).
Select without a find answers 81, read without a select answers 41. A card that has been read
and stays in the field answers find with 80 until it is lifted (``resting_refind=False``, which
the SDK notes describe) or keeps answering 9F (``resting_refind=True``, also seen): a reader must
give one identity per tap either way.

Faults (:meth:`~SamEmulator.inject`) apply to the next matching command(s) only.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.readers.sam_protocol import (
    COMMAND_MIN_LEN,
    Command,
    FrameError,
    FrameParser,
    Status,
    build_reply,
    parse_command,
    text_photo_data,
)

# Bytes a noisy line might carry before a reply, including broken starts of a preamble.
GARBAGE = b"\x00\xff\xaa\xaa\x13\xaa\xaa\xaa\x96\x00\xaa\x96\x69"
SAM_ID = bytes.fromhex("0500 0100 e5d63401 39300000 d2029649")  # 05.01-20240101-0000012345-1234567890
FIND_DATA = bytes(4)  # the "IIN" of a find reply; zeros in the documented example
SELECT_DATA = bytes(8)  # the "SN" of a select reply


class Fault(enum.Enum):
    """What to do instead of (or to) the normal reply."""

    BAD_CHECKSUM = "bad_checksum"  # flip the checksum byte
    TRUNCATED = "truncated"  # send the first half of the reply, then nothing
    GARBAGE = "garbage"  # send GARBAGE, then the reply
    SILENT = "silent"  # no reply at all
    STATUS = "status"  # reply with ``status`` and no data; the card state does not change
    REMOVE_CARD = "remove_card"  # lift the card, then answer as the SAM would (read → 41)


@dataclass
class _Pending:
    fault: Fault
    command: Command | None
    status: int
    remaining: int


@dataclass
class Card:
    """A card in the field: its 256-byte text block and (opaque) photo."""

    text: bytes
    photo: bytes = field(default_factory=lambda: os.urandom(1024))
    read: bool = False  # read since it was placed (and so silent to find, unless resting_refind)


class SamEmulator:
    """A scripted SAM behind a pty symlink at ``directory/name``."""

    def __init__(self, directory: Path, name: str = "idcard", *, resting_refind: bool = False) -> None:
        self.path = str(Path(directory) / name)
        self.resting_refind = resting_refind
        self.sam_status: int | None = None  # when set, every command is answered with this SW3
        self._lock = threading.Condition()
        self._card: Card | None = None
        self._found = self._selected = False
        self._faults: list[_Pending] = []
        self._received: list[Command] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._parser = FrameParser(min_len=COMMAND_MIN_LEN)
        self._requests: list[tuple[Callable[[], None], threading.Event]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, plugged: bool = True) -> SamEmulator:
        if plugged:
            self._plug()
        self._thread = threading.Thread(target=self._run, name="sam-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._unplug()

    def __enter__(self) -> SamEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def unplug(self) -> None:
        """Close the pty and remove the symlink, as if the USB cable were pulled."""
        self._on_thread(self._unplug)

    def replug(self) -> None:
        """A fresh pty behind the same symlink; the SAM forgets its card state."""
        self._on_thread(self._plug)

    # -- the card ----------------------------------------------------------------------------

    def place(self, text: bytes, photo: bytes | None = None) -> Card:
        """Put a card in the field (replacing any)."""
        card = Card(text) if photo is None else Card(text, photo)
        with self._lock:
            self._card, self._found, self._selected = card, False, False
        return card

    def remove(self) -> None:
        """Lift the card."""
        with self._lock:
            self._card, self._found, self._selected = None, False, False

    @property
    def card(self) -> Card | None:
        with self._lock:
            return self._card

    def inject(self, fault: Fault, on: Command | None = None, *, status: int = Status.READ_FAILED,
               times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` commands matching ``on`` (any command if None)."""
        with self._lock:
            self._faults.append(_Pending(fault, on, status, times))

    # -- observation -------------------------------------------------------------------------

    def count(self, command: Command | None = None) -> int:
        """How many commands (of one kind) the SAM has received."""
        with self._lock:
            return sum(1 for c in self._received if command is None or c is command)

    def received(self) -> list[Command]:
        with self._lock:
            return list(self._received)

    def wait_count(self, command: Command | None, n: int, timeout: float = 3.0) -> bool:
        """Wait until at least ``n`` matching commands have been received."""
        with self._lock:
            return self._lock.wait_for(
                lambda: sum(1 for c in self._received if command is None or c is command) >= n, timeout)

    # -- the thread --------------------------------------------------------------------------

    def _on_thread(self, action: Callable[[], None]) -> None:
        done = threading.Event()
        with self._lock:
            self._requests.append((action, done))
        if not done.wait(2.0):
            raise TimeoutError("emulator thread did not run the request")

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                requests, self._requests = self._requests, []
            for action, done in requests:
                action()
                done.set()
            fd = self._master
            if fd is None:
                time.sleep(0.005)
                continue
            ready, _, _ = select.select([fd], [], [], 0.01)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # no slave open for a moment; the next round tries again
                time.sleep(0.005)
                continue
            for item in self._parser.feed(data):
                self._send(self._answer(item))

    def _plug(self) -> None:
        self._unplug()
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before pyserial configures the port
        self._master, self._slave = master, slave
        tmp = f"{self.path}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        with self._lock:
            self._found = self._selected = False
        self._parser = FrameParser(min_len=COMMAND_MIN_LEN)

    def _unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def _send(self, data: bytes | None) -> None:
        view = memoryview(data or b"")
        while view and self._master is not None:
            _, writable, _ = select.select([], [self._master], [], 0.5)
            if not writable:
                return  # nobody reads the port: drop the rest, as a SAM would
            view = view[os.write(self._master, view):]

    # -- the SAM -----------------------------------------------------------------------------

    def _answer(self, item: bytes | FrameError) -> bytes | None:
        if isinstance(item, FrameError):
            return build_reply(Status.CHECKSUM_ERROR if item.reason == "bad_checksum" else Status.LENGTH_ERROR)
        cmd, para, _ = parse_command(item)
        try:
            command = Command((cmd, para))
        except ValueError:
            return build_reply(Status.COMMAND_ERROR)
        with self._lock:
            self._received.append(command)
            self._lock.notify_all()
            fault = self._take_fault(command)
            if fault is not None and fault.fault is Fault.REMOVE_CARD:
                self._card, self._found, self._selected, fault = None, False, False, None
            if fault is not None and fault.fault is Fault.SILENT:
                return None
            if fault is not None and fault.fault is Fault.STATUS:
                reply = build_reply(fault.status)
            elif self.sam_status is not None:
                reply = build_reply(self.sam_status)
            else:
                reply = self._reply(command)
        if fault is None:
            return reply
        if fault.fault is Fault.BAD_CHECKSUM:
            return reply[:-1] + bytes([reply[-1] ^ 0x5A])
        if fault.fault is Fault.TRUNCATED:
            return reply[:len(reply) // 2]
        if fault.fault is Fault.GARBAGE:
            return GARBAGE + reply
        return reply

    def _take_fault(self, command: Command) -> _Pending | None:
        for pending in self._faults:
            if pending.command is None or pending.command is command:
                pending.remaining -= 1
                if pending.remaining <= 0:
                    self._faults.remove(pending)
                return pending
        return None

    def _reply(self, command: Command) -> bytes:
        card = self._card
        if command in (Command.RESET, Command.STATUS):
            return build_reply(Status.OK)
        if command is Command.READ_SAM_ID:
            return build_reply(Status.OK, SAM_ID)
        if command is Command.FIND_CARD:
            self._found = self._selected = False
            if card is None or (card.read and not self.resting_refind):
                return build_reply(Status.FIND_FAILED)
            self._found = True
            return build_reply(Status.CARD_FOUND, FIND_DATA)
        if command is Command.SELECT_CARD:
            if card is None or not self._found:
                return build_reply(Status.SELECT_FAILED)
            self._selected = True
            return build_reply(Status.OK, SELECT_DATA)
        if command is Command.READ_TEXT_PHOTO:
            if card is None or not self._selected:
                return build_reply(Status.READ_FAILED)
            self._found = self._selected = False
            card.read = True
            return build_reply(Status.OK, text_photo_data(card.text, card.photo))
        return build_reply(Status.COMMAND_ERROR)  # addresses, fingerprints, baud: not emulated
