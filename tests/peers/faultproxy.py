"""A fault-injecting HTTP/1.1 proxy on loopback, for network-fault tests (standard library only: asyncio).

It sits between a client (the sync daemon, ``requests``) and a real HTTP server (the centre)::

    client ──► FaultProxy (127.0.0.1:<port>) ──► upstream (the centre)

Only the request line and headers are parsed (to match rules and to find where a body ends, by
``Content-Length`` or chunked framing, so keep-alive keeps working); every byte that is forwarded, in both
directions, is forwarded verbatim. Responses are not parsed at all: the upstream→client direction is a plain
splice. That is safe because HTTP/1.1 clients such as ``requests`` do not pipeline: by the time the next
request arrives, the previous response has been relayed completely.

Usage (in-process: the proxy runs its own event loop in a background thread; every method is thread-safe)::

    from peers import faultproxy as fp

    with fp.FaultProxy(("127.0.0.1", centre_port), seed=1) as proxy:
        base = proxy.url                                    # "http://127.0.0.1:<port>", give it to the client
        proxy.set(fp.status(503, retry_after=2, method="PATCH", probability=0.3),   # 30 % of PATCHes
                  fp.slow(500_000))                         # everything else over a 500 kB/s link
        ...
        proxy.set(fp.captive_portal())                      # from now on a captive portal answers everything
        proxy.set(fp.refuse()); proxy.kill_connections()    # the network goes down, pooled connections too
        proxy.clear()                                       # back to a clean link
        s = proxy.stats()                                   # a snapshot: s.requests, s.actions, s.cuts, ...
        patches = s.count("PATCH", "/api/v1/uploads/")      # requests seen with this method and path prefix

As a subprocess (same API, controlled over the child's stdin/stdout): ``FaultProxyProcess(...)``, or by hand
``python tests/peers/faultproxy.py --upstream 127.0.0.1:8000 --rule '{"action": "captive_portal"}'``.

Rules. ``proxy.set(rule, ...)`` replaces the active rule list. For each request the rules are tried in order;
the first one that *matches* (``method``, ``path`` prefix) and *fires* (``every``, ``probability``, ``times``)
decides what happens to that request; a rule that matches but does not fire falls through to the next; when
none fires the request passes. Every factory below takes the same selector keywords:

- ``method``: one method or a tuple of them (``"PATCH"``, ``("HEAD", "PATCH")``); default: any.
- ``path``: a prefix of the request path (query string excluded); default: any.
- ``every=N``: fire on the N-th, 2N-th, ... matching request (counted per rule).
- ``probability=p``: fire with probability p (the proxy's ``seed`` makes it reproducible).
- ``times=K``: fire at most K times, then the rule stays inert ("the next K matching requests").

What each action does, at the byte level:

- ``passthrough()``: forward the request and its response untouched.
- ``status(code, retry_after=None, body=None, headers=None)``: read the request head, read and discard its
  body (Content-Length or chunked), then answer ``HTTP/1.1 <code>`` itself with ``Content-Length``, optional
  ``Retry-After`` and extra headers; nothing reaches the upstream (no upstream connection is even opened on
  this client connection until a request is forwarded). Keep-alive is kept unless the client asked to close.
- ``captive_portal(html=PORTAL_HTML)``: the same, always ``200 OK``, ``Content-Type: text/html``, the login
  page as body (no body for HEAD, but its ``Content-Length``), for every method: GET, HEAD, POST, PATCH...
- ``cut_request_body(after_bytes)``: forward the head and exactly ``after_bytes`` bytes of the body (wire
  bytes: chunk framing counts for a chunked body), then close the upstream connection gracefully (it reads
  those bytes then EOF: a truncated body) and reset the client connection (RST). A body of at most
  ``after_bytes`` bytes is not cut: it passes whole.
- ``cut_response(after_bytes=0)``: forward the request whole; when the upstream's response starts arriving
  (so the upstream has handled the request), relay its first ``after_bytes`` bytes, then close the client
  connection (FIN: ``requests`` raises ConnectionError, or ChunkedEncodingError when cut inside the body) and
  the upstream connection. A response of at most ``after_bytes`` bytes is not cut.
- ``stall(seconds=None)``: read the whole request (head and body, held in memory), forward nothing and send
  nothing back for ``seconds`` (``None``: forever), keeping the connection open. If the client gives up
  (closes) during the stall the request is dropped, never forwarded; if it is still there afterwards the
  request is forwarded normally (a late delivery).
- ``slow(bytes_per_second=None, latency=0.0)``: forward, paced to ``bytes_per_second`` in each direction
  (request and its response); ``latency`` seconds are added whenever a direction starts sending after being
  idle, i.e. once per request/response burst, not per chunk. The pace is shared by every connection using the
  rule (one link), per direction.
- ``refuse()``: close a new connection at once without reading anything (FIN; the client's request then
  meets a closed socket: ConnectionError). ``drop()``: accept and reset it at once (RST). Without ``method``
  or ``path`` these act when a connection is accepted (``every``/``probability`` count connections) and do
  not touch connections already open; use ``kill_connections()`` for those. With ``method``/``path`` they act
  on the matching request: its head is read, then the connection is closed/reset without forwarding.

Stats (``proxy.stats()``, a snapshot): requests seen per (method, path), what was done to them, bytes
relayed each way, connections accepted and cut by the proxy, and the ordered list of events.

Caveats: plain HTTP only (a TLS stream cannot be parsed; use it in front of the centre's plain-HTTP port);
``Expect: 100-continue`` bodies are not special-cased; pipelined requests are not supported. ``refuse`` is not
ECONNREFUSED (the listening socket stays open, so connect() succeeds) and a black hole (SYNs unanswered) is
not simulated: ``stall()`` is the closest. Under ``slow`` the client's send() can run a few MB ahead of the
link (its kernel send buffer, ~3 MB on loopback here), as on a real bufferbloated link: a large body then
looks sent at once and the wait moves to the response.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import json
import random
import socket
import struct
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHUNK = 64 * 1024  # read size for bodies and for the upstream→client splice
HEAD_LIMIT = 64 * 1024  # longest request head accepted (request line + headers)
IDLE = 0.05  # a direction silent this long counts as idle: the next burst pays slow()'s latency again

PORTAL_HTML = (
    "<!DOCTYPE html>\n<html><head><title>Campus Wi-Fi login</title></head>\n"
    "<body><h1>Welcome to Campus Wi-Fi</h1><p>Please log in to continue.</p>\n"
    '<form method="post" action="/login"><input name="user"><input name="password" type="password">'
    "<button>Log in</button></form></body></html>\n"
)

ACTIONS = ("pass", "status", "captive_portal", "cut_request_body", "cut_response", "stall", "slow", "refuse",
           "drop")
CONNECTION_ACTIONS = ("refuse", "drop")


# ---------------------------------------------------------------------------------------------------- rules


@dataclass
class Rule:
    """One fault: an action with its parameters, a match filter and a selector. Build with the factories."""

    action: str
    params: dict = field(default_factory=dict)
    method: tuple[str, ...] | None = None
    path: str | None = None
    probability: float = 1.0
    every: int = 1
    times: int | None = None
    # runtime state, owned by the proxy (guarded by its lock)
    matched: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)
    _pacers: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        if isinstance(self.method, str):
            self.method = (self.method,)
        if self.method is not None:
            self.method = tuple(m.upper() for m in self.method)
        if not 0.0 <= self.probability <= 1.0 or self.every < 1 or (self.times is not None and self.times < 0):
            raise ValueError("probability must be in [0, 1], every >= 1, times >= 0")

    @property
    def at_connect(self) -> bool:
        """Acts when a connection is accepted (refuse/drop without a request filter)."""
        return self.action in CONNECTION_ACTIONS and self.method is None and self.path is None

    def matches(self, req: Request | None) -> bool:
        if req is None:  # a new connection: only connection-level rules apply
            return self.at_connect
        if self.at_connect:
            return False
        return (self.method is None or req.method in self.method) and (
            self.path is None or req.path.startswith(self.path))

    def pacer(self, direction: str) -> Pacer:
        """The shared pace of this rule's link in one direction ("up" or "down"); event-loop thread only."""
        if direction not in self._pacers:
            self._pacers[direction] = Pacer(self.params.get("bytes_per_second"), self.params.get("latency", 0.0))
        return self._pacers[direction]

    def to_dict(self) -> dict:
        return {"action": self.action, **self.params, "method": list(self.method) if self.method else None,
                "path": self.path, "probability": self.probability, "every": self.every, "times": self.times}

    @classmethod
    def from_dict(cls, d: dict) -> Rule:
        """The inverse of :meth:`to_dict`; also takes hand-written rules (``{"action": "status", "code": 503}``):
        they go through the factories below, which fill in the defaults and reject unknown keys."""
        d = dict(d)
        factory = FACTORIES.get(d.pop("action", None))
        if factory is None:
            raise ValueError(f"a rule needs an action, one of {', '.join(FACTORIES)}")
        return factory(**{k: v for k, v in d.items() if v is not None})


