"""The session machine on its own: every classroom case is a plain function call."""

from __future__ import annotations

import pytest

from appliance import idnumber
from appliance.identity import Kind, Source, make
from appliance.session import (
    TRANSITIONS,
    AcceptAnyway,
    Beep,
    FrameFailed,
    IdentityPresented,
    Led,
    Light,
    Note,
    OpenShot,
    OperatorCancel,
    PhotoFailed,
    PhotoTaken,
    ReaderProblem,
    RejectFrame,
    ReopenShot,
    RosterCheck,
    RosterStatus,
    Session,
    SessionConfig,
    SessionProtocolError,
    SetLight,
    ShowLed,
    State,
    StorageFailed,
    Stored,
    StoreFrame,
    TakePhoto,
    Tick,
    Tone,
    TriggerPressed,
    Verdict,
    VoidShot,
    mermaid,
)

CFG = SessionConfig(ready_timeout_s=60, retake_window_s=5, double_press_s=0.8, capture_timeout_s=8,
                    verdict_timeout_s=5, led_hold_s=2)
A = make(Kind.ID_NUMBER, idnumber.make("11010520040101001"), Source.SIM)
B = make(Kind.ID_NUMBER, idnumber.make("11010520040101002"), Source.SIM)
ON = RosterCheck(RosterStatus.ON_ROSTER, label="A")


def present(ident=A, check=ON, read_id=1, t=0.0) -> IdentityPresented:
    return IdentityPresented(ident, check, read_id, t)


def kinds(actions) -> list[type]:
    return [type(a) for a in actions]


def of(actions, cls):
    return [a for a in actions if isinstance(a, cls)]


@pytest.fixture
def s() -> Session:
    return Session(CFG, next_shot=41)


def shoot_ok(s: Session, t: float, shot: int, frame: int) -> list:
    """Trigger -> photo -> pass -> stored, returning all actions."""
    out = s.handle(TriggerPressed(t))
    assert of(out, TakePhoto) == [TakePhoto(shot, frame)]
    out += s.handle(PhotoTaken(shot, frame, t + 0.3))
    out += s.handle(Verdict(shot, frame, "pass", (), t + 0.4))
    assert of(out, StoreFrame) == [StoreFrame(shot, frame, "pass", ())]
    out += s.handle(Stored(shot, frame, t + 0.5))
    return out


def test_normal_flow(s):
    out = s.handle(present(t=0))
    assert out[0] == OpenShot(41, 1)  # journal first: the number is durable before anything else
    assert Beep(Tone.ACCEPT) in out and ShowLed(Led.READY) in out and SetLight(Light.PREVIEW) in out
    assert s.state is State.READY and s.pending.shot == 41
    out = s.handle(TriggerPressed(3.0))
    assert out == [SetLight(Light.SHOT), ShowLed(Led.BUSY), TakePhoto(41, 1)]  # light up, then the shutter
    out = s.handle(PhotoTaken(41, 1, 3.4))
    assert s.state is State.CHECKING and SetLight(Light.PREVIEW) in out
    out = s.handle(Verdict(41, 1, "pass", (), 3.5))
    assert out == [StoreFrame(41, 1, "pass", ())] and s.state is State.STORING
    assert ShowLed(Led.OK) not in out  # "OK" only once stored
    out = s.handle(Stored(41, 1, 3.6))
    assert Beep(Tone.OK) in out and ShowLed(Led.OK) in out and s.state is State.REVIEW
    s.handle(Tick(3.6 + CFG.retake_window_s))
    assert s.state is State.IDLE and s.next_shot == 42


def test_trigger_without_identity_is_an_error_and_takes_no_photo(s):
    out = s.handle(TriggerPressed(1.0))
    assert Beep(Tone.ERROR) in out and ShowLed(Led.ERROR) in out
    assert not of(out, TakePhoto) and not of(out, OpenShot) and not of(out, StoreFrame)
    assert of(out, Note)[0].kind == "trigger_without_identity"
    assert s.state is State.IDLE and s.next_shot == 41
    assert s.handle(Tick(1.0 + CFG.led_hold_s)) == [ShowLed(Led.IDLE)]  # the error shows, then idle again


