"""The capture station's behaviour: a pure state machine (events in, actions out).

Two rules, as in h11's ``_state.py``:

1. Everything that decides what the kit does next lives in this file.
2. This file knows nothing of who drives it: no I/O, no threads, no clock reads. Every event
   carries the monotonic time ``t`` at which the daemon saw it; deadlines are compared with that.

Most of the behaviour is the table :data:`TRANSITIONS` (state -> event type -> handler and the
states it may lead to); ``docs/session.md`` carries a diagram generated from it
(``capturekit diagram``). An event that has no entry in the current state is a bug in the
caller and raises :class:`SessionProtocolError` — never silently ignored. The few rules that hold
in every state (reader problems, storage failure, LED hold) are plain code in :meth:`Session.handle`.

Shot numbers are decided here (``next_shot`` comes from the journal at start-up) and reach the
journal as :class:`OpenShot` before the trigger can fire, so the number is durable before the
shutter. A shot ends ``captured`` (at least one stored frame) or ``void`` (:class:`VoidShot` with a
reason); frames are numbered per shot and never reused, so a late or failed frame can never be
mistaken for another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from .identity import Identity, masked

# --------------------------------------------------------------------------- vocabulary


class State(StrEnum):
    IDLE = "idle"  # waiting for a student
    READY = "ready"  # identity accepted, shot number open, waiting for the trigger
    SHOOTING = "shooting"  # TakePhoto issued, waiting for the camera
    CHECKING = "checking"  # photo in hand, waiting for the quality verdict
    STORING = "storing"  # StoreFrame issued, waiting for bundle + journal to be durable
    REVIEW = "review"  # a good frame is stored; the retake window is open
    FAULT = "fault"  # storage failed: nothing more is accepted until restart


class RosterStatus(StrEnum):
    ON_ROSTER = "on_roster"
    NOT_ON_ROSTER = "not_on_roster"
    INVALID = "invalid"  # fails GB 11643 (or its kind's format)
    SHOT_THIS_SESSION = "shot_this_session"  # captured earlier in this session: retake of that shot
    SHOT_BEFORE = "shot_before"  # captured in an earlier session / reported by the centre


class Tone(StrEnum):
    """Buzzer patterns (the daemon maps each to a pattern; see hardware.md)."""

    ACCEPT = "accept"
    WARN = "warn"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    OK = "ok"
    RETAKE = "retake"
    ERROR = "error"
    BUSY = "busy"
    TIMEOUT = "timeout"


class Led(StrEnum):
    """Status-LED states (colour and blink per state in hardware.md)."""

    IDLE = "idle"
    READY = "ready"
    WARN = "warn"
    BUSY = "busy"
    OK = "ok"
    RETAKE = "retake"
    REJECT = "reject"
    ERROR = "error"
    FAULT = "fault"


class Light(StrEnum):
    """Light-panel levels (values from config)."""

    IDLE = "idle"
    PREVIEW = "preview"
    SHOT = "shot"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class RosterCheck:
    """What the daemon learnt about an identity before presenting it (roster + journal look-up)."""

    status: RosterStatus
    detail: str = ""
    prior_shot: int | None = None  # with SHOT_THIS_SESSION: the shot to reopen
    prior_frames: int = 0  # frames that shot already has
    label: str = ""  # roster label for a local display only (never logged): class, name, student number


@dataclass(frozen=True)
class IdentityPresented:
    identity: Identity
    check: RosterCheck
    read_id: int  # the journal row of this read
    t: float


@dataclass(frozen=True)
class TriggerPressed:
    t: float


@dataclass(frozen=True)
class PhotoTaken:
    shot: int
    frame: int
    t: float


@dataclass(frozen=True)
class PhotoFailed:
    shot: int
    frame: int
    reason: str
    t: float


@dataclass(frozen=True)
class Verdict:
    shot: int
    frame: int
    result: str  # "pass" | "warn" | "fail"
    reasons: tuple[str, ...]
    t: float


@dataclass(frozen=True)
class Stored:
    shot: int
    frame: int
    t: float


@dataclass(frozen=True)
class StorageFailed:
    detail: str
    t: float


@dataclass(frozen=True)
class OperatorCancel:
    t: float


@dataclass(frozen=True)
class AcceptAnyway:
    """The operator keeps the last frame QC rejected (the record says so)."""

    t: float


@dataclass(frozen=True)
class ReaderProblem:
    code: str
    detail: str
    t: float
    refused: bool = False  # the card/code presented is refused (vs. the reader being unwell)


@dataclass(frozen=True)
class Tick:
    t: float


Event = (IdentityPresented | TriggerPressed | PhotoTaken | PhotoFailed | Verdict | Stored
         | StorageFailed | OperatorCancel | AcceptAnyway | ReaderProblem | Tick)

# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class OpenShot:
    """Journal: allocate shot ``shot`` for the read ``read_id`` (durable before any shutter)."""

    shot: int
    read_id: int


@dataclass(frozen=True)
class ReopenShot:
    """Journal: the same student is back; shot ``shot`` takes more frames."""

    shot: int
    read_id: int


@dataclass(frozen=True)
class VoidShot:
    shot: int
    reason: str


@dataclass(frozen=True)
class TakePhoto:
    shot: int
    frame: int


@dataclass(frozen=True)
class StoreFrame:
    """Write the frame's bundle to the outbox and mark it selected; answer with Stored."""

    shot: int
    frame: int
    verdict: str
    reasons: tuple[str, ...] = ()
    accepted_by_operator: bool = False


