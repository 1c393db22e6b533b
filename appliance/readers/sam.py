"""Second-generation resident ID card readers that expose their SAM as a serial port (GA/T 467).

:class:`SamReader` polls find card → select card → read text+photo on its own thread and reports
one :class:`~appliance.identity.Identity` per tap: the card's number and nothing else (the name,
address and photo are dropped inside this module; the photo bytes are never copied out of the
reply). :func:`probe` is the bring-up check (status + SAM id). Framing lives in
:mod:`appliance.readers.sam_protocol`; the hardware notes are in ``docs/readers-sam.md``.

One tap, one identity: after a read the reader holds the card and reads again only after
``removal_polls`` consecutive "no card" answers. Some SAMs keep finding a card left in the field,
others stop answering find until it is lifted; both give one read per tap.
"""

from __future__ import annotations

import contextlib
import logging
import termios
import threading
import time
from enum import StrEnum

import serial

from ..identity import Identity, InvalidIdentity, Source, masked
from . import OnIdentity, OnProblem
from .idcard_text import CardDataError, identity_from_text
from .sam_protocol import (
    Command,
    FrameError,
    FrameParser,
    Outcome,
    PayloadError,
    Reply,
    format_sam_id,
    parse_reply,
    split_text_photo,
)

log = logging.getLogger("capturekit.reader.sam")

BAUD_RATES = (115200, 57600, 38400, 19200, 9600)  # GA 467 rates; 115200 is the default
READ_SLICE = 0.05  # seconds a single port read may block: bounds how long stop() waits
# What a vanished port raises: pyserial's SerialException is an OSError, but its tcflush/tcsetattr
# calls let termios.error (not an OSError) through when the device is gone.
PORT_ERRORS = (OSError, termios.error)


class Problem(StrEnum):
    """The ``code`` of every ``on_problem(code, detail)`` this reader reports."""

    PORT_UNAVAILABLE = "port_unavailable"  # the port cannot be opened (absent, busy, no permission)
    PORT_LOST = "port_lost"  # I/O error on an open port (unplugged); reopened with back-off
    TIMEOUT = "timeout"  # no reply at all within the command's timeout
    TRUNCATED_FRAME = "truncated_frame"  # a reply started but stopped short
    BAD_CHECKSUM = "bad_checksum"
    BAD_LENGTH = "bad_length"  # a reply LEN no frame can have
    BAD_REPLY = "bad_reply"  # a well-framed reply that does not fit the command sent
    SAM_ERROR = "sam_error"  # the SAM reports its own or a link fault (10 11 21 23 24 60 66 …)
    READ_FAILED = "read_failed"  # the card could not be selected, authenticated or read; retried
    CARD_UNREADABLE = "card_unreadable"  # gave up on this tap after max_attempts read failures
    CARD_DATA = "card_data"  # the text block does not decode to an identity number
    INTERNAL = "internal"  # a bug: logged with its traceback, the reader carries on


