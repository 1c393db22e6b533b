"""The keys the centre serves: its sealing keys (private halves stay here) and the make-up QR public keys."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CentreConfig
from .errors import CentreError
from .sealing import KeyRing, load_private


@dataclass(frozen=True)
class Keys:
    ring: KeyRing
    sealing_lines: list[str]  # "<key_id>:<base64>", the one new bundles are sealed to first
    makeup_public_keys: list[str]
    makeup_signing: Any = None  # nacl SigningKey from `makeup_signing_key` (the web's make-up form), or None


def no_key_message(directory: Path) -> str:
    return (f"no sealing key in {directory}: make one with `capturekit centre keygen --out {directory}` (then put"
            " the line it prints in every kit's kit.toml, [sealing] public_keys)")


def load_keys(cfg: CentreConfig) -> Keys:
    """The key ring from ``keys_dir``; CentreError with the keygen command when there is no key."""
    directory = cfg.keys_path
    files = sorted(directory.glob("*.key")) if directory.is_dir() else []
    if not files:
        raise CentreError(no_key_message(directory))
    try:
        loaded = {p: load_private(p) for p in files}
    except (OSError, ValueError, binascii.Error) as exc:
        raise CentreError(f"keys_dir {directory}: {exc}") from None
    ring = KeyRing(dict(loaded.values()))
    current = cfg.current_key or loaded[max(files, key=lambda p: p.stat().st_mtime)][0]
    if current not in ring.keys:
        raise CentreError(f"current_key: {current} is not a key in {directory} (have {', '.join(ring.keys)})")
    lines = ring.public_lines()
    lines.sort(key=lambda line: not line.startswith(f"{current}:"))
    for i, k in enumerate(cfg.makeup_public_keys):
        try:
            ok = len(base64.b64decode(k, validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise CentreError(f"makeup_public_keys[{i}]: not a base64 Ed25519 public key (32 bytes)")
    makeup = list(cfg.makeup_public_keys)
    signing = None
    if cfg.makeup_signing_key:
        from .makeup_qr import load_signing_key, public_key_b64

        try:
            signing = load_signing_key(Path(cfg.makeup_signing_key))
        except (OSError, ValueError, binascii.Error) as exc:
            raise CentreError(f"makeup_signing_key {cfg.makeup_signing_key}: {exc} (make one with"
                              " `python -m centre.makeup_qr keygen --out FILE`)") from None
        public = public_key_b64(signing)
        makeup = [public, *[k for k in makeup if k != public]]  # the key codes are issued with comes first
    return Keys(ring, lines, makeup, signing)
