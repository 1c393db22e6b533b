"""Kit configuration: one TOML file, validated at start-up with errors that name the bad key.

Path: ``--config``, else ``$CAPTUREKIT_CONFIG``, else ``/etc/capturekit/kit.toml``. With no file at
the default path the embedded defaults apply (simulated hardware, data in ``/var/lib/capturekit``),
which is what a laptop wants; a kit gets its file from ansible. ``docs/configuration.md`` lists
every key; ``capturekit config --defaults`` prints them as TOML.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bundle import CentreKey
from .qc.config import PhotoSpec, QcConfig
from .session import SessionConfig

DEFAULT_PATH = Path("/etc/capturekit/kit.toml")
ENV_PATH = "CAPTUREKIT_CONFIG"


READER_TYPES = ("sim", "pcsc", "sam", "qr_scanner", "qr_camera")


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = "mock"  # "mock" (simulated pins), "lgpio" (Pi 5 / Bookworm), "rpigpio", "default"


@dataclass(frozen=True)
class TriggerConfig:
    pin: int = 17  # BCM number; pedal/button to ground, internal pull-up
    pull_up: bool = True
    bounce_s: float = 0.05  # debounce at the pin (lgpio: level must be stable this long)


@dataclass(frozen=True)
class StatusLedConfig:
    red: int = 5
    green: int = 6
    blue: int = 13
    active_high: bool = True  # False for a common-anode LED


@dataclass(frozen=True)
class BuzzerConfig:
    pin: int = 12
    active_high: bool = True


@dataclass(frozen=True)
class LightConfig:
    pin: int = 18  # PWM dimming input of the panel driver
    frequency_hz: int = 2000
    idle: float = 0.2  # 0..1 levels per Light state; "shot" 1.0 means fully on, no PWM ripple
    preview: float = 0.6
    shot: float = 1.0


@dataclass(frozen=True)
class CameraConfig:
    backend: str = "sim"  # "sim" | "picamera2"
    width: int = 4056
    height: int = 3040
    jpeg_quality: int = 92
    lores_width: int = 640  # small stream alongside every still, for QC and QR
    lores_height: int = 480
    exposure_us: int = 8000  # fixed exposure under the light panel (AE off)
    analogue_gain: float = 1.0
    colour_gains: tuple[float, float] = (1.8, 1.6)  # (red, blue) fixed white balance (AWB off)
    timeout_s: float = 5.0  # per camera call
    max_failures: int = 3  # consecutive failures before the daemon asks systemd for a restart


@dataclass(frozen=True)
class ReaderConfig:
    type: str = "sim"  # "sim" | "pcsc" | "sam" | "qr_scanner" | "qr_camera"
    options: dict[str, Any] = field(default_factory=dict)  # passed to the reader (see docs/configuration.md)


@dataclass(frozen=True)
class MakeupQrConfig:
    """Verification of the centre's signed make-up QR codes (docs/qr-format.md)."""

    public_keys: tuple[str, ...] = ()  # the centre's Ed25519 public keys, base64; none: make-up codes refused
    scopes: tuple[str, ...] = ()  # school codes this kit photographs; empty: the top-level `school`
    leeway_seconds: float = 600.0  # tolerated clock difference at both ends of the validity window
    revoked: tuple[str, ...] = ()  # code ids (hex) the centre withdrew


@dataclass(frozen=True)
class RosterConfig:
    path: str = ""  # roster SQLite file; empty: <data_dir>/roster.sqlite


@dataclass(frozen=True)
class StorageConfig:
    # MB: `capturekit run` refuses to start with less free space in the data directory (a session of 150
    # students at ~5 MB a frame and some retakes; the outbox is emptied only as sync confirms and purges)
    min_free_mb: int = 2000


@dataclass(frozen=True)
class PrivacyConfig:
    """What the kit may show of a student, and what it keeps (docs/privacy.md). Names never go to a log
    or the journal."""

    show_names: bool = False  # the school's policy allows names (read from the ID card) on the local display
    console_device: str = ""  # that local display: a terminal device such as /dev/tty1 (never a file)
    # Argon2id cost of a roster key the kit makes itself (a clear CSV loaded on the kit; the centre's rosters
    # bring their own): libsodium opslimit and memlimit in KiB. Per tap: one evaluation.
    argon2_opslimit: int = 2
    argon2_memlimit_kib: int = 32768