def _rule(action: str, params: dict, method: str | Iterable[str] | None = None, path: str | None = None,
          probability: float = 1.0, every: int = 1, times: int | None = None) -> Rule:
    if method is not None and not isinstance(method, str):
        method = tuple(method)
    return Rule(action, params, method, path, probability, every, times)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def passthrough(**select) -> Rule:
    """Forward untouched (useful to exempt some requests from a later rule)."""
    return _rule("pass", {}, **select)


def status(code: int, retry_after: int | str | None = None, body: str | bytes | None = None,
           headers: dict[str, str] | None = None, **select) -> Rule:
    """Answer ``code`` without forwarding (the request body is read and discarded first)."""
    body = f"fault injected: {code} {http.HTTPStatus(code).phrase}\n" if body is None else _text(body)
    return _rule("status", {"code": code, "retry_after": retry_after, "body": body, "headers": headers or {}},
                 **select)


def captive_portal(html: str | bytes = PORTAL_HTML, **select) -> Rule:
    """Answer every request with ``200 OK`` and an HTML login page, never forwarding."""
    return _rule("captive_portal", {"html": _text(html)}, **select)


def cut_request_body(after_bytes: int, **select) -> Rule:
    """Forward the head and ``after_bytes`` bytes of the body, then close both connections."""
    return _rule("cut_request_body", {"after_bytes": int(after_bytes)}, **select)


