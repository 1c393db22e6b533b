"""The operator's side door into a running daemon: a Unix socket taking one JSON command per connection.

Commands (one JSON object on one line, at most :data:`MAX_REQUEST` bytes):
``{"cmd": "cancel"}``, ``{"cmd": "accept"}``, ``{"cmd": "identity", "kind": "id_number", "key": "..."}``
(``capturekit enter``), ``{"cmd": "session", "action": "new" | "close", "school": "", "label": ""}``,
``{"cmd": "purge"}``.
Each is answered ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Whatever arrives — not JSON,
not an object, invalid UTF-8, an endless line, silence — gets a clear refusal and costs nothing but that
connection: every client has its own thread and a deadline, and the control thread never dies.

Identity source and reader are the kit's to say, not the client's: a typed number is always
``manual``, and its reader is the Unix user on the other end of the socket (``SO_PEERCRED``).
The socket is mode 0660 (the ``capturekit`` group: the crew's login). Only the process holding the
data directory's lock may create or remove it (:class:`ControlServer` checks).
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import socketserver
import struct
import threading
from pathlib import Path
from typing import Any

from .errors import EXIT_BAD_INPUT, EXIT_UNREACHABLE, KitError, StartRefused
from .identity import InvalidIdentity, Source, make

log = logging.getLogger("capturekit.control")

MAX_REQUEST = 16 * 1024  # bytes: the longest legitimate command (a collection code) is well under 1 KiB
CLIENT_TIMEOUT_S = 2.0  # a client has this long to send its line


class ControlError(KitError):
    """The daemon is not reachable (code 5) or refused the command (code 2)."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


class BadRequest(ValueError):
    """A request this server will not carry out; the message is the reply's ``error``."""


def _peer_user(sock: socket.socket) -> str:
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError, struct.error):
        return "unknown"


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(CLIENT_TIMEOUT_S)
        try:
            reply = self.server.control.handle_raw(self._read_line(conn), _peer_user(conn))
        except BadRequest as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug must cost this one request, never the control thread
            log.exception("control request failed")
            reply = {"ok": False, "error": f"internal error: {exc}"}
        try:
            conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        except OSError as exc:
            log.warning("control reply not sent: %s", exc)

    @staticmethod
    def _read_line(conn: socket.socket) -> bytes:
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                raise BadRequest(f"no complete request within {CLIENT_TIMEOUT_S:g} s") from None
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_REQUEST:
                raise BadRequest(f"request longer than {MAX_REQUEST} bytes")
        line = buf.split(b"\n", 1)[0]
        if len(line) > MAX_REQUEST:
            raise BadRequest(f"request longer than {MAX_REQUEST} bytes")
        return line


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64  # a client with a timeout gets EAGAIN, not a wait, when the backlog is full
    control: ControlServer


class ControlServer:
    """Serves commands for ``daemon`` (cancel/accept_anyway/present_identity/call and its journal)."""

    def __init__(self, path: Path, daemon: Any, lock: Any) -> None:
        self.path = path
        self.daemon = daemon
        self.lock = lock  # the data directory's Lock: only its holder may touch the socket file
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None

    def start(self) -> None:
        if not self.lock.held:
            raise StartRefused(f"control socket {self.path}: this process does not hold the data directory lock")
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_socket()):
            raise StartRefused(f"control socket path {self.path} is taken by something that is not a socket")
        self.path.unlink(missing_ok=True)  # a stale socket of a dead daemon: we hold the lock, it is ours now
        server = _Server(str(self.path), _Handler, bind_and_activate=True)
        server.control = self
        os.chmod(self.path, 0o660)
        self._inode = self.path.stat().st_ino
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        try:
            if self.path.stat().st_ino == self._inode:  # never remove a socket another process made
                self.path.unlink()
        except FileNotFoundError:
            pass

    # ---- requests
    def handle_raw(self, line: bytes, user: str) -> dict[str, Any]:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("request is not UTF-8 text") from None
        if not text.strip():
            raise BadRequest("empty request: send one JSON object such as {\"cmd\": \"cancel\"}")
        try:
            msg = json.loads(text)
        except ValueError as exc:
            raise BadRequest(f"request is not JSON ({exc})") from None
        if not isinstance(msg, dict):
            raise BadRequest(f"request must be a JSON object, got {type(msg).__name__}")
        return self.handle(msg, user)

    def handle(self, msg: dict[str, Any], user: str = "unknown") -> dict[str, Any]:
        cmd = msg.get("cmd")
        if cmd == "cancel":
            self.daemon.cancel()
        elif cmd == "accept":
            self.daemon.accept_anyway()
        elif cmd == "identity":
            kind, key = msg.get("kind"), msg.get("key")
            if not isinstance(kind, str) or not isinstance(key, str):
                raise BadRequest("identity needs \"kind\" and \"key\" as strings")
            try:
                identity = make(kind, key, Source.MANUAL, f"control:{user}")
            except (ValueError, InvalidIdentity) as exc:
                raise BadRequest(f"bad identity: {exc}") from None
            self.daemon.present_identity(identity)
        elif cmd == "session":
            return {"ok": True, "message": self._session(msg)}
        elif cmd == "purge":
            try:
                done = self.daemon.call(self.daemon.purge)
            except TimeoutError:
                raise BadRequest("the capture daemon did not answer within 5 s") from None
            return {"ok": True, "message": f"purged {len(done)} sealed files the centre confirmed"}
        else:
            raise BadRequest(f"unknown command {cmd!r} (known: cancel, accept, identity, session, purge)")
        log.info("control: %s from %s", cmd, user)
        return {"ok": True}

    def _session(self, msg: dict[str, Any]) -> str:
        action, school, label = msg.get("action"), msg.get("school", ""), msg.get("label", "")
        if action not in ("new", "close") or not isinstance(school, str) or not isinstance(label, str):
            raise BadRequest("session needs \"action\": \"new\" or \"close\" (school and label as strings)")
        try:
            return self.daemon.call(lambda: self.daemon.change_session(action, school, label))
        except TimeoutError:
            raise BadRequest("the capture daemon did not answer within 5 s") from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None


def send(path: Path, msg: dict[str, Any], timeout: float = 6.0) -> str:
    """Send one command to the daemon; return its message or raise ControlError (code 5 or 2)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(msg, ensure_ascii=False).encode() + b"\n")
            raw = sock.makefile("rb").readline(MAX_REQUEST)
    except OSError as exc:
        raise ControlError(f"capture daemon not reachable at {path}: {exc.strerror or exc}", EXIT_UNREACHABLE) from None
    try:
        reply = json.loads(raw or b"{}")
    except ValueError:
        raise ControlError(f"capture daemon at {path} answered something that is not JSON", EXIT_UNREACHABLE) from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        error = reply.get("error", "refused") if isinstance(reply, dict) else "refused"
        raise ControlError(f"refused by the capture daemon: {error}")
    return str(reply.get("message", "ok"))