@dataclass(frozen=True)
class SealingConfig:
    """The centre's public sealing keys, ``"<key_id>:<base64>"`` (``capturekit centre keygen`` writes the line).
    New bundles are sealed to the first; list several while keys rotate."""

    public_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncConfig:
    """The sync daemon (``capturekit sync``): where the centre is and how to talk to it (docs/sync.md)."""

    centre_url: str = ""  # e.g. "https://centre.example.edu.cn"; empty: sync is not configured
    token_file: str = "/etc/capturekit/kit.token"  # this kit's token (capturekit centre add-kit), mode 0640
    token: str = ""  # the token inline instead of a file (development; a file is better on a kit)
    ca_file: str = ""  # PEM bundle of a private centre CA ("" = the system's)
    connect_timeout_s: float = 10.0
    inactivity_timeout_s: float = 30.0  # no byte moved for this long = a dead link (never a total-time limit)
    chunk_bytes: int = 8 * 2**20  # one tus PATCH: most bundles in one; an interrupted one resumes from the offset
    rescan_s: float = 60.0  # full outbox rescan (inotify can drop events: the rescan is the truth)
    heartbeat_s: float = 60.0
    roster_s: float = 300.0
    backoff_initial_s: float = 2.0  # doubled per failure, with jitter, up to backoff_max_s
    backoff_max_s: float = 300.0
    bandwidth_kbps: int = 0  # upload cap in kilobits per second (shared by the parallel uploads); 0: none
    parallel_uploads: int = 2  # bundles in flight at once, oldest first: one's round trips overlap another's bytes


@dataclass(frozen=True)
class PurgeConfig:
    """When sealed files the centre has confirmed are deleted from the kit (unconfirmed ones never are)."""

    end_of_day: bool = True  # keep a confirmed bundle until the end of the day it was confirmed
    keep_hours: float = 0.0  # and at least this long after confirmation
    interval_s: float = 600.0  # how often the daemon looks for bundles to purge


