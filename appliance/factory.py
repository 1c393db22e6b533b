"""Build the devices a configuration asks for (real adapters or their simulated twins)."""

from __future__ import annotations

from datetime import timedelta

from .config import Config, ConfigError, ReaderConfig
from .daemon import Devices
from .devices.camera import Camera, SimCamera
from .devices.gpio import pin_factory
from .readers import Reader


class ConfigurationUnsupported(ConfigError):
    """A configured device this machine cannot provide (e.g. a reader library that is missing)."""


def build_camera(cfg: Config) -> Camera:
    c = cfg.camera
    if c.backend == "picamera2":
        from .devices.picamera import Picamera2Camera

        return Picamera2Camera(c)
    return SimCamera(c.width, c.height, c.jpeg_quality, (c.lores_width, c.lores_height))


def makeup_verifier(cfg: Config):
    """The make-up QR verifier, or None when the kit has no centre key (make-up codes are then refused)."""
    m = cfg.makeup_qr
    if not m.public_keys:
        return None
    from .makeup_qr import MakeupVerifier

    scopes = m.scopes or ((cfg.school,) if cfg.school else ())
    return MakeupVerifier(m.public_keys, scopes, leeway=timedelta(seconds=m.leeway_seconds), revoked=m.revoked)


def build_reader(rc: ReaderConfig, cfg: Config) -> Reader:
    """One identity source from its ``[[readers]]`` entry; ``options`` are the class's keyword arguments."""
    opts = dict(rc.options)
    try:
        if rc.type == "sim":
            from .readers.sim import SimReader

            return SimReader(**opts)
        if rc.type == "pcsc":
            from .readers.pcsc import PcscReader

            return PcscReader(**opts)
        if rc.type == "sam":
            from .readers.sam import SamReader

            opts.setdefault("show_names", cfg.privacy.show_names)
            return SamReader(**opts)
        if rc.type == "qr_scanner":
            from .readers.qr import ScannerReader

            return ScannerReader(opts.pop("device"), makeup_verifier(cfg), **opts)
        if rc.type == "qr_camera":
            from .readers.qr import CameraQrReader

            return CameraQrReader(makeup_verifier(cfg), **opts)
    except (TypeError, ValueError) as exc:  # an unknown or missing option, a bad profile name
        raise ConfigurationUnsupported(f"readers: {rc.type}: {exc}") from exc
    except KeyError as exc:
        raise ConfigurationUnsupported(f"readers: {rc.type}: option {exc} is required") from exc
    raise ConfigurationUnsupported(f"readers: unknown reader type {rc.type!r}")


def build_devices(cfg: Config) -> Devices:
    return Devices(build_camera(cfg), [build_reader(r, cfg) for r in cfg.readers], pin_factory(cfg.gpio.pin_factory))


def build_assessor(cfg: Config):
    """The daemon's QC hook: the real quality checks, or none when ``qc.enabled`` is false."""
    if not cfg.qc.enabled:
        from .daemon import no_qc

        return no_qc
    from .quality import QualityCheck

    check = QualityCheck(cfg.qc, cfg.photo_spec)
    check.warm_up()
    return check
