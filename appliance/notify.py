"""systemd notification (``Type=notify``, ``WatchdogSec``): a few datagrams to ``$NOTIFY_SOCKET``.

Without systemd (laptop, tests) every call is a no-op. The daemon's single loop calls
:func:`watchdog` each turn, so a hung loop stops the pings and systemd restarts the daemon.
"""

from __future__ import annotations

import os
import socket
import time

_last_ping = 0.0


def _send(message: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(addr)
        sock.sendall(message.encode())


def ready(status: str = "") -> None:
    _send("READY=1" + (f"\nSTATUS={status}" if status else ""))


def status(text: str) -> None:
    _send(f"STATUS={text}")


def stopping() -> None:
    _send("STOPPING=1")


def watchdog() -> None:
    """Ping the watchdog, at most twice per ``WatchdogSec``."""
    global _last_ping
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    now = time.monotonic()
    if usec and now - _last_ping >= usec / 2e6:
        _last_ping = now
        _send("WATCHDOG=1")