@dataclass(frozen=True)
class Config:
    kit_id: str = "kit-sim"
    data_dir: str = "/var/lib/capturekit"
    school: str = ""  # school code of the current sessions
    control_socket: str = ""  # empty: <data_dir>/control.sock
    log_level: str = "INFO"
    gpio: GpioConfig = field(default_factory=GpioConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    status_led: StatusLedConfig = field(default_factory=StatusLedConfig)
    buzzer: BuzzerConfig = field(default_factory=BuzzerConfig)
    light: LightConfig = field(default_factory=LightConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    roster: RosterConfig = field(default_factory=RosterConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    sealing: SealingConfig = field(default_factory=SealingConfig)
    purge: PurgeConfig = field(default_factory=PurgeConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    makeup_qr: MakeupQrConfig = field(default_factory=MakeupQrConfig)
    qc: QcConfig = field(default_factory=QcConfig)  # shot-time quality checks (docs/qc.md)
    photo_spec: PhotoSpec = field(default_factory=PhotoSpec)  # the diploma derivative (docs/photo-spec.md)
    readers: tuple[ReaderConfig, ...] = (ReaderConfig(),)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def roster_path(self) -> Path:
        return Path(self.roster.path) if self.roster.path else self.data_path / "roster.sqlite"

    @property
    def control_path(self) -> Path:
        return Path(self.control_socket) if self.control_socket else self.data_path / "control.sock"

    @property
    def sealing_key(self) -> CentreKey:
        """The centre key new bundles are sealed to; a ConfigError when the kit has none."""
        if not self.sealing.public_keys:
            raise ConfigError("sealing.public_keys: no centre public key: the kit cannot seal photos. Put the line"
                              " from the centre's `capturekit centre keygen` (<key_id>.pub) in kit.toml")
        return CentreKey.parse(self.sealing.public_keys[0])

    def roster_key_cost(self) -> tuple[int, int]:
        return self.privacy.argon2_opslimit, self.privacy.argon2_memlimit_kib * 1024


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check/convert one TOML value against a type hint; raise ConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return build(hint, value, key)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected an array, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (dict,) or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return dict(value)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not fit {hint}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if type(value) is not hint:
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a TOML table; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"{dotted}: unknown key (known: {', '.join(sorted(names))})")
        kwargs[key] = _convert(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def _b64_key(text: str, size: int) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == size
    except (binascii.Error, ValueError):
        return False


def _hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return bool(text)


def _numbers(obj: Any, prefix: str = "") -> list[str]:
    """Every float must be finite and every (low, high) range ordered, whatever table it is in."""
    errors = []
    for f in dataclasses.fields(obj):
        v, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            errors += _numbers(v, f"{key}.")
        elif isinstance(v, float) and not math.isfinite(v):
            errors.append(f"{key}: must be a finite number, got {v}")
        elif isinstance(v, tuple) and v and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            if not all(math.isfinite(x) for x in v):
                errors.append(f"{key}: every value must be a finite number")
            elif len(v) == 2 and f.name not in ("colour_gains",) and v[0] > v[1]:
                errors.append(f"{key}: must be [low, high] with low <= high, got {list(v)}")
    return errors


def _check(cfg: Config) -> None:
    """Value ranges and cross-field rules that types cannot express; the first broken rule is reported."""
    cam, ses, light = cfg.camera, cfg.session, cfg.light
    pins = {"trigger.pin": cfg.trigger.pin, "status_led.red": cfg.status_led.red,
            "status_led.green": cfg.status_led.green, "status_led.blue": cfg.status_led.blue,
            "buzzer.pin": cfg.buzzer.pin, "light.pin": light.pin}
    positive = {
        "camera.width": cam.width, "camera.height": cam.height, "camera.lores_width": cam.lores_width,
        "camera.lores_height": cam.lores_height, "camera.exposure_us": cam.exposure_us,
        "camera.analogue_gain": cam.analogue_gain, "camera.timeout_s": cam.timeout_s,
        "light.frequency_hz": light.frequency_hz, "session.ready_timeout_s": ses.ready_timeout_s,
        "session.retake_window_s": ses.retake_window_s, "session.capture_timeout_s": ses.capture_timeout_s,
        "session.verdict_timeout_s": ses.verdict_timeout_s, "session.led_hold_s": ses.led_hold_s,
        "qc.analysis_min_width": cfg.qc.analysis_min_width, "qc.sharpness_face_px": cfg.qc.sharpness_face_px,
        "photo_spec.width_px": cfg.photo_spec.width_px, "photo_spec.height_px": cfg.photo_spec.height_px,
        "photo_spec.dpi": cfg.photo_spec.dpi,
    }
    rules = _numbers(cfg)
    rules += [f"{k}: must be greater than 0, got {v}" for k, v in positive.items() if not v > 0]
    rules += [f"{k}: must be a BCM GPIO number 0..27, got {v}" for k, v in pins.items() if not 0 <= v <= 27]
    seen: dict[int, str] = {}
    for k, v in pins.items():
        if v in seen:
            rules.append(f"{k}: GPIO {v} is already used by {seen[v]}")
        seen.setdefault(v, k)
    checks = [
        (cfg.camera.backend in ("sim", "picamera2"), "camera.backend: must be 'sim' or 'picamera2'"),
        (all(r.type in READER_TYPES for r in cfg.readers),
         f"readers: type must be one of {', '.join(READER_TYPES)}"),
        (cfg.gpio.pin_factory in ("mock", "lgpio", "rpigpio", "default"),
         "gpio.pin_factory: must be mock, lgpio, rpigpio or default"),
        (1 <= cam.jpeg_quality <= 100, "camera.jpeg_quality: must be 1..100"),
        (all(g > 0 for g in cam.colour_gains), "camera.colour_gains: both gains must be greater than 0"),
        (cam.max_failures >= 1, f"camera.max_failures: must be at least 1, got {cam.max_failures}"),
        (all(0.0 <= v <= 1.0 for v in (light.idle, light.preview, light.shot)), "light: levels must be within 0..1"),
        (0 <= cfg.trigger.bounce_s <= 2, f"trigger.bounce_s: must be within 0..2 s, got {cfg.trigger.bounce_s}"),
        (ses.double_press_s >= 0, "session.double_press_s: must not be negative"),
        (ses.double_press_s < ses.retake_window_s,
         "session.double_press_s: must be shorter than session.retake_window_s"),
        (bool(cfg.kit_id) and cfg.kit_id.replace("-", "").replace("_", "").isalnum() and cfg.kit_id.isascii(),
         "kit_id: letters, digits, '-' and '_' only"),
        (isinstance(logging.getLevelName(cfg.log_level.upper()), int),
         f"log_level: must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {cfg.log_level!r}"),
        (cfg.storage.min_free_mb >= 0, "storage.min_free_mb: must not be negative"),
        (cfg.makeup_qr.leeway_seconds >= 0, "makeup_qr.leeway_seconds: must not be negative"),
        (all(_b64_key(k, 32) for k in cfg.makeup_qr.public_keys),
         "makeup_qr.public_keys: each must be a base64 Ed25519 public key (32 bytes)"),
        (all(_hex(r) for r in cfg.makeup_qr.revoked), "makeup_qr.revoked: each must be a code id in hex"),
        (all(s.strip() for s in cfg.makeup_qr.scopes), "makeup_qr.scopes: empty school code"),
        (not cfg.privacy.console_device or cfg.privacy.console_device.startswith("/dev/"),
         "privacy.console_device: must be a terminal device under /dev (names never go to a file)"),
        (1 <= cfg.privacy.argon2_opslimit <= 10, "privacy.argon2_opslimit: must be 1..10"),
        (8 <= cfg.privacy.argon2_memlimit_kib <= 1024 * 1024, "privacy.argon2_memlimit_kib: must be 8..1048576"),
        (cfg.purge.keep_hours >= 0, "purge.keep_hours: must not be negative"),
        (not cfg.sync.centre_url or cfg.sync.centre_url.startswith(("http://", "https://")),
         "sync.centre_url: must start with https:// (or http:// on a trusted network)"),
        (all(v > 0 for v in (cfg.sync.connect_timeout_s, cfg.sync.inactivity_timeout_s, cfg.sync.rescan_s,
                             cfg.sync.heartbeat_s, cfg.sync.roster_s, cfg.sync.backoff_initial_s)),
         "sync: timeouts and intervals must be greater than 0"),
        (cfg.sync.backoff_max_s >= cfg.sync.backoff_initial_s, "sync.backoff_max_s: must be >= backoff_initial_s"),
        (cfg.sync.chunk_bytes >= 65536, "sync.chunk_bytes: must be at least 65536"),
        (cfg.sync.bandwidth_kbps >= 0, "sync.bandwidth_kbps: must not be negative"),
        (1 <= cfg.sync.parallel_uploads <= 8, "sync.parallel_uploads: must be 1..8"),
        (cfg.purge.interval_s > 0, "purge.interval_s: must be greater than 0"),
    ]
    for i, line in enumerate(cfg.sealing.public_keys):
        try:
            CentreKey.parse(line)
        except ValueError as exc:
            rules.append(f"sealing.public_keys[{i}]: {exc}")
    rules += [message for ok, message in checks if not ok]
    if rules:
        raise ConfigError(rules[0] if len(rules) == 1 else f"{rules[0]} (and {len(rules) - 1} more problems)")


def read_toml(explicit: str | os.PathLike[str] | None, default: Path) -> tuple[Path, dict[str, Any]]:
    """The file ``explicit`` names (it must exist), else ``default`` if it exists, read as TOML (a BOM from a
    Windows editor accepted): the path and its tables, or ConfigError with one line saying what is wrong."""
    file = Path(explicit) if explicit else default
    if not file.exists():
        if explicit:
            raise ConfigError(f"{file}: no such configuration file")
        return file, {}
    try:
        return file, tomllib.loads(file.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None


def load(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """Load and validate the configuration (see module docstring for how the path is chosen)."""
    file, data = read_toml(path or os.environ.get(ENV_PATH), DEFAULT_PATH)
    if "readers" in data and isinstance(data["readers"], list):
        data["readers"] = [dict(r) for r in data["readers"]]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = build(Config, data)
        _check(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{file if file.exists() else 'defaults'}: {exc}") from None
    return cfg


def defaults_toml() -> str:
    """The embedded defaults as TOML text (for ``capturekit config --defaults``)."""
    lines: list[str] = []

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    top = Config()
    tables = []
    for f in dataclasses.fields(top):
        v = getattr(top, f.name)
        if dataclasses.is_dataclass(v):
            tables.append((f.name, v))
        elif f.name != "readers":
            lines.append(f"{f.name} = {fmt(v)}")
    for name, table in tables:
        lines += ["", f"[{name}]"]
        lines += [f"{f.name} = {fmt(getattr(table, f.name))}" for f in dataclasses.fields(table)]
    for r in top.readers:
        lines += ["", "[[readers]]", f"type = {fmt(r.type)}"]
    return "\n".join(lines) + "\n"
