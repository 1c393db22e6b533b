"""GPIO devices of the kit, on gpiozero: trigger (pedal/button), RGB status LED, buzzer, light panel.

Each class wraps one gpiozero device and does one thing. The pin factory comes from config: on a Pi
``lgpio`` (or gpiozero's default choice); on a laptop and in tests gpiozero's ``MockFactory`` with
PWM-capable mock pins, so the simulated kit runs exactly this code. :class:`SimPedal` is the
simulated operator's foot: it drives the trigger's mock pin like a real switch would.
Colours, blink rates and beep patterns per state are listed in ``hardware.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gpiozero import PWMLED, RGBLED, Button, Buzzer
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from ..config import BuzzerConfig, LightConfig, StatusLedConfig, TriggerConfig
from ..session import Led, Light, Tone

log = logging.getLogger("capturekit.devices")

# (r, g, b) on/off per channel, and blink (on_s, off_s) or None for steady
LED_PATTERNS: dict[Led, tuple[tuple[int, int, int], tuple[float, float] | None]] = {
    Led.IDLE: ((0, 0, 1), (0.1, 1.9)),  # slow blue blip: alive, waiting for a card
    Led.READY: ((0, 1, 1), None),  # steady cyan: student accepted, press the pedal
    Led.WARN: ((1, 1, 0), (0.25, 0.25)),  # blinking yellow: ready, but this student was shot before
    Led.BUSY: ((1, 1, 1), None),  # white: capturing / storing
    Led.OK: ((0, 1, 0), None),  # steady green: stored (fsynced and committed)
    Led.RETAKE: ((1, 0, 1), (0.3, 0.3)),  # blinking magenta: QC says retake
    Led.REJECT: ((1, 0, 0), (0.2, 0.2)),  # blinking red: card refused (unknown / invalid)
    Led.ERROR: ((1, 0, 0), None),  # steady red: camera or reader error
    Led.FAULT: ((1, 0, 0), (0.1, 0.1)),  # fast red: storage failed, stop
}

# buzzer (on_s, off_s, count)
TONE_PATTERNS: dict[Tone, tuple[float, float, int]] = {
    Tone.ACCEPT: (0.08, 0.0, 1),  # one short
    Tone.OK: (0.08, 0.08, 2),  # two short
    Tone.WARN: (0.08, 0.08, 3),  # three short
    Tone.UNKNOWN: (0.6, 0.0, 1),  # one long
    Tone.INVALID: (0.25, 0.12, 2),  # two medium
    Tone.RETAKE: (0.05, 0.05, 5),  # rapid five
    Tone.ERROR: (0.5, 0.2, 3),  # three long
    Tone.BUSY: (0.03, 0.0, 1),  # a blip
    Tone.TIMEOUT: (0.3, 0.3, 2),  # two slow
}


def pin_factory(name: str) -> Factory | None:
    """The gpiozero pin factory for ``name`` (None lets gpiozero choose)."""
    if name == "mock":
        return MockFactory(pin_class=MockPWMPin)
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    return None


class Trigger:
    """The operator's pedal or button: a debounced gpiozero Button calling ``on_press``."""

    def __init__(self, cfg: TriggerConfig, factory: Factory | None, on_press: Callable[[], None]) -> None:
        self.button = Button(cfg.pin, pull_up=cfg.pull_up, bounce_time=cfg.bounce_s or None, pin_factory=factory)
        self.button.when_pressed = on_press

    def close(self) -> None:
        self.button.close()


class SimPedal:
    """Presses the trigger's mock pin the way a switch to ground does (simulated twin of the foot)."""

    def __init__(self, factory: MockFactory, cfg: TriggerConfig) -> None:
        self.pin = factory.pin(cfg.pin)
        self.pull_up = cfg.pull_up

    def press(self) -> None:
        if self.pull_up:
            self.pin.drive_low()
            self.pin.drive_high()
        else:
            self.pin.drive_high()
            self.pin.drive_low()


class StatusLight:
    """The RGB status LED showing one :class:`Led` state at a time."""

    def __init__(self, cfg: StatusLedConfig, factory: Factory | None) -> None:
        self.led = RGBLED(cfg.red, cfg.green, cfg.blue, active_high=cfg.active_high, pwm=False, pin_factory=factory)
        self.state: Led | None = None

    def show(self, state: Led) -> None:
        colour, blink = LED_PATTERNS[state]
        if blink:
            self.led.blink(on_time=blink[0], off_time=blink[1], on_color=colour, off_color=(0, 0, 0))
        else:
            self.led.color = colour
        self.state = state

    def close(self) -> None:
        self.led.close()


class Beeper:
    """The active buzzer playing one :class:`Tone` pattern in the background."""

    def __init__(self, cfg: BuzzerConfig, factory: Factory | None) -> None:
        self.buzzer = Buzzer(cfg.pin, active_high=cfg.active_high, pin_factory=factory)
        self.last: Tone | None = None

    def play(self, tone: Tone) -> None:
        on, off, n = TONE_PATTERNS[tone]
        self.buzzer.beep(on_time=on, off_time=off, n=n, background=True)
        self.last = tone

    def close(self) -> None:
        self.buzzer.close()


class LightPanel:
    """The LED light panel's dimming input (PWM); full level means fully on, no PWM ripple in the shot."""

    def __init__(self, cfg: LightConfig, factory: Factory | None) -> None:
        self.cfg = cfg
        self.pwm = PWMLED(cfg.pin, frequency=cfg.frequency_hz, pin_factory=factory)
        self.level: Light | None = None

    def set(self, level: Light) -> None:
        self.pwm.value = {Light.IDLE: self.cfg.idle, Light.PREVIEW: self.cfg.preview, Light.SHOT: self.cfg.shot}[level]
        self.level = level

    def close(self) -> None:
        self.pwm.close()