def cut_response(after_bytes: int = 0, **select) -> Rule:
    """Forward the request; close the client connection after ``after_bytes`` bytes of the response."""
    return _rule("cut_response", {"after_bytes": int(after_bytes)}, **select)


def stall(seconds: float | None = None, **select) -> Rule:
    """Absorb the request and send nothing for ``seconds`` (None: until the client gives up)."""
    return _rule("stall", {"seconds": seconds}, **select)


def slow(bytes_per_second: float | None = None, latency: float = 0.0, **select) -> Rule:
    """Throttle the request and its response to ``bytes_per_second``, plus ``latency`` per burst."""
    return _rule("slow", {"bytes_per_second": bytes_per_second, "latency": latency}, **select)


def refuse(**select) -> Rule:
    """Close new connections at once (FIN), or the connection of a matching request."""
    return _rule("refuse", {}, **select)


def drop(**select) -> Rule:
    """Reset new connections at once (RST), or the connection of a matching request."""
    return _rule("drop", {}, **select)


FACTORIES = {"pass": passthrough, "status": status, "captive_portal": captive_portal,
             "cut_request_body": cut_request_body, "cut_response": cut_response, "stall": stall, "slow": slow,
             "refuse": refuse, "drop": drop}


# ---------------------------------------------------------------------------------------------------- stats


