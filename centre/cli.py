"""``capturekit centre …``: the centre's commands (the centre server and its admin tasks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_keygen(args: argparse.Namespace) -> int:
    from .sealing import keygen

    key_id, private, public = keygen(Path(args.out))
    print(f"key {key_id}: private key {private} (mode 0600: it never leaves the centre)")
    print(f"public key {public}; kits seal to it with, in kit.toml:")
    print(f'  [sealing]\n  public_keys = ["{public.read_text().strip()}"]')
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    centre = sub.add_parser("centre", help="the centre: keys, server, kits, exports",
                            description="The centre's commands.")
    csub = centre.add_subparsers(dest="centre_cmd", required=True)
    sp = csub.add_parser("keygen", help="write a new sealing key pair (<key_id>.key, <key_id>.pub)")
    sp.add_argument("--out", default="/etc/capturekit/centre-keys", help="key directory")
    sp.set_defaults(func=cmd_keygen)


if __name__ == "__main__":
    sys.exit("use: capturekit centre …")
