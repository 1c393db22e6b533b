"""Issuing make-up QR codes at the centre (the only place that holds the signing key).

Library: :func:`generate_key`, :func:`load_signing_key`, :func:`public_key_b64`, :func:`issue`,
:func:`render`. Command line::

    python -m centre.makeup_qr keygen --out centre-makeup.key
    python -m centre.makeup_qr pubkey --signing-key centre-makeup.key
    python -m centre.makeup_qr issue --signing-key centre-makeup.key --kind id_number \\
        --value 110105200001011234 --scope 10358 --valid-days 30 --png code.png

The key file holds the base64 of the 32-byte Ed25519 seed on one line, mode 0600. The kit gets
only the public key (base64) in its config. Format: ``docs/qr-format.md``.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nacl.signing import SigningKey

from appliance import idnumber
from appliance.identity import Kind
from appliance.makeup_qr import MakeupPayload, encode_text, key_id, pack_body, signed_message


def generate_key() -> SigningKey:
    """A new random signing key."""
    return SigningKey.generate()


def save_signing_key(key: SigningKey, path: Path) -> None:
    """Write the seed as base64, refusing to overwrite, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(bytes(key)).decode() + "\n")


def load_signing_key(path: Path) -> SigningKey:
    """Read a key file written by :func:`save_signing_key`."""
    return SigningKey(base64.b64decode(Path(path).read_text().strip(), validate=True))


def public_key_b64(key: SigningKey) -> str:
    """The public key as it goes into the kit config (standard base64 of 32 bytes)."""
    return base64.b64encode(bytes(key.verify_key)).decode()


def issue(signing_key: SigningKey, kind: Kind | str, key: str, scope: str, *,
          issued_at: datetime, expires_at: datetime, code_id: bytes | None = None) -> str:
    """Sign a make-up code; returns the QR text (``CKM1:…``)."""
    kind = Kind(kind)
    if kind is Kind.ID_NUMBER:
        key = idnumber.validate(key)
    payload = MakeupPayload(kind, key, scope, issued_at, expires_at,
                            code_id if code_id is not None else secrets.token_bytes(6),
                            key_id(bytes(signing_key.verify_key)))
    body = pack_body(payload)
    return encode_text(body, signing_key.sign(signed_message(body)).signature)


def render(text: str, path: Path, scale: int = 8) -> int:
    """Write the code as PNG/SVG/PDF (by suffix) with error correction M; returns the QR version."""
    import segno  # centre-only dependency

    qr = segno.make(text, error="m", micro=False)
    qr.save(str(path), scale=scale, border=4)
    return int(qr.version)


def _parse_time(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m centre.makeup_qr", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="create a signing key file; print its public key")
    keygen.add_argument("--out", type=Path, required=True)
    pub = sub.add_parser("pubkey", help="print the public key of a signing key file")
    pub.add_argument("--signing-key", type=Path, required=True)
    iss = sub.add_parser("issue", help="sign a make-up code and print its text")
    iss.add_argument("--signing-key", type=Path, required=True)
    iss.add_argument("--kind", choices=[k.value for k in Kind], required=True)
    iss.add_argument("--value", required=True, help="the roster key; '-' reads one line from stdin")
    iss.add_argument("--scope", required=True, help="school code the code is valid at")
    iss.add_argument("--valid-days", type=float, default=30.0)
    iss.add_argument("--expires", help="ISO time (UTC if no offset); overrides --valid-days")
    iss.add_argument("--code-id", help="12 hex digits (default: random)")
    iss.add_argument("--png", type=Path, help="also render the code to this image file")
    args = parser.parse_args(argv)

    if args.command == "keygen":
        key = generate_key()
        save_signing_key(key, args.out)
        print(public_key_b64(key))
        return 0
    key = load_signing_key(args.signing_key)
    if args.command == "pubkey":
        print(public_key_b64(key))
        return 0
    value = sys.stdin.readline().rstrip("\r\n") if args.value == "-" else args.value
    now = datetime.now(UTC).replace(microsecond=0)
    expires = _parse_time(args.expires) if args.expires else now + timedelta(days=args.valid_days)
    code_id = bytes.fromhex(args.code_id) if args.code_id else None
    try:
        text = issue(key, args.kind, value, args.scope, issued_at=now, expires_at=expires, code_id=code_id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    if args.png:
        version = render(text, args.png)
        print(f"wrote {args.png} (QR version {version}, error correction M)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