@dataclass(frozen=True)
class RejectFrame:
    """Keep the frame on the kit (not spooled) and journal why it was rejected."""

    shot: int
    frame: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class FrameFailed:
    """Journal a capture that produced no photo."""

    shot: int
    frame: int
    reason: str


@dataclass(frozen=True)
class Note:
    """Journal an event that changes no shot (ignored trigger, rejected card, warning...)."""

    kind: str
    detail: str = ""
    shot: int | None = None


@dataclass(frozen=True)
class Beep:
    tone: Tone


@dataclass(frozen=True)
class ShowLed:
    led: Led


@dataclass(frozen=True)
class SetLight:
    level: Light


@dataclass(frozen=True)
class Show:
    """One line for the operator console. ``text`` may go to the system log, so it carries masked keys
    only; ``private`` (the roster's label: class, name, student number) goes only to a local display."""

    text: str
    private: str = ""


Action = (OpenShot | ReopenShot | VoidShot | TakePhoto | StoreFrame | RejectFrame | FrameFailed
          | Note | Beep | ShowLed | SetLight | Show)


class SessionProtocolError(RuntimeError):
    """An event that cannot happen in the current state: a bug in the caller."""


# --------------------------------------------------------------------------- config & context


@dataclass(frozen=True)
class SessionConfig:
    ready_timeout_s: float = 90.0  # identity accepted but no trigger: void the number
    retake_window_s: float = 5.0  # trigger within this after a stored shot = retake (keep it short: see hardware.md)
    double_press_s: float = 0.8  # a second trigger this soon after the last accepted one is ignored
    capture_timeout_s: float = 8.0  # camera answer deadline
    verdict_timeout_s: float = 5.0  # quality-check deadline; past it the frame is kept with a warning
    led_hold_s: float = 2.5  # how long a transient LED (reject, error, ok) shows


@dataclass(frozen=True)
class Pending:
    """The student in front of the camera and their open shot."""

    shot: int
    identity: Identity
    read_id: int
    next_frame: int  # number of the next frame to take
    captured: bool = False  # a frame of this shot is already stored (reopened or retake)
    rejected_frame: int | None = None  # last frame QC rejected (AcceptAnyway target)
    frame: int = 0  # frame in flight (SHOOTING/CHECKING/STORING) or last stored (REVIEW)


@dataclass
class Context:
    state: State = State.IDLE
    pending: Pending | None = None
    deadline: float | None = None  # timeout of the current state, if any
    guard_until: float = 0.0  # triggers before this are treated as a double press
    base_led: Led = Led.IDLE  # what the LED returns to after a transient signal
    led_revert_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- the machine

Handler = Callable[["Session", object], list[Action]]