def test_retake_within_window_reshoots_same_student(s):
    s.handle(present())
    shoot_ok(s, 2.0, 41, 1)
    out = s.handle(TriggerPressed(4.0))  # 1.5 s after stored: inside the 5 s window, past the double-press guard
    assert TakePhoto(41, 2) in out and of(out, Note)[0].kind == "retake"
    s.handle(PhotoTaken(41, 2, 4.3))
    out = s.handle(Verdict(41, 2, "pass", (), 4.4))
    assert out == [StoreFrame(41, 2, "pass", ())]  # the daemon marks the latest good frame selected
    s.handle(Stored(41, 2, 4.5))
    assert s.state is State.REVIEW and s.next_shot == 42  # same shot number, no new one


def test_trigger_after_window_is_not_a_retake(s):
    s.handle(present())
    shoot_ok(s, 2.0, 41, 1)
    s.handle(Tick(2.5 + CFG.retake_window_s))
    out = s.handle(TriggerPressed(2.6 + CFG.retake_window_s))
    assert not of(out, TakePhoto) and Beep(Tone.ERROR) in out


def test_second_identity_while_pending_voids_first(s):
    s.handle(present(A, read_id=1))
    out = s.handle(present(B, read_id=2, t=5.0))
    void = of(out, VoidShot)
    assert len(void) == 1 and void[0].shot == 41 and void[0].reason.startswith("superseded")
    assert OpenShot(42, 2) in out and out.index(void[0]) < out.index(OpenShot(42, 2))
    assert s.pending.shot == 42 and s.pending.identity == B


def test_same_card_twice_while_ready_is_one_student(s):
    s.handle(present(A))
    out = s.handle(present(A, read_id=2, t=1.0))
    assert not of(out, VoidShot) and not of(out, OpenShot) and s.pending.shot == 41


def test_timeout_while_ready_voids_with_reason(s):
    s.handle(present(t=0))
    assert s.handle(Tick(59.9)) == []
    out = s.handle(Tick(60.0))
    void = of(out, VoidShot)
    assert void and void[0].shot == 41 and void[0].reason.startswith("timeout")
    assert ShowLed(Led.IDLE) in out and SetLight(Light.IDLE) in out and s.state is State.IDLE


def test_double_trigger_is_one_shot(s):
    s.handle(present())
    out = s.handle(TriggerPressed(2.0)) + s.handle(TriggerPressed(2.02)) + s.handle(TriggerPressed(2.1))
    assert of(out, TakePhoto) == [TakePhoto(41, 1)]
    s.handle(PhotoTaken(41, 1, 2.3))
    s.handle(Verdict(41, 1, "pass", (), 2.35))
    s.handle(Stored(41, 1, 2.4))
    out = s.handle(TriggerPressed(2.5))  # impatient foot right after the OK: inside the double-press guard
    assert not of(out, TakePhoto) and s.ctx.counts["triggers_ignored"] == 3


def test_camera_failure_keeps_number_open_for_retry(s):
    s.handle(present())
    s.handle(TriggerPressed(2.0))
    out = s.handle(PhotoFailed(41, 1, "frontend timeout", 2.5))
    assert FrameFailed(41, 1, "frontend timeout") in out
    assert ShowLed(Led.ERROR) in out and Beep(Tone.ERROR) in out
    assert not of(out, VoidShot) and s.state is State.READY and s.pending.shot == 41
    out = s.handle(TriggerPressed(4.0))
    assert TakePhoto(41, 2) in out  # a new frame number: the failed one can never be mistaken for it
    s.handle(PhotoTaken(41, 2, 4.3))
    assert of(s.handle(Verdict(41, 2, "pass", (), 4.4)), StoreFrame)


def test_camera_that_never_answers_times_out_and_late_photo_is_not_paired(s):
    s.handle(present())
    s.handle(TriggerPressed(2.0))
    out = s.handle(Tick(2.0 + CFG.capture_timeout_s))
    assert of(out, FrameFailed)[0].reason.startswith("timeout") and s.state is State.READY
    s.handle(TriggerPressed(11.0))  # retry: frame 2
    out = s.handle(PhotoTaken(41, 1, 11.2))  # frame 1 finally arrives: kept, never bound
    assert of(out, RejectFrame)[0].frame == 1 and s.state is State.SHOOTING
    assert of(s.handle(Verdict(41, 1, "pass", (), 11.3)), Note)[0].kind == "stale_verdict"
    s.handle(PhotoTaken(41, 2, 11.4))
    assert s.handle(Verdict(41, 2, "pass", (), 11.5)) == [StoreFrame(41, 2, "pass", ())]


