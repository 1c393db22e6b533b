"""JPEG checks and reduced-scale decodes shared by QC and the derivative.

libjpeg-turbo (inside OpenCV) decodes at 1/1, 1/2, 1/4 or 1/8 scale in the DCT domain, which costs a fraction
of a full decode: a 12 MP frame takes ~33 ms at full size and ~18 / 15 / 12 ms at 1/2, 1/4, 1/8 on one x86 core.
The scaled IDCT and upsampling of libjpeg-turbo are bit-exact across its SIMD back-ends (its own test suite
checks the MD5 of every scaled decode), so x86-64 and aarch64 see the same pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

SCALES = (8, 4, 2, 1)  # DCT scale denominators, cheapest first
_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
          8: cv2.IMREAD_REDUCED_COLOR_8}


class ImageDecodeError(ValueError):
    """The shot's bytes (or preview array) are not a decodable colour image. The message is one line."""


@dataclass(frozen=True)
class Decoded:
    """An RGB decode of a JPEG at 1/``denom`` scale, and the full frame size (w, h)."""

    rgb: np.ndarray
    denom: int
    full: tuple[int, int]


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(w, h) of a complete colour JPEG, from its header; ImageDecodeError otherwise (never OSError)."""
    if not isinstance(jpeg, bytes | bytearray | memoryview) or len(jpeg) < 4:
        raise ImageDecodeError("not a JPEG: empty or not bytes")
    data = bytes(jpeg[:2])
    if data != b"\xff\xd8":
        raise ImageDecodeError("not a JPEG: no SOI marker at the start")
    if bytes(jpeg[-2:]) != b"\xff\xd9" and bytes(jpeg).rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise ImageDecodeError("truncated JPEG: no EOI marker at the end")
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            if im.format != "JPEG":
                raise ImageDecodeError(f"not a JPEG: {im.format}")
            if im.mode not in ("RGB", "YCbCr"):
                raise ImageDecodeError(f"not a colour JPEG: mode {im.mode}")
            return im.size
    except ImageDecodeError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error on foreign data
        raise ImageDecodeError(f"undecodable JPEG header: {e}".splitlines()[0]) from e


def decode(jpeg: bytes, denom: int, full: tuple[int, int] | None = None) -> Decoded:
    """Decode at 1/``denom`` scale (1, 2, 4 or 8) to RGB; ImageDecodeError if libjpeg gives up."""
    full = full or jpeg_size(jpeg)
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), _FLAGS[denom])
    if bgr is None or bgr.ndim != 3:
        raise ImageDecodeError("undecodable JPEG data")
    return Decoded(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), denom, full)


def denom_for(full_width: int, min_width: float) -> int:
    """The cheapest DCT scale whose decode is still at least ``min_width`` px wide (1 if none is)."""
    return next((d for d in SCALES if full_width / d >= min_width), 1)


def check_rgb(frame: object) -> np.ndarray:
    """A preview frame as a contiguous H x W x 3 uint8 RGB array; ImageDecodeError for anything else."""
    if not isinstance(frame, np.ndarray):
        raise ImageDecodeError(f"preview is not an array: {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ImageDecodeError(f"preview has dtype {frame.dtype}, expected uint8")
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ImageDecodeError(f"preview has shape {frame.shape}, expected H x W x 3 (colour)")
    if frame.shape[0] < 48 or frame.shape[1] < 64:
        raise ImageDecodeError(f"preview too small: {frame.shape[1]}x{frame.shape[0]}")
    return np.ascontiguousarray(frame[..., :3])