class Session:
    """One capture station. Feed it events with :meth:`handle`; carry out the actions it returns."""

    def __init__(self, config: SessionConfig, next_shot: int) -> None:
        if next_shot < 1:
            raise ValueError("shot numbers start at 1")
        self.config = config
        self.next_shot = next_shot
        self.ctx = Context()

    @property
    def state(self) -> State:
        return self.ctx.state

    @property
    def pending(self) -> Pending | None:
        return self.ctx.pending

    # ---- entry point
    def handle(self, event: Event) -> list[Action]:
        """Apply one event; return the actions to carry out, in order."""
        ctx = self.ctx
        if isinstance(event, ReaderProblem):  # any state: signal, change nothing
            if event.refused:
                return [Note("identity_refused", f"{event.code}: {event.detail}"),
                        *self._transient(Led.REJECT, Tone.UNKNOWN, event.t), Show(f"REFUSED: {event.detail}")]
            return [Note("reader_problem", f"{event.code}: {event.detail}"),
                    *self._transient(Led.ERROR, Tone.ERROR, event.t), Show(f"READER: {event.code}: {event.detail}")]
        if isinstance(event, StorageFailed):  # any state: stop taking students
            ctx.state, ctx.pending, ctx.deadline = State.FAULT, None, None
            ctx.base_led, ctx.led_revert_at = Led.FAULT, None
            return [Beep(Tone.ERROR), ShowLed(Led.FAULT), SetLight(Light.IDLE),
                    Show(f"STORAGE FAILED — stop and call support: {event.detail}")]
        row = TRANSITIONS[ctx.state].get(type(event))
        if row is None:
            raise SessionProtocolError(f"{type(event).__name__} in state {ctx.state}")
        handler, targets = row
        actions = handler(self, event)
        if ctx.state not in targets:  # the table is the documentation: keep it honest
            raise SessionProtocolError(f"{handler.__name__} led to {ctx.state}, table says {targets}")
        if isinstance(event, Tick) and ctx.led_revert_at is not None and event.t >= ctx.led_revert_at:
            ctx.led_revert_at = None
            actions.append(ShowLed(ctx.base_led))
        return actions

    # ---- helpers
    def _count(self, key: str) -> None:
        self.ctx.counts[key] = self.ctx.counts.get(key, 0) + 1

    def _enter(self, state: State, pending: Pending | None, deadline: float | None, led: Led) -> None:
        ctx = self.ctx
        ctx.state, ctx.pending, ctx.deadline, ctx.base_led = state, pending, deadline, led
        ctx.led_revert_at = None

    def _transient(self, led: Led, tone: Tone, t: float) -> list[Action]:
        """A signal that shows for ``led_hold_s`` and then returns to the state's own LED."""
        self.ctx.led_revert_at = t + self.config.led_hold_s
        return [Beep(tone), ShowLed(led)]

    def busy_identity(self, ev: IdentityPresented) -> list[Action]:
        """A card while a photo is in flight: refuse it; the student taps again afterwards."""
        return [Note("identity_refused_busy", str(ev.identity)), Beep(Tone.BUSY),
                Show("busy — tap again after the shot")]

    def ignore_trigger(self, ev: TriggerPressed) -> list[Action]:
        self._count("triggers_ignored")
        shot = self.ctx.pending.shot if self.ctx.pending else None
        return [Note("trigger_ignored", f"state {self.ctx.state}", shot)]

    def _close_pending(self, reason: str) -> list[Action]:
        """End the open shot: void it unless a frame of it is already stored."""
        p = self.ctx.pending
        if p is None or p.captured:
            return []
        self._count("voids")
        return [VoidShot(p.shot, reason)]

    def present_identity(self, ev: IdentityPresented) -> list[Action]:
        """An identity in IDLE/READY/REVIEW: reject it, or open (or reopen) its shot."""
        check, ident = ev.check, ev.identity
        p = self.ctx.pending
        key, label = masked(ident), check.label
        if check.status is RosterStatus.INVALID:
            return [Note("identity_rejected", f"invalid: {check.detail}"),
                    *self._transient(Led.REJECT, Tone.INVALID, ev.t), Show(f"INVALID ID {key}: {check.detail}")]
        if check.status is RosterStatus.NOT_ON_ROSTER:
            return [Note("identity_rejected", f"not on roster: {key}"),
                    *self._transient(Led.REJECT, Tone.UNKNOWN, ev.t), Show(f"NOT ON ROSTER {key}")]
        if (self.ctx.state is State.READY and p is not None and p.identity.kind == ident.kind
                and p.identity.key == ident.key):
            return [Note("identity_repeated", str(ident), p.shot), Beep(Tone.ACCEPT)]
        actions = self._close_pending(f"superseded: next identity presented before shot {p.shot} was stored"
                                      if p else "")
        warn = check.status in (RosterStatus.SHOT_THIS_SESSION, RosterStatus.SHOT_BEFORE)
        if check.status is RosterStatus.SHOT_THIS_SESSION and check.prior_shot is not None:
            shot = check.prior_shot
            new = Pending(shot, ident, ev.read_id, next_frame=check.prior_frames + 1, captured=True)
            actions.append(ReopenShot(shot, ev.read_id))
            text = f"shot {shot} AGAIN (already shot this session) — retake: {key}"
        else:
            shot = self.next_shot
            self.next_shot += 1
            new = Pending(shot, ident, ev.read_id, next_frame=1)
            actions.append(OpenShot(shot, ev.read_id))
            text = f"shot {shot} ready: {key}" + (" (WARNING: shot before)" if warn else "")
        led = Led.WARN if warn else Led.READY
        self._enter(State.READY, new, ev.t + self.config.ready_timeout_s, led)
        return [*actions, Beep(Tone.WARN if warn else Tone.ACCEPT), ShowLed(led), SetLight(Light.PREVIEW),
                Show(text, label)]

    def _shoot(self, ev: TriggerPressed, p: Pending) -> list[Action]:
        frame = p.next_frame
        self._enter(State.SHOOTING, replace(p, frame=frame, next_frame=frame + 1),
                    ev.t + self.config.capture_timeout_s, Led.BUSY)
        self.ctx.guard_until = ev.t + self.config.double_press_s
        return [SetLight(Light.SHOT), ShowLed(Led.BUSY), TakePhoto(p.shot, frame)]

    def _matches(self, ev: PhotoTaken | PhotoFailed | Verdict | Stored) -> bool:
        p = self.ctx.pending
        return p is not None and (ev.shot, ev.frame) == (p.shot, p.frame)

    def _back_to_ready(self, p: Pending, t: float, led: Led) -> None:
        self._enter(State.READY, p, t + self.config.ready_timeout_s, led)

    def _to_idle(self) -> list[Action]:
        self._enter(State.IDLE, None, None, Led.IDLE)
        return [ShowLed(Led.IDLE), SetLight(Light.IDLE)]

    # ---- IDLE
    def idle_trigger(self, ev: TriggerPressed) -> list[Action]:
        self._count("triggers_without_identity")
        return [Note("trigger_without_identity"), *self._transient(Led.ERROR, Tone.ERROR, ev.t),
                Show("no student: tap the card first")]

    def nothing(self, ev: object) -> list[Action]:
        return []

    def stale_photo(self, ev: PhotoTaken) -> list[Action]:
        """A photo that arrives after its capture timed out: kept, never bound to a shot."""
        self._count("stale_frames")
        return [RejectFrame(ev.shot, ev.frame, ("stale: arrived after the capture deadline",))]

    def stale_failure(self, ev: PhotoFailed) -> list[Action]:
        return [Note("stale_failure", ev.reason, ev.shot)]

    def refuse_accept(self, ev: AcceptAnyway) -> list[Action]:
        """Accept-anyway only means something right after a QC retake signal."""
        return [Note("accept_refused", f"nothing to accept in state {self.ctx.state}"), Beep(Tone.ERROR)]

    def stale_verdict(self, ev: Verdict) -> list[Action]:
        return [Note("stale_verdict", f"frame {ev.frame}: {ev.result}", ev.shot)]

    # ---- READY
    def ready_trigger(self, ev: TriggerPressed) -> list[Action]:
        if ev.t < self.ctx.guard_until:
            return self.ignore_trigger(ev)
        return self._shoot(ev, self.ctx.pending)

    def ready_tick(self, ev: Tick) -> list[Action]:
        if self.ctx.deadline is not None and ev.t >= self.ctx.deadline:
            p = self.ctx.pending
            actions = self._close_pending(f"timeout: no stored shot {self.config.ready_timeout_s:g} s after "
                                          "the identity")
            return [*actions, Beep(Tone.TIMEOUT), *self._to_idle(),
                    Show(f"shot {p.shot} {'closed' if p.captured else 'VOID'}: timeout")]
        return []

    def ready_cancel(self, ev: OperatorCancel) -> list[Action]:
        p = self.ctx.pending
        actions = self._close_pending("operator cancel")
        return [*actions, *self._to_idle(), Show(f"shot {p.shot} {'closed' if p.captured else 'VOID'}: cancelled")]

    def ready_accept(self, ev: AcceptAnyway) -> list[Action]:
        p = self.ctx.pending
        if p.rejected_frame is None:
            return self.refuse_accept(ev)
        frame = p.rejected_frame
        self._enter(State.STORING, replace(p, frame=frame, rejected_frame=None), None, Led.BUSY)
        return [StoreFrame(p.shot, frame, "fail", ("accepted by operator",), accepted_by_operator=True),
                ShowLed(Led.BUSY)]

    # ---- SHOOTING
    def shooting_photo(self, ev: PhotoTaken) -> list[Action]:
        if not self._matches(ev):
            return self.stale_photo(ev)
        self._enter(State.CHECKING, self.ctx.pending, ev.t + self.config.verdict_timeout_s, Led.BUSY)
        return [SetLight(Light.PREVIEW)]

    def shooting_failed(self, ev: PhotoFailed) -> list[Action]:
        if not self._matches(ev):
            return self.stale_failure(ev)
        return self._camera_failed(ev.frame, ev.reason, ev.t)

    def _camera_failed(self, frame: int, reason: str, t: float) -> list[Action]:
        p = self.ctx.pending
        self._count("camera_failures")
        self._back_to_ready(p, t, Led.ERROR)
        return [FrameFailed(p.shot, frame, reason), Beep(Tone.ERROR), ShowLed(Led.ERROR),
                SetLight(Light.PREVIEW), Show(f"CAMERA FAILED ({reason}) — shot {p.shot} still open, press again")]

    def shooting_tick(self, ev: Tick) -> list[Action]:
        if ev.t >= self.ctx.deadline:
            return self._camera_failed(self.ctx.pending.frame, "timeout: no photo from the camera", ev.t)
        return []

    # ---- CHECKING
    def checking_verdict(self, ev: Verdict) -> list[Action]:
        if not self._matches(ev):
            return self.stale_verdict(ev)
        p = self.ctx.pending
        if ev.result == "fail":
            self._count("qc_retakes")
            self._back_to_ready(replace(p, rejected_frame=ev.frame), ev.t, Led.RETAKE)
            return [RejectFrame(p.shot, ev.frame, ev.reasons), Beep(Tone.RETAKE), ShowLed(Led.RETAKE),
                    Show(f"RETAKE shot {p.shot}: {', '.join(ev.reasons)}")]
        self._enter(State.STORING, p, None, Led.BUSY)
        return [StoreFrame(p.shot, ev.frame, ev.result, ev.reasons)]

    def checking_tick(self, ev: Tick) -> list[Action]:
        if ev.t >= self.ctx.deadline:
            p = self.ctx.pending
            self._enter(State.STORING, p, None, Led.BUSY)
            return [StoreFrame(p.shot, p.frame, "warn", ("qc_timeout",))]
        return []

    # ---- STORING
    def storing_stored(self, ev: Stored) -> list[Action]:
        if not self._matches(ev):
            raise SessionProtocolError(f"stored {ev.shot}/{ev.frame}, expected {self.ctx.pending}")
        p = self.ctx.pending
        self._count("frames_stored")
        self._enter(State.REVIEW, replace(p, captured=True), ev.t + self.config.retake_window_s, Led.OK)
        return [Beep(Tone.OK), ShowLed(Led.OK), SetLight(Light.IDLE),
                Show(f"shot {p.shot} stored (frame {p.frame})")]

    # ---- REVIEW
    def review_trigger(self, ev: TriggerPressed) -> list[Action]:
        if ev.t < self.ctx.guard_until:
            return self.ignore_trigger(ev)
        self._count("retakes")
        return [Note("retake", "operator retake within the window", self.ctx.pending.shot),
                *self._shoot(ev, self.ctx.pending)]

    def review_tick(self, ev: Tick) -> list[Action]:
        if ev.t >= self.ctx.deadline:
            return self._to_idle()
        return []

    def review_cancel(self, ev: OperatorCancel) -> list[Action]:
        return self._to_idle()

    # ---- FAULT
    def fault_any(self, ev: object) -> list[Action]:
        return [Beep(Tone.ERROR), ShowLed(Led.FAULT)] if isinstance(ev, TriggerPressed | IdentityPresented) else []