@dataclass
class Stats:
    """A snapshot of what the proxy saw."""

    connections: int = 0  # client connections accepted
    cuts: int = 0  # connections the proxy cut: refuse, drop, cut_*, kill_connections
    bytes_up: int = 0  # bytes relayed client → upstream
    bytes_down: int = 0  # bytes relayed upstream → client (the proxy's own answers not included)
    requests: Counter = field(default_factory=Counter)  # (method, path) → requests seen (answered or not)
    actions: Counter = field(default_factory=Counter)  # action → times applied ("pass" included)
    events: list = field(default_factory=list)  # (method, path, action) in order; ("", "", action) at connect

    def count(self, method: str | None = None, prefix: str = "") -> int:
        """Requests seen with this method (any if None) and a path starting with ``prefix``."""
        return sum(n for (m, p), n in self.requests.items() if (method is None or m == method)
                   and p.startswith(prefix))

    def to_dict(self) -> dict:
        return {"connections": self.connections, "cuts": self.cuts, "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down, "requests": [[m, p, n] for (m, p), n in self.requests.items()],
                "actions": dict(self.actions), "events": [list(e) for e in self.events]}

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        return cls(d["connections"], d["cuts"], d["bytes_up"], d["bytes_down"],
                   Counter({(m, p): n for m, p, n in d["requests"]}), Counter(d["actions"]),
                   [tuple(e) for e in d["events"]])


# ------------------------------------------------------------------------------------------- HTTP framing


@dataclass
class Request:
    method: str
    path: str  # request-target without query string ("/api/v1/uploads/abc")
    head: bytes  # request line + headers + blank line, forwarded verbatim
    content_length: int
    chunked: bool
    keep_alive: bool