def test_same_student_twice_in_a_session_is_warned_and_reopens_their_shot(s):
    s.handle(present(A, read_id=1))
    shoot_ok(s, 2.0, 41, 1)
    s.handle(Tick(20))
    s.handle(present(B, read_id=2, t=21))
    shoot_ok(s, 23.0, 42, 1)
    s.handle(Tick(40))
    again = RosterCheck(RosterStatus.SHOT_THIS_SESSION, "shot 41 earlier", prior_shot=41, prior_frames=1)
    out = s.handle(present(A, again, read_id=3, t=50))
    assert ReopenShot(41, 3) in out and not of(out, OpenShot)
    assert Beep(Tone.WARN) in out and ShowLed(Led.WARN) in out
    assert TakePhoto(41, 2) in s.handle(TriggerPressed(52))
    assert s.next_shot == 43
    s.handle(PhotoTaken(41, 2, 52.3))
    s.handle(Verdict(41, 2, "pass", (), 52.4))
    s.handle(Stored(41, 2, 52.5))
    s.handle(Tick(60))
    out = s.handle(present(B, read_id=4, t=61))  # the reopened shot is captured: never voided
    assert not of(out, VoidShot)


def test_reopened_shot_times_out_without_void(s):
    again = RosterCheck(RosterStatus.SHOT_THIS_SESSION, prior_shot=7, prior_frames=2)
    s.handle(present(A, again))
    out = s.handle(Tick(CFG.ready_timeout_s))
    assert not of(out, VoidShot) and s.state is State.IDLE


def test_shot_before_in_another_session_is_warned_and_gets_a_new_number(s):
    out = s.handle(present(A, RosterCheck(RosterStatus.SHOT_BEFORE, "shot 3 in session 1")))
    assert OpenShot(41, 1) in out and Beep(Tone.WARN) in out and ShowLed(Led.WARN) in out


@pytest.mark.parametrize("status,tone", [(RosterStatus.INVALID, Tone.INVALID),
                                         (RosterStatus.NOT_ON_ROSTER, Tone.UNKNOWN)])
def test_refused_identity_signals_and_allocates_nothing(s, status, tone):
    out = s.handle(present(A, RosterCheck(status, "check_digit: expected 7")))
    assert Beep(tone) in out and ShowLed(Led.REJECT) in out
    assert not of(out, OpenShot) and s.state is State.IDLE and s.next_shot == 41
    assert of(out, Note)[0].kind == "identity_rejected"


def test_invalid_card_while_pending_keeps_the_pending_student(s):
    s.handle(present(A))
    out = s.handle(present(B, RosterCheck(RosterStatus.INVALID, "check digit"), read_id=2, t=3))
    assert not of(out, VoidShot) and s.pending.identity == A
    assert s.handle(Tick(3 + CFG.led_hold_s)) == [ShowLed(Led.READY)]


def test_qc_fail_asks_for_retake_and_operator_can_accept_anyway(s):
    s.handle(present())
    s.handle(TriggerPressed(2.0))
    s.handle(PhotoTaken(41, 1, 2.3))
    out = s.handle(Verdict(41, 1, "fail", ("eyes_closed",), 2.4))
    assert RejectFrame(41, 1, ("eyes_closed",)) in out and Beep(Tone.RETAKE) in out and ShowLed(Led.RETAKE) in out
    assert s.state is State.READY and s.pending.rejected_frame == 1
    out = s.handle(AcceptAnyway(5.0))
    assert out[0] == StoreFrame(41, 1, "fail", ("accepted by operator",), accepted_by_operator=True)
    s.handle(Stored(41, 1, 5.1))
    assert s.state is State.REVIEW


def test_accept_anyway_without_a_rejected_frame_is_refused(s):
    out = s.handle(AcceptAnyway(1.0))
    assert Beep(Tone.ERROR) in out and not of(out, StoreFrame)
    s.handle(present())
    assert not of(s.handle(AcceptAnyway(2.0)), StoreFrame)