S = State
_BUSY = (S.SHOOTING, S.CHECKING, S.STORING)
_ALL_EVENTS = (IdentityPresented, TriggerPressed, PhotoTaken, PhotoFailed, Verdict, Stored,
               OperatorCancel, AcceptAnyway, Tick)

# state -> event type -> (handler, states it may lead to). ReaderProblem and StorageFailed are
# handled the same way in every state (see Session.handle).
TRANSITIONS: dict[State, dict[type, tuple[Callable, tuple[State, ...]]]] = {
    S.IDLE: {
        IdentityPresented: (Session.present_identity, (S.IDLE, S.READY)),
        TriggerPressed: (Session.idle_trigger, (S.IDLE,)),
        PhotoTaken: (Session.stale_photo, (S.IDLE,)),
        PhotoFailed: (Session.stale_failure, (S.IDLE,)),
        Verdict: (Session.stale_verdict, (S.IDLE,)),
        OperatorCancel: (Session.nothing, (S.IDLE,)),
        AcceptAnyway: (Session.refuse_accept, (S.IDLE,)),
        Tick: (Session.nothing, (S.IDLE,)),
    },
    S.READY: {
        IdentityPresented: (Session.present_identity, (S.READY,)),
        TriggerPressed: (Session.ready_trigger, (S.READY, S.SHOOTING)),
        PhotoTaken: (Session.stale_photo, (S.READY,)),
        PhotoFailed: (Session.stale_failure, (S.READY,)),
        Verdict: (Session.stale_verdict, (S.READY,)),
        OperatorCancel: (Session.ready_cancel, (S.IDLE,)),
        AcceptAnyway: (Session.ready_accept, (S.READY, S.STORING)),
        Tick: (Session.ready_tick, (S.READY, S.IDLE)),
    },
    S.SHOOTING: {
        IdentityPresented: (Session.busy_identity, (S.SHOOTING,)),
        TriggerPressed: (Session.ignore_trigger, (S.SHOOTING,)),
        PhotoTaken: (Session.shooting_photo, (S.CHECKING, S.SHOOTING)),
        PhotoFailed: (Session.shooting_failed, (S.READY, S.SHOOTING)),
        Verdict: (Session.stale_verdict, (S.SHOOTING,)),
        OperatorCancel: (Session.nothing, (S.SHOOTING,)),
        AcceptAnyway: (Session.refuse_accept, (S.SHOOTING,)),
        Tick: (Session.shooting_tick, (S.SHOOTING, S.READY)),
    },
    S.CHECKING: {
        IdentityPresented: (Session.busy_identity, (S.CHECKING,)),
        TriggerPressed: (Session.ignore_trigger, (S.CHECKING,)),
        PhotoTaken: (Session.stale_photo, (S.CHECKING,)),
        PhotoFailed: (Session.stale_failure, (S.CHECKING,)),
        Verdict: (Session.checking_verdict, (S.STORING, S.READY, S.CHECKING)),
        OperatorCancel: (Session.nothing, (S.CHECKING,)),
        AcceptAnyway: (Session.refuse_accept, (S.CHECKING,)),
        Tick: (Session.checking_tick, (S.CHECKING, S.STORING)),
    },
    S.STORING: {
        IdentityPresented: (Session.busy_identity, (S.STORING,)),
        TriggerPressed: (Session.ignore_trigger, (S.STORING,)),
        PhotoTaken: (Session.stale_photo, (S.STORING,)),
        PhotoFailed: (Session.stale_failure, (S.STORING,)),
        Verdict: (Session.stale_verdict, (S.STORING,)),
        Stored: (Session.storing_stored, (S.REVIEW,)),
        OperatorCancel: (Session.nothing, (S.STORING,)),
        AcceptAnyway: (Session.refuse_accept, (S.STORING,)),
        Tick: (Session.nothing, (S.STORING,)),
    },
    S.REVIEW: {
        IdentityPresented: (Session.present_identity, (S.REVIEW, S.READY)),
        TriggerPressed: (Session.review_trigger, (S.REVIEW, S.SHOOTING)),
        PhotoTaken: (Session.stale_photo, (S.REVIEW,)),
        PhotoFailed: (Session.stale_failure, (S.REVIEW,)),
        Verdict: (Session.stale_verdict, (S.REVIEW,)),
        OperatorCancel: (Session.review_cancel, (S.IDLE,)),
        AcceptAnyway: (Session.refuse_accept, (S.REVIEW,)),
        Tick: (Session.review_tick, (S.REVIEW, S.IDLE)),
    },
    S.FAULT: {ev: (Session.fault_any, (S.FAULT,)) for ev in _ALL_EVENTS},
}


def mermaid() -> str:
    """The transition table as a Mermaid state diagram (for docs/session.md)."""
    lines = ["stateDiagram-v2", "    [*] --> idle"]
    for state, row in TRANSITIONS.items():
        if state is S.FAULT:
            continue
        for ev, (handler, targets) in row.items():
            for target in targets:
                if target is not state or handler not in (Session.nothing, Session.ignore_trigger):
                    lines.append(f"    {state} --> {target}: {ev.__name__}")
    lines.append("    note right of fault: any state --> fault on StorageFailed")
    return "\n".join(lines) + "\n"
