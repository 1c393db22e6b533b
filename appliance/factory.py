"""Build the devices a configuration asks for (real adapters or their simulated twins)."""

from __future__ import annotations

from .config import Config, ReaderConfig
from .daemon import Devices
from .devices.camera import Camera, SimCamera
from .devices.gpio import pin_factory
from .readers import Reader
from .readers.sim import SimReader


class ConfigurationUnsupported(ValueError):
    """A configured device type this build cannot provide."""


def build_camera(cfg: Config) -> Camera:
    c = cfg.camera
    if c.backend == "picamera2":
        from .devices.picamera import Picamera2Camera

        return Picamera2Camera(c)
    return SimCamera(c.width, c.height, c.jpeg_quality, (c.lores_width, c.lores_height))


def build_reader(rc: ReaderConfig) -> Reader:
    if rc.type == "sim":
        return SimReader(**rc.options)
    raise ConfigurationUnsupported(f"readers: unknown reader type {rc.type!r}")


def build_devices(cfg: Config) -> Devices:
    return Devices(build_camera(cfg), [build_reader(r) for r in cfg.readers], pin_factory(cfg.gpio.pin_factory))