def test_card_during_capture_is_refused_not_queued(s):
    s.handle(present(A))
    s.handle(TriggerPressed(2.0))
    out = s.handle(present(B, read_id=2, t=2.1))
    assert Beep(Tone.BUSY) in out and not of(out, OpenShot) and not of(out, VoidShot)
    assert s.pending.identity == A


def test_operator_cancel_voids_pending(s):
    s.handle(present())
    out = s.handle(OperatorCancel(3.0))
    assert VoidShot(41, "operator cancel") in out and s.state is State.IDLE


def test_qc_that_never_answers_keeps_the_frame_with_a_warning(s):
    s.handle(present())
    s.handle(TriggerPressed(2.0))
    s.handle(PhotoTaken(41, 1, 2.3))
    assert s.handle(Tick(2.3 + CFG.verdict_timeout_s)) == [StoreFrame(41, 1, "warn", ("qc_timeout",))]


def test_reader_problem_signals_in_any_state_without_changing_it(s):
    s.handle(present())
    out = s.handle(ReaderProblem("reader_unplugged", "ACR122U", 1.0))
    assert Beep(Tone.ERROR) in out and ShowLed(Led.ERROR) in out and s.state is State.READY


def test_refused_code_shows_reject_not_error(s):
    out = s.handle(ReaderProblem("qr_expired", "code expired 2026-11-01", 1.0, refused=True))
    assert Beep(Tone.UNKNOWN) in out and ShowLed(Led.REJECT) in out and of(out, Note)[0].kind == "identity_refused"
    assert s.state is State.IDLE


def test_storage_failure_stops_the_station(s):
    s.handle(present())
    out = s.handle(StorageFailed("fsync: EIO", 1.0))
    assert ShowLed(Led.FAULT) in out and s.state is State.FAULT
    out = s.handle(TriggerPressed(2.0)) + s.handle(present(B, t=3.0))
    assert not of(out, TakePhoto) and not of(out, OpenShot)


def test_event_without_a_table_entry_is_a_loud_error(s):
    with pytest.raises(SessionProtocolError):
        s.handle(Stored(41, 1, 0.0))  # nothing is being stored in IDLE


def test_next_shot_must_be_positive():
    with pytest.raises(ValueError):
        Session(CFG, next_shot=0)


# --- the table itself: every row is reachable and every handler keeps to its declared targets

ROUTES = {  # events that bring a fresh session into each state
    State.IDLE: [],
    State.READY: [present()],
    State.SHOOTING: [present(), TriggerPressed(2.0)],
    State.CHECKING: [present(), TriggerPressed(2.0), PhotoTaken(41, 1, 2.1)],
    State.STORING: [present(), TriggerPressed(2.0), PhotoTaken(41, 1, 2.1), Verdict(41, 1, "pass", (), 2.2)],
    State.REVIEW: [present(), TriggerPressed(2.0), PhotoTaken(41, 1, 2.1), Verdict(41, 1, "pass", (), 2.2),
                   Stored(41, 1, 2.3)],
    State.FAULT: [StorageFailed("test", 0.5)],
}
SAMPLES = {
    IdentityPresented: present(B, read_id=9, t=4.0), TriggerPressed: TriggerPressed(4.0),
    PhotoTaken: PhotoTaken(41, 1, 4.0), PhotoFailed: PhotoFailed(41, 1, "x", 4.0),
    Verdict: Verdict(41, 1, "pass", (), 4.0), Stored: Stored(41, 1, 4.0), OperatorCancel: OperatorCancel(4.0),
    AcceptAnyway: AcceptAnyway(4.0), Tick: Tick(4.0),
}
ROWS = [(state, ev) for state, row in TRANSITIONS.items() for ev in row]


@pytest.mark.parametrize("state,event_type", ROWS, ids=[f"{s}-{e.__name__}" for s, e in ROWS])
def test_every_table_row(state, event_type):
    s = Session(CFG, next_shot=41)
    for ev in ROUTES[state]:
        s.handle(ev)
    assert s.state is state
    s.handle(SAMPLES[event_type])
    assert s.state in TRANSITIONS[state][event_type][1]


def test_diagram_is_generated_from_the_table():
    text = mermaid()
    assert "ready --> shooting: TriggerPressed" in text and "review --> shooting: TriggerPressed" in text
    with open("docs/session.md", encoding="utf-8") as fh:
        assert text in fh.read(), "docs/session.md is stale: regenerate with `capturekit diagram`"
