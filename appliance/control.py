"""The operator's side door into a running daemon: a Unix socket taking one JSON command per connection.

Commands: ``{"cmd": "cancel"}``, ``{"cmd": "accept"}``, ``{"cmd": "identity", "kind": ..., "key": ...,
"source": "manual"}`` (``capturekit enter``). Each is posted to the daemon's queue like any other input
and answered ``{"ok": true}`` or ``{"ok": false, "error": ...}``. The socket is mode 0660: the
``capturekit`` group (the crew's login) may use it, nobody else.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from .identity import InvalidIdentity, Source, make

log = logging.getLogger("capturekit.control")


class ControlError(RuntimeError):
    """The daemon is not reachable or refused the command."""


class ControlServer:
    """Serves commands for ``daemon`` (anything with cancel/accept_anyway/present_identity)."""

    def __init__(self, path: Path, daemon: Any) -> None:
        self.path = path
        self.daemon = daemon
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(4)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock:
            sock.close()
        if self._thread:
            self._thread.join(timeout=2)
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._sock is not None:
                    log.exception("control socket failed")
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    reply = self.handle(json.loads(conn.makefile("rb").readline() or b"{}"))
                except (ValueError, OSError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError as exc:
                    log.warning("control reply not sent: %s", exc)

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd = msg.get("cmd")
        if cmd == "cancel":
            self.daemon.cancel()
        elif cmd == "accept":
            self.daemon.accept_anyway()
        elif cmd == "identity":
            try:
                identity = make(msg["kind"], msg["key"], Source(msg.get("source", "manual")), msg.get("reader", ""))
            except (KeyError, ValueError, InvalidIdentity) as exc:
                return {"ok": False, "error": f"bad identity: {exc}"}
            self.daemon.present_identity(identity)
        else:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        log.info("control: %s", cmd)
        return {"ok": True}


def send(path: Path, msg: dict[str, Any], timeout: float = 3.0) -> str:
    """Send one command to the daemon; return its answer or raise ControlError."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(msg).encode() + b"\n")
            reply = json.loads(sock.makefile("rb").readline() or b"{}")
    except (OSError, ValueError) as exc:
        raise ControlError(f"capture daemon not reachable at {path}: {exc}") from exc
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "refused"))
    return "ok"