class SamError(Exception):
    """A failed exchange, carrying its :class:`Problem` code."""

    def __init__(self, code: Problem, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class Cancelled(Exception):
    """The reader was stopped while waiting for a reply."""


class SamLink:
    """One command out, one reply frame back, over an open pyserial port (timeout ≤ READ_SLICE)."""

    def __init__(self, port: serial.Serial, cancel: threading.Event | None = None) -> None:
        self.port = port
        self.cancel = cancel or threading.Event()

    def transact(self, command: Command, timeout: float) -> Reply:
        """Send ``command`` and return its reply; raise :class:`SamError` for link faults."""
        self.port.reset_input_buffer()  # a late reply to an earlier command must not answer this one
        self.port.write(command.frame())
        parser = FrameParser()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.cancel.is_set():
                    raise Cancelled
                if time.monotonic() >= deadline:
                    error = parser.flush()
                    if error is not None:
                        raise SamError(Problem(error.reason), f"{command.name}: {error.detail}")
                    raise SamError(Problem.TIMEOUT, f"{command.name}: no reply in {timeout:.2f} s")
                for item in parser.feed(self.port.read(self.port.in_waiting or 1)):
                    if isinstance(item, FrameError):
                        raise SamError(Problem(item.reason), f"{command.name}: {item.detail}")
                    return parse_reply(item)  # the parser's minimum LEN guarantees SW1-SW3
        finally:
            if parser.discarded:
                log.warning("%s: skipped %d stray bytes before the reply", command.name, parser.discarded)

    def drain(self, quiet: float = 0.05, limit: float = 0.5) -> int:
        """Read and drop input until the line is quiet for ``quiet`` s (at most ``limit`` s)."""
        dropped, end, last = 0, time.monotonic() + limit, time.monotonic()
        while not self.cancel.is_set() and time.monotonic() < end:
            chunk = self.port.read(self.port.in_waiting or 1)
            if chunk:
                dropped, last = dropped + len(chunk), time.monotonic()
            elif time.monotonic() - last >= quiet:
                break
        if dropped:
            log.info("dropped %d bytes left on the line after an error", dropped)
        return dropped


def expect_success(command: Command, reply: Reply) -> Reply:
    """Return ``reply`` if it is ``command``'s success status, else raise the matching problem."""
    if reply.sw3 == command.success:
        return reply
    detail = f"{command.name}: {reply.describe()} (SW1 SW2 {reply.sw1:02X} {reply.sw2:02X})"
    if reply.outcome in (Outcome.CARD_ERROR, Outcome.NO_CARD, Outcome.NO_CONTENT):
        raise SamError(Problem.READ_FAILED, detail)
    if reply.outcome is Outcome.SAM_ERROR:
        raise SamError(Problem.SAM_ERROR, detail)
    raise SamError(Problem.BAD_REPLY, f"{detail}: not an answer to this command")


def open_port(port: str, baudrate: int) -> serial.Serial:
    """Open a SAM port 8N1, exclusively, with short read slices and a write timeout."""
    return serial.Serial(port, baudrate, bytesize=8, parity="N", stopbits=1, timeout=READ_SLICE,
                         write_timeout=1.0, exclusive=True)


class SamReader:
    """A GA/T 467 SAM reader on a serial port, as a :class:`~appliance.readers.Reader`.

    ``command_timeout`` bounds status/find/select, ``read_timeout`` the text+photo read (about
    1.3 KB plus the card's own read time). Problems are logged and reported through
    ``on_problem``; the thread never dies of one. Link and SAM faults back off exponentially up
    to ``backoff_max`` seconds, and ``reopen_after`` consecutive link faults reopen the port.
    Both callbacks run on the reader's own thread.
    """

    def __init__(self, port: str, baudrate: int = 115200, poll_interval: float = 0.25, name: str = "", *,
                 command_timeout: float = 1.0, read_timeout: float = 3.0, removal_polls: int = 2,
                 max_attempts: int = 3, backoff_max: float = 5.0, reopen_after: int = 3,
                 show_names: bool = False) -> None:
        self.port = port
        self.show_names = show_names  # pass the card's name for a local display (privacy.show_names)
        self.baudrate = baudrate
        self.poll_interval = poll_interval
        self.name = name or f"sam:{port}"
        self.command_timeout = command_timeout
        self.read_timeout = read_timeout
        self.removal_polls = removal_polls
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        self.reopen_after = reopen_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: SamLink | None = None
        self._on_identity: OnIdentity | None = None
        self._on_problem: OnProblem | None = None
        self._checked = False  # SAM status verified since the port was opened
        self._held = False  # a card was read (or given up on) and has not been lifted yet
        self._misses = 0  # consecutive "no card" answers
        self._attempts = 0  # failed reads of the card now in the field
        self._faults = 0  # consecutive link/SAM faults (drives back-off and reopening)
        self._open_failures = 0  # consecutive failures to open the port

    # -- Reader protocol ---------------------------------------------------------------------

    def start(self, on_identity: OnIdentity, on_problem: OnProblem) -> None:
        """Open the port and start polling on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError(f"reader {self.name} already started")
        self._on_identity, self._on_problem = on_identity, on_problem
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the port; returns within about READ_SLICE."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():
                log.error("%s: reader thread did not stop within 2 s", self.name)
            self._thread = None

    # -- the polling thread ------------------------------------------------------------------

    def _run(self) -> None:
        log.info("%s: polling %s at %d baud", self.name, self.port, self.baudrate)
        try:
            while not self._stop.is_set():
                try:
                    delay = self._cycle()
                except Exception:  # _cycle handles everything it knows; this keeps the thread alive
                    log.exception("%s: polling cycle failed", self.name)
                    delay = self.backoff_max
                self._stop.wait(delay)
        finally:
            self._close()
            log.info("%s: stopped", self.name)

    def _cycle(self) -> float:
        """One poll; returns the seconds to wait before the next."""
        if self._link is None and not self._open():
            return self._backoff(self._open_failures)
        try:
            self._poll()
        except Cancelled:
            return 0.0
        except SamError as exc:
            return self._fault(exc)
        except serial.SerialTimeoutException as exc:  # write blocked: the bridge is wedged
            self._lost(f"write timed out: {exc}")
            return self._backoff(1)
        except PORT_ERRORS as exc:
            self._lost(f"{type(exc).__name__}: {exc}")
            return self._backoff(1)
        except Exception as exc:
            log.exception("%s: unexpected error while polling", self.name)
            self._report(Problem.INTERNAL, f"{type(exc).__name__}: {exc}")
            self._faults += 1
            return self._backoff(self._faults)
        self._faults = 0
        return self.poll_interval

    def _poll(self) -> None:
        link = self._link
        assert link is not None
        if not self._checked:
            expect_success(Command.STATUS, link.transact(Command.STATUS, self.command_timeout))
            self._checked = True
        found = link.transact(Command.FIND_CARD, self.command_timeout)
        if found.outcome is Outcome.NO_CARD:
            self._misses += 1
            self._attempts = 0
            if self._held and self._misses >= self.removal_polls:
                log.debug("%s: card lifted", self.name)
                self._held = False
            return
        expect_success(Command.FIND_CARD, found)
        self._misses = 0
        if not self._held:
            self._read(link)

    def _read(self, link: SamLink) -> None:
        expect_success(Command.SELECT_CARD, link.transact(Command.SELECT_CARD, self.command_timeout))
        reply = expect_success(Command.READ_TEXT_PHOTO,
                               link.transact(Command.READ_TEXT_PHOTO, self.read_timeout))
        try:
            text, _photo_len = split_text_photo(reply.data)
        except PayloadError as exc:
            raise SamError(Problem.BAD_REPLY, f"READ_TEXT_PHOTO: {exc}") from exc
        del reply  # the reply holds the photo and the text: nothing of it outlives this call
        try:
            identity = identity_from_text(text, Source.SAM, self.name, keep_name=self.show_names)
        except (CardDataError, InvalidIdentity) as exc:
            raise SamError(Problem.CARD_DATA, str(exc)) from exc
        finally:
            del text
        self._held, self._attempts = True, 0
        self._emit(identity)

    # -- outcomes ----------------------------------------------------------------------------

    def _emit(self, identity: Identity) -> None:
        log.info("%s: card read: %s", self.name, masked(identity))
        assert self._on_identity is not None
        try:
            self._on_identity(identity)
        except Exception:
            log.exception("%s: on_identity raised; the read is lost to the daemon", self.name)

    def _fault(self, exc: SamError) -> float:
        self._report(exc.code, exc.detail)
        if exc.code is Problem.CARD_DATA:
            self._held = True  # the same card would decode the same way: wait for the next tap
            return self.poll_interval
        if exc.code is Problem.READ_FAILED:
            self._attempts += 1
            if self._attempts >= self.max_attempts:
                self._report(Problem.CARD_UNREADABLE,
                             f"{self._attempts} failed reads; lift the card and present it again")
                self._held, self._attempts = True, 0
            return self.poll_interval
        self._faults += 1
        if self._link is not None and exc.code is not Problem.SAM_ERROR:
            try:
                self._link.drain()
            except PORT_ERRORS as lost:
                self._lost(f"{type(lost).__name__}: {lost}")
                return self._backoff(1)
            if self._faults % self.reopen_after == 0:
                log.warning("%s: %d link faults in a row, reopening %s", self.name, self._faults, self.port)
                self._close()
        return self._backoff(self._faults)

    def _lost(self, detail: str) -> None:
        self._report(Problem.PORT_LOST, f"{self.port}: {detail}")
        self._close()
        self._open_failures = 1

    def _report(self, code: Problem, detail: str) -> None:
        log.warning("%s: %s: %s", self.name, code, detail)
        assert self._on_problem is not None
        try:
            self._on_problem(code, detail)
        except Exception:
            log.exception("%s: on_problem raised", self.name)

    def _backoff(self, failures: int) -> float:
        return min(self.backoff_max, self.poll_interval * 2 ** max(failures, 1))

    # -- the port ----------------------------------------------------------------------------

    def _open(self) -> bool:
        try:
            port = open_port(self.port, self.baudrate)
        except (*PORT_ERRORS, ValueError) as exc:
            self._open_failures += 1
            if self._open_failures == 1:
                self._report(Problem.PORT_UNAVAILABLE, f"{self.port}: {exc}")
            else:
                log.debug("%s: %s still unavailable (attempt %d): %s",
                          self.name, self.port, self._open_failures, exc)
            return False
        if self._open_failures:
            log.info("%s: %s open again after %d attempts", self.name, self.port, self._open_failures)
        self._link = SamLink(port, self._stop)
        self._open_failures = 0
        # _held survives: a card read before the port dropped is not read again until lifted.
        return True

    def _close(self) -> None:
        link, self._link = self._link, None
        self._checked = False
        if link is not None:
            with contextlib.suppress(*PORT_ERRORS):  # closing a port that is already gone
                link.port.close()


def probe(port: str, baudrate: int = 115200, timeout: float = 1.0, scan: bool = False) -> dict[str, object]:
    """Bring-up check: SAM status, SAM id and whether a card is in the field. Never reads a card.

    With ``scan`` every GA 467 baud rate is tried (``baudrate`` first) until the SAM answers.
    Returns what was learned; ``error`` is ``None`` when everything answered.
    """
    rates = [baudrate, *(r for r in BAUD_RATES if r != baudrate)] if scan else [baudrate]
    result: dict[str, object] = {"port": port, "baudrate": None, "status": None, "sam_id": None,
                                 "sam_id_hex": None, "card_present": None, "error": None}
    for rate in rates:
        try:
            with open_port(port, rate) as ser:
                link = SamLink(ser)
                status = link.transact(Command.STATUS, timeout)
                result.update(baudrate=rate, status=status.describe())
                expect_success(Command.STATUS, status)
                sam_id = expect_success(Command.READ_SAM_ID, link.transact(Command.READ_SAM_ID, timeout))
                result["sam_id_hex"] = sam_id.data.hex(" ")
                result["sam_id"] = format_sam_id(sam_id.data)
                found = link.transact(Command.FIND_CARD, timeout)
                result["card_present"] = found.outcome is Outcome.OK
                result["error"] = None
                return result
        except SamError as exc:
            result["error"] = f"{exc.code}: {exc.detail}"
            if exc.code is not Problem.TIMEOUT:
                return result
        except PayloadError as exc:
            result["error"] = f"{Problem.BAD_REPLY}: READ_SAM_ID: {exc}"
            return result
        except (*PORT_ERRORS, ValueError) as exc:
            result["error"] = f"{Problem.PORT_UNAVAILABLE}: {exc}"
            return result
    return result