def parse_head(head: bytes) -> Request:
    """Parse a request head (ends with CRLF CRLF); ValueError if it is not HTTP/1.x."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not HTTP/1.x: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = 0 if chunked else int(headers.get("content-length", "0"))
    if length < 0:
        raise ValueError("negative Content-Length")
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    path = target if target == "*" else urlsplit(target).path
    return Request(method.upper(), path, head, length, chunked, keep_alive)


async def body_pieces(reader: asyncio.StreamReader, req: Request) -> AsyncIterator[bytes]:
    """The request body as raw wire bytes, piece by piece (chunk-size lines and trailers included for a
    chunked body). Raises IncompleteReadError if the client closes before the body ends."""
    if not req.chunked:
        remaining = req.content_length
        while remaining:
            data = await reader.read(min(remaining, CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            yield data
        return
    while True:
        line = await reader.readuntil(b"\r\n")  # chunk-size [; extensions] CRLF
        yield line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:  # last chunk: trailers up to an empty line
            while line != b"\r\n":
                line = await reader.readuntil(b"\r\n")
                yield line
            return
        remaining = size + 2  # chunk data + its CRLF
        while remaining:
            data = await reader.read(min(remaining, CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            yield data


async def _replay(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


# ---------------------------------------------------------------------------------------------- the proxy


class Pacer:
    """Paces writes to ``rate`` bytes/s (None: unlimited) with ``latency`` added at the start of each burst.
    Each piece reserves its slot on a shared timeline (``self.next``), so connections sharing a pacer share
    the bandwidth, and the average rate stays exact whatever the piece sizes."""

    def __init__(self, rate: float | None, latency: float) -> None:
        self.rate, self.latency = rate, latency
        self.next = 0.0  # loop time at which the last reserved byte is delivered
        self.step = max(256, min(CHUNK, int(rate / 20))) if rate else CHUNK  # ≤ 50 ms of link time per write

    async def send(self, writer: asyncio.StreamWriter, data: bytes, count) -> None:
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), self.step):
            piece = data[i:i + self.step]
            now = loop.time()
            if now > self.next + IDLE:  # the link was idle: this burst starts now, one latency late
                self.next = now + self.latency
            if self.rate:
                self.next += len(piece) / self.rate
            if self.next > now:
                await asyncio.sleep(self.next - now)
            count(len(piece))  # before write(): the peer may act on the bytes before this line would run
            writer.write(piece)
            await writer.drain()


class _Conn:
    """One client connection and its (lazily opened) upstream connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.pump: asyncio.Task | None = None  # upstream → client splice
        self.response_rule: Rule | None = None  # the forwarded request's rule, applied to its response
        self.cut_left: int | None = None  # cut_response: response bytes still to relay before the cut
        self.closed = False


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    with contextlib.suppress(OSError):
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _parse_address(upstream: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(upstream, tuple):
        return upstream[0], int(upstream[1])
    split = urlsplit(upstream if "//" in upstream else f"//{upstream}")
    if not split.hostname or not split.port:
        raise ValueError(f"upstream must be host:port or http://host:port, not {upstream!r}")
    return split.hostname, split.port


class FaultProxy:
    """The proxy, running its own event loop in a daemon thread. All public methods are thread-safe."""

    def __init__(self, upstream: str | tuple[str, int], *, host: str = "127.0.0.1", port: int = 0,
                 seed: int | None = None) -> None:
        self.upstream = _parse_address(upstream)
        self.host, self.port = host, port
        self._lock = threading.Lock()  # guards rules, their counters, the random generator and the stats
        self._rules: list[Rule] = []
        self._rng = random.Random(seed)
        self._stats = Stats()
        self._conns: set[_Conn] = set()  # event-loop thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------ control (any thread)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set(self, *rules: Rule) -> None:
        """Replace the active rules (none: pass everything). Rules are used as given, counters included."""
        with self._lock:
            self._rules = list(rules)

    def clear(self) -> None:
        self.set()

    def stats(self) -> Stats:
        with self._lock:
            s = self._stats
            return Stats(s.connections, s.cuts, s.bytes_up, s.bytes_down, Counter(s.requests), Counter(s.actions),
                         list(s.events))

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = Stats()

    def kill_connections(self) -> int:
        """Reset every open client connection (and close its upstream one); returns how many."""
        return asyncio.run_coroutine_threadsafe(self._kill_all(), self._loop).result(5)

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port, limit=HEAD_LIMIT))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:  # e.g. the port is taken: report it to start()
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"faultproxy→{self.upstream[1]}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None or not self._loop.is_running():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------------------- event-loop thread only

    async def _shutdown(self) -> None:
        self._server.close()
        await self._kill_all(count=False)
        # let the connection tasks see their closed sockets and end by themselves (cancelling a
        # start_server handler task makes Python 3.11 log a spurious error); cancel only stragglers
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            _, stragglers = await asyncio.wait(tasks, timeout=2)
            for t in stragglers:
                t.cancel()
            await asyncio.gather(*stragglers, return_exceptions=True)

    async def _kill_all(self, count: bool = True) -> int:
        conns = [c for c in self._conns if not c.closed]
        for conn in conns:
            self._cut(conn, reset=True, count=count)
        return len(conns)

    def _pick(self, req: Request | None) -> Rule | None:
        """The rule that fires for this request (None: a new connection), recorded in the stats."""
        with self._lock:
            if req is not None:
                self._stats.requests[(req.method, req.path)] += 1
            for rule in self._rules:
                if not rule.matches(req):
                    continue
                rule.matched += 1
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.matched % rule.every or (rule.probability < 1 and self._rng.random() >= rule.probability):
                    continue
                rule.fired += 1
                break
            else:
                rule = None
            if req is not None or rule is not None:
                action = rule.action if rule else "pass"
                self._stats.actions[action] += 1
                self._stats.events.append((req.method, req.path, action) if req else ("", "", action))
            return rule

    def _count(self, name: str):
        def add(n: int) -> None:
            with self._lock:
                setattr(self._stats, name, getattr(self._stats, name) + n)
        return add

    def _cut(self, conn: _Conn, *, reset: bool, count: bool = True) -> None:
        """Cut a connection: the upstream one gracefully (it reads what was sent, then EOF), the client one
        with a RST (``reset``) or a FIN."""
        if conn.closed:
            return
        conn.closed = True
        if count:
            with self._lock:
                self._stats.cuts += 1
        if conn.up_writer is not None:
            conn.up_writer.close()
        if reset:
            _reset(conn.writer)
        else:
            conn.writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: read requests one by one and apply the rule each one draws."""
        conn = _Conn(reader, writer)
        self._conns.add(conn)
        with self._lock:
            self._stats.connections += 1
        try:
            rule = self._pick(None)
            if rule is not None:  # refuse / drop at accept
                self._cut(conn, reset=rule.action == "drop")
                return
            while not conn.closed:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:  # the client closed between requests
                    break
                try:
                    req = parse_head(head)
                except ValueError:
                    await self._answer(conn, None, 400, "", {}, b"not an HTTP/1.x request\n")
                    break
                rule = self._pick(req)
                if not await self._handle(conn, req, rule):
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client vanished mid-request, or sent garbage: close both sides below
        finally:
            self._conns.discard(conn)
            if conn.pump is not None and conn.pump is not asyncio.current_task():
                conn.pump.cancel()
            if not conn.closed:
                conn.closed = True
                if conn.up_writer is not None:
                    conn.up_writer.close()
                writer.close()

    async def _handle(self, conn: _Conn, req: Request, rule: Rule | None) -> bool:
        """Apply ``rule`` to one request; False when the connection is finished."""
        action = rule.action if rule else "pass"
        p = rule.params if rule else {}
        if action in CONNECTION_ACTIONS:
            self._cut(conn, reset=action == "drop")
            return False
        if action in ("status", "captive_portal"):
            async for _ in body_pieces(conn.reader, req):  # read and discard, so the client is not stuck
                pass
            if action == "status":
                await self._answer(conn, req, p["code"], "text/plain; charset=utf-8", p["headers"],
                                   p["body"].encode("utf-8"), p["retry_after"])
            else:
                await self._answer(conn, req, 200, "text/html; charset=utf-8", {}, p["html"].encode("utf-8"))
            return req.keep_alive

        body = body_pieces(conn.reader, req)
        if action == "stall":
            held = b"".join([piece async for piece in body])
            if not await self._stall(conn, p["seconds"]):
                return False  # the client gave up: the request is lost
            body = _replay(held)
        if not await self._connect_upstream(conn):
            return False

        # the response to this request, as relayed by the pump
        conn.response_rule = rule if action == "slow" else None
        conn.cut_left = p["after_bytes"] if action == "cut_response" else None
        pacer = rule.pacer("up") if action == "slow" else None
        limit = p["after_bytes"] if action == "cut_request_body" else None
        await self._send(conn.up_writer, req.head, pacer, "bytes_up")
        sent = 0
        async for piece in body:
            if conn.closed:  # cut meanwhile (cut_response on an early answer, kill_connections)
                return False
            if limit is not None and sent + len(piece) > limit:
                await self._send(conn.up_writer, piece[:limit - sent], None, "bytes_up")
                self._cut(conn, reset=True)  # the upstream reads ``limit`` bytes of body, then EOF
                return False
            await self._send(conn.up_writer, piece, pacer, "bytes_up")
            sent += len(piece)
        return not conn.closed

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, pacer: Pacer | None, counter: str) -> None:
        if not data:
            return
        if pacer is not None:
            await pacer.send(writer, data, self._count(counter))
            return
        self._count(counter)(len(data))  # counted first, so a test that got the bytes sees them counted
        writer.write(data)
        await writer.drain()

    async def _answer(self, conn: _Conn, req: Request | None, code: int, content_type: str, headers: dict,
                      body: bytes, retry_after: int | str | None = None) -> None:
        """Answer a request ourselves (the upstream never sees it)."""
        if code < 200 or code in (204, 304):
            body = b""
        lines = [f"HTTP/1.1 {code} {http.HTTPStatus(code).phrase}", f"Content-Length: {len(body)}"]
        if content_type and body:
            lines.append(f"Content-Type: {content_type}")
        if retry_after is not None:
            lines.append(f"Retry-After: {retry_after}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append("Connection: keep-alive" if req is not None and req.keep_alive else "Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn.writer.write(head if req is not None and req.method == "HEAD" else head + body)
        await conn.writer.drain()

    async def _stall(self, conn: _Conn, seconds: float | None) -> bool:
        """Hold still for ``seconds`` (None: forever); False as soon as the client closes (or is cut)."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while not conn.closed and not conn.reader.at_eof():  # at_eof: the client's FIN has arrived
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return True
            await asyncio.sleep(0.05 if left is None else min(0.05, left))
        return False

    async def _connect_upstream(self, conn: _Conn) -> bool:
        if conn.up_writer is not None:
            return not conn.closed
        try:
            conn.up_reader, conn.up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:  # the upstream is down: the client sees its connection reset
            with self._lock:
                self._stats.events.append(("", "", "upstream_unreachable"))
            _reset(conn.writer)
            conn.closed = True
            return False
        conn.pump = asyncio.create_task(self._pump(conn))
        return True

    async def _pump(self, conn: _Conn) -> None:
        """Upstream → client splice, applying the current request's response rule (slow, cut_response)."""
        try:
            while not conn.closed:
                data = await conn.up_reader.read(CHUNK)
                if not data or conn.closed:
                    break
                if conn.cut_left is not None and len(data) > conn.cut_left:
                    await self._send(conn.writer, data[:conn.cut_left], None, "bytes_down")
                    self._cut(conn, reset=False)  # the upstream answered; the client never learns what
                    return
                if conn.cut_left is not None:
                    conn.cut_left -= len(data)
                rule = conn.response_rule
                await self._send(conn.writer, data, rule.pacer("down") if rule else None, "bytes_down")
        except (ConnectionError, OSError):
            pass
        # the upstream closed (or failed): close the client too, after what was relayed
        if not conn.closed:
            conn.closed = True
            conn.writer.close()
            if conn.up_writer is not None:
                conn.up_writer.close()


