"""PC/SC card reader (pyscard): one identity per tap from any PC/SC contactless reader.

One thread per :class:`PcscReader` waits in ``SCardGetStatusChange`` on every reader whose name
contains ``reader_filter`` (plus the PnP pseudo-reader, so plugged readers are noticed). A card
arriving is read once with the configured :mod:`card profile <.card_profiles>`; it is read again
only after it has left the field (pcsc-lite's per-reader event counter also catches a remove and
re-tap between two polls). Problems go to ``on_problem(code, detail)`` and to the log
(``capturekit.reader.pcsc``); the loop then recovers by itself. Stable codes:

=========================  ==================================================================
``pcsc_unavailable``       no PC/SC service (pcscd stopped or restarted); the context is
                           re-established with back-off, once per outage reported
``reader_missing``         no reader matches the filter (since start, or after a restart)
``reader_unplugged``       a reader that was in use disappeared
``card_removed_mid_read``  the card left the field before the read finished
``unknown_card``           the card answered, but not with an identity of this profile
                           (status word not 90 00, short answer, all-zero UID, mute card)
``card_data_invalid``      the identity data did not decode (text block, UID format)
``card_read_failed``       the read failed while the card stayed (connect or transport error)
``reader_error``           any other PC/SC or internal error (logged with its traceback)
``callback_error``         ``on_identity`` raised (logged with its traceback)
=========================  ==================================================================

Identity keys never reach the log in clear: only :func:`~appliance.identity.masked` forms.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from smartcard import scard

from ..identity import Identity, InvalidIdentity, masked
from . import OnIdentity, OnProblem
from .card_profiles import CardError, CardProfile, UnknownCardError, get_profile
from .idcard_text import CardDataError

log = logging.getLogger("capturekit.reader.pcsc")

PNP = "\\\\?PnP?\\Notification"
# Errors after which the context is dead: the service went away (pcscd stopped or restarted).
SERVICE_LOST = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_INVALID_HANDLE,
                scard.SCARD_F_COMM_ERROR}
READER_GONE = {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE}
GONE_STATES = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_IGNORE


def _code(rc: int) -> str:
    return f"0x{rc & 0xFFFFFFFF:08X} {scard.SCardGetErrorMessage(rc)}"


class PcscError(Exception):
    """A PC/SC call failed; ``rc`` is the SCARD_* code."""

    def __init__(self, call: str, rc: int) -> None:
        super().__init__(f"{call}: {_code(rc)}")
        self.rc = rc


class ServiceLost(PcscError):
    """The PC/SC context is no longer usable (pcscd gone or restarted)."""


def _check(call: str, rc: int) -> None:
    if rc == scard.SCARD_S_SUCCESS:
        return
    raise (ServiceLost if rc in SERVICE_LOST else PcscError)(call, rc)


def _check_context(call: str, rc: int) -> None:
    """Like :func:`_check` for context-wide calls: an unexpected code while pcscd is going away
    (seen: ``SCARD_W_SECURITY_VIOLATION`` from a wait cut short) counts as the service lost."""
    if rc == scard.SCARD_S_SUCCESS:
        return
    if rc in SERVICE_LOST or not _service_alive():
        raise ServiceLost(call, rc)
    raise PcscError(call, rc)


def _service_alive() -> bool:
    rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rc != scard.SCARD_S_SUCCESS:
        return False
    scard.SCardReleaseContext(ctx)
    return True


@dataclass
class _Slot:
    """What we know of one reader: its last state, the presentation handled, the key read."""

    state: int = scard.SCARD_STATE_UNAWARE
    handled: int | None = None  # event counter of the presentation already read (None: none)
    held: str | None = None  # key read for the card still on the reader (memory only, never logged)
    resume_until: float = 0.0  # after PC/SC came back: until then the reader is settling

    def resuming(self) -> bool:
        return self.held is not None and time.monotonic() < self.resume_until


class _Backoff:
    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap, self.delay = first, cap, first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class PcscReader:
    """Reader protocol on PC/SC: ``profile`` names a row of :data:`~.card_profiles.PROFILES`."""

    def __init__(self, name: str = "pcsc", profile: str | CardProfile = "uid", reader_filter: str = "", *,
                 poll_interval: float = 0.5, max_backoff: float = 5.0,
                 settle_time: float = 1.0, resume_grace: float = 3.0) -> None:
        self.name = name
        self.profile = get_profile(profile)
        self.reader_filter = reader_filter
        self.poll_interval = poll_interval  # longest wait in SCardGetStatusChange
        self.max_backoff = max_backoff  # longest pause between attempts to reach pcscd
        self.settle_time = settle_time  # how long a failed read waits to see if the card left
        self.resume_grace = resume_grace  # how long readers may settle after PC/SC came back
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx: int | None = None
        self._slots: dict[str, _Slot] = {}
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._use_pnp = True
        self._outage = False
        self._missing_reported = False
        self._on_identity: OnIdentity = lambda identity: None
        self._on_problem: OnProblem = lambda code, detail: None

    # -- Reader protocol ---------------------------------------------------------------------
    def start(self, on_identity: OnIdentity, on_problem: OnProblem) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"reader {self.name} already started (or its thread is still busy)")
        self._on_identity, self._on_problem = on_identity, on_problem
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"pcsc-{self.name}", daemon=True)
        self._thread.start()
        log.info("%s: started (profile %s, reader filter %r)", self.name, self.profile.name,
                 self.reader_filter)

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is threading.current_thread():
            return  # called from a callback: the loop ends when the callback returns
        deadline = time.monotonic() + 1.0  # a card stalled mid-APDU can hold the thread longer
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            ctx = self._ctx
            if ctx is not None:  # wake SCardGetStatusChange; repeated in case we raced past one
                rc = scard.SCardCancel(ctx)
                if rc != scard.SCARD_S_SUCCESS:
                    log.debug("%s: SCardCancel: %s", self.name, _code(rc))
            thread.join(timeout=0.05)
        if thread is not None and thread.is_alive():
            log.warning("%s: reader thread still inside a card transaction; it exits when that "
                        "returns", self.name)
        else:
            self._thread = None
        log.info("%s: stopped", self.name)

    # -- loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = _Backoff(0.1, self.max_backoff)
        while not self._stop.is_set():
            try:
                self._session(backoff)
            except ServiceLost as exc:
                self._service_down(str(exc))
                self._stop.wait(backoff.next())
            except Exception as exc:
                log.exception("%s: unexpected error in the PC/SC loop", self.name)
                self._problem("reader_error", f"{type(exc).__name__}: {exc}")
                self._stop.wait(backoff.next())

    def _session(self, backoff: _Backoff) -> None:
        """One PC/SC context, from establishing it until the service goes away or we stop."""
        rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rc != scard.SCARD_S_SUCCESS:  # no service, or access refused (polkit): wait and retry
            raise ServiceLost("SCardEstablishContext", rc)
        self._ctx = ctx
        try:
            self._new_context()
            self._watch(ctx, backoff)
        finally:
            self._ctx = None
            rc = scard.SCardReleaseContext(ctx)
            if rc != scard.SCARD_S_SUCCESS:
                log.debug("%s: SCardReleaseContext: %s", self.name, _code(rc))

    def _new_context(self) -> None:
        """Forget reader states; remember which card was on which reader (see :meth:`_read`)."""
        for slot in self._slots.values():
            slot.state = scard.SCARD_STATE_UNAWARE
            slot.handled = None
            slot.resume_until = time.monotonic() + self.resume_grace
        self._pnp_state = scard.SCARD_STATE_UNAWARE

    def _service_down(self, detail: str) -> None:
        if not self._outage:
            self._outage = True
            self._problem("pcsc_unavailable", detail)
        else:
            log.debug("%s: PC/SC still unavailable: %s", self.name, detail)

    def _watch(self, ctx: int, backoff: _Backoff) -> None:
        while not self._stop.is_set():
            readers = self._list_readers(ctx)
            if self._outage:
                self._outage = False
                log.info("%s: PC/SC service is back", self.name)
            backoff.reset()
            self._sync_readers(readers)
            states = [(PNP, self._pnp_state)] if self._use_pnp else []
            states += [(r, self._slots[r].state) for r in readers]
            rc, changed = scard.SCardGetStatusChange(ctx, int(self.poll_interval * 1000), states)
            if rc in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                continue
            if rc in READER_GONE:
                self._stop.wait(0.05)  # the next listing tells which reader went away
                continue
            _check_context("SCardGetStatusChange", rc)
            for reader, event, atr in changed:
                event &= ~scard.SCARD_STATE_CHANGED
                if reader == PNP:
                    self._pnp_state = event
                    if event & scard.SCARD_STATE_UNKNOWN:  # no PnP notification here: poll instead
                        log.info("%s: PC/SC has no PnP notification; polling the reader list", self.name)
                        self._use_pnp = False
                elif reader in self._slots:
                    self._on_state(ctx, reader, event, bytes(atr))

    def _list_readers(self, ctx: int) -> list[str]:
        rc, readers = scard.SCardListReaders(ctx, [])
        if rc in (scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_READER_UNAVAILABLE):
            return []
        _check_context("SCardListReaders", rc)
        wanted = self.reader_filter.casefold()
        return [r for r in readers if wanted in r.casefold()]

    def _sync_readers(self, readers: Sequence[str]) -> None:
        for gone in [r for r in self._slots if r not in readers]:
            del self._slots[gone]
            self._missing_reported = True  # "unplugged" says it; no "missing" on top
            self._problem("reader_unplugged", gone)
        for new in readers:
            if new not in self._slots:
                self._slots[new] = _Slot()
                log.info("%s: watching reader %r", self.name, new)
        if readers:
            self._missing_reported = False
        elif not self._missing_reported:
            self._missing_reported = True
            self._problem("reader_missing", f"no PC/SC reader matches {self.reader_filter!r}")

    # -- one reader --------------------------------------------------------------------------
    def _on_state(self, ctx: int, reader: str, event: int, atr: bytes) -> None:
        slot = self._slots[reader]
        slot.state = event
        if event & GONE_STATES:
            return  # handled by the next listing
        if event & scard.SCARD_STATE_EMPTY:
            if slot.resuming():  # a reader coming back may see its card only a moment later
                slot.handled = None
                return
            if slot.handled is not None or slot.held is not None:
                log.info("%s: card left %r", self.name, reader)
            slot.handled, slot.held = None, None
            return
        if not event & scard.SCARD_STATE_PRESENT:
            return
        counter = (event >> 16) & 0xFFFF
        if slot.handled == counter:
            return  # same presentation (our own connect changes INUSE bits)
        slot.handled = counter
        if event & scard.SCARD_STATE_MUTE:
            self._problem("unknown_card", f"{reader}: card does not answer (mute), ATR {atr.hex().upper()}")
            return
        self._read(ctx, reader, slot, atr)

    def _read(self, ctx: int, reader: str, slot: _Slot, atr: bytes) -> None:
        where = f"{reader}, ATR {atr.hex().upper()}"
        try:
            identity = self._transact(ctx, reader)
        except ServiceLost:
            raise
        except UnknownCardError as exc:
            self._problem("unknown_card", f"{where}: {exc.detail}")
            return
        except CardDataError as exc:
            self._problem("card_data_invalid", f"{where}: {exc}")
            return
        except InvalidIdentity as exc:  # its message may carry the key: log the reason only
            self._problem("card_data_invalid", f"{where}: {exc.reason}")
            return
        except (CardError, PcscError) as exc:
            if self._card_left(ctx, reader, slot):
                self._problem("card_removed_mid_read", f"{where}: {exc}")
            elif isinstance(exc, CardError):
                self._problem("unknown_card", f"{where}: {exc}")
            else:
                self._problem("card_read_failed", f"{where}: {exc}")
            return
        if slot.resuming() and slot.held == identity.key:
            # the card that was on the reader before the outage is still there: same presentation
            log.info("%s: %s still on %r after PC/SC came back; not read again", self.name,
                     masked(identity), reader)
            slot.resume_until = 0.0
            return
        slot.held, slot.resume_until = identity.key, 0.0
        log.info("%s: read %s on %r", self.name, identity, reader)
        try:
            self._on_identity(identity)
        except Exception as exc:
            log.exception("%s: on_identity failed", self.name)
            self._problem("callback_error", f"on_identity: {type(exc).__name__}")

    def _transact(self, ctx: int, reader: str) -> Identity:
        rc, card, protocol = scard.SCardConnect(ctx, reader, scard.SCARD_SHARE_SHARED,
                                                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        _check("SCardConnect", rc)
        try:
            return self.profile.read(lambda apdu: _transmit(card, protocol, apdu), self.name)
        finally:
            rc = scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
            if rc != scard.SCARD_S_SUCCESS:
                log.debug("%s: SCardDisconnect: %s", self.name, _code(rc))

    def _card_left(self, ctx: int, reader: str, slot: _Slot) -> bool:
        """After a failed read: wait up to ``settle_time`` to see whether the card left the field."""
        current = slot.state
        deadline = time.monotonic() + self.settle_time
        while (left := deadline - time.monotonic()) > 0:
            rc, states = scard.SCardGetStatusChange(ctx, max(1, int(left * 1000)), [(reader, current)])
            if rc == scard.SCARD_E_TIMEOUT:
                return False
            if rc in READER_GONE:
                return True
            _check("SCardGetStatusChange", rc)
            event = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if event & (scard.SCARD_STATE_EMPTY | GONE_STATES):
                return True
            if (event >> 16) & 0xFFFF != (current >> 16) & 0xFFFF:
                return True  # removed and tapped again meanwhile
            current = event  # only INUSE/EXCLUSIVE bits moved: wait on
        return False

    def _problem(self, code: str, detail: str) -> None:
        log.warning("%s: %s: %s", self.name, code, detail)
        try:
            self._on_problem(code, detail)
        except Exception:
            log.exception("%s: on_problem failed", self.name)


def _transmit(card: int, protocol: int, apdu: bytes) -> bytes:
    """Send one APDU; follow ``61 xx`` (GET RESPONSE) and ``6C xx`` (wrong Le) like a T=0 host."""
    rc, response = scard.SCardTransmit(card, protocol, list(apdu))
    _check("SCardTransmit", rc)
    data = b""
    resp = bytes(response)
    for _ in range(16):
        if len(resp) >= 2 and resp[-2] == 0x61:
            data += resp[:-2]
            rc, response = scard.SCardTransmit(card, protocol, [0x00, 0xC0, 0x00, 0x00, resp[-1]])
        elif len(resp) == 2 and resp[0] == 0x6C and len(apdu) == 5:
            rc, response = scard.SCardTransmit(card, protocol, [*apdu[:4], resp[1]])
        else:
            break
        _check("SCardTransmit", rc)
        resp = bytes(response)
    return data + resp
