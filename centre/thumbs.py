"""Thumbnails of diploma derivatives for proof-reading: made once, kept in the object store next to the photos.

``thumbs/<capture_id>/<derivative sha256>-<width>.jpg``: the derivative's hash in the key, so a thumbnail can
never show another photo than the one it names. The derivative itself is checked against the SHA-256 the kit
recorded before a thumbnail is cut from it.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from PIL import Image

from .storage import ObjectMissing, Storage

WIDTH = 160


class PhotoUnavailable(Exception):
    """No derivative, or it does not match the kit's SHA-256."""


def derivative(storage: Storage, cap: Any) -> bytes:
    if not cap.derivative_key:
        raise PhotoUnavailable("no_derivative")
    try:
        data = storage.get(cap.derivative_key)
    except ObjectMissing:
        raise PhotoUnavailable("object_missing") from None
    if hashlib.sha256(data).hexdigest() != cap.derivative_sha256:
        raise PhotoUnavailable("sha256_mismatch")
    return data


def thumbnail(storage: Storage, cap: Any, width: int = WIDTH) -> bytes:
    """The cached thumbnail, made from the checked derivative the first time it is asked for."""
    key = f"thumbs/{cap.capture_id}/{cap.derivative_sha256}-{width}.jpg"
    try:
        return storage.get(key)
    except ObjectMissing:
        pass
    with Image.open(io.BytesIO(derivative(storage, cap))) as img:
        img = img.convert("RGB")
        img.thumbnail((width, width * 4 // 3))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=80)
    data = out.getvalue()
    storage.put(key, data)
    return data