# ------------------------------------------------------------------------------------------- subprocess


class FaultProxyProcess:
    """The same proxy in a child process (``python faultproxy.py``), driven over its stdin/stdout with one
    JSON object per line. Same control API as :class:`FaultProxy`."""

    def __init__(self, upstream: str | tuple[str, int], *, host: str = "127.0.0.1", port: int = 0,
                 seed: int | None = None) -> None:
        h, p = _parse_address(upstream)
        cmd = [sys.executable, __file__, "--upstream", f"{h}:{p}", "--host", host, "--port", str(port)]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = json.loads(self.proc.stdout.readline() or "{}")
        if "listening" not in hello:
            self.proc.kill()
            raise RuntimeError(f"faultproxy did not start: {hello}")
        self.host, self.port = hello["listening"]
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _call(self, **cmd) -> dict:
        with self._lock:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            reply = json.loads(self.proc.stdout.readline() or '{"error": "faultproxy exited"}')
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def set(self, *rules: Rule) -> None:
        self._call(op="set", rules=[r.to_dict() for r in rules])

    def clear(self) -> None:
        self.set()

    def stats(self) -> Stats:
        return Stats.from_dict(self._call(op="stats")["stats"])

    def reset_stats(self) -> None:
        self._call(op="reset_stats")

    def kill_connections(self) -> int:
        return self._call(op="kill")["killed"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()  # EOF on stdin: the child stops its proxy and exits
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self) -> FaultProxyProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fault-injecting HTTP/1.1 proxy (control: JSON lines on stdin)")
    ap.add_argument("--upstream", required=True, help="host:port of the real server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--rule", action="append", default=[], help='initial rule as JSON, e.g. {"action": "stall"}')
    args = ap.parse_args(argv)
    proxy = FaultProxy(args.upstream, host=args.host, port=args.port, seed=args.seed).start()
    proxy.set(*(Rule.from_dict(json.loads(r)) for r in args.rule))
    print(json.dumps({"listening": [proxy.host, proxy.port]}), flush=True)
    # commands: {"op": "set", "rules": [...]} | {"op": "stats"} | {"op": "reset_stats"} | {"op": "kill"}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "set":
                proxy.set(*(Rule.from_dict(d) for d in cmd["rules"]))
                reply: dict = {"ok": True}
            elif op == "stats":
                reply = {"stats": proxy.stats().to_dict()}
            elif op == "reset_stats":
                proxy.reset_stats()
                reply = {"ok": True}
            elif op == "kill":
                reply = {"killed": proxy.kill_connections()}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as e:  # report a bad command to the caller, keep serving
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
