"""The fault-injecting proxy (tests/peers/faultproxy.py), each mode proven against a real HTTP/1.1 server on
loopback with a real ``requests`` client."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from peers import faultproxy as fp

# ------------------------------------------------------------------------------------------ the upstream


class _Handler(BaseHTTPRequestHandler):
    """Records every request it handles (method, path, body bytes received vs announced, client port), then
    answers 200 with a JSON echo, or ``n`` bytes for ``/big?n=...``. A truncated body gets no answer."""

    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms Nagle/delayed-ACK wait

    def log_message(self, *args) -> None:
        pass

    def _read_body(self) -> tuple[bytes, int | None]:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while True:
                line = self.rfile.readline()
                if not line:
                    return body, None  # truncated inside the chunked framing
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return body, len(body)
                body += self.rfile.read(size)
                self.rfile.read(2)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length), length  # short only if the connection closed mid-body

    def _any(self) -> None:
        body, announced = self._read_body()
        url = urlsplit(self.path)
        record = {"method": self.command, "path": url.path, "received": len(body), "announced": announced,
                  "port": self.client_address[1], "at": time.monotonic()}
        self.server.upstream.record(record)
        if announced is None or len(body) < announced:
            self.close_connection = True
            return
        if url.path == "/big":
            out = b"x" * int(parse_qs(url.query)["n"][0])
        else:
            out = json.dumps({"method": self.command, "received": len(body)}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)
        except OSError:
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = _any


class _Server(ThreadingHTTPServer):
    block_on_close = False  # do not join handler threads parked on idle keep-alive connections

    def handle_error(self, request, client_address) -> None:
        pass  # cut connections are the point of these tests


class Upstream:
    def __init__(self) -> None:
        self.handled: list[dict] = []
        self._cv = threading.Condition()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.upstream = self
        self.address = self.server.server_address[:2]
        self.url = f"http://{self.address[0]}:{self.address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def record(self, record: dict) -> None:
        with self._cv:
            self.handled.append(record)
            self._cv.notify_all()

    def wait(self, n: int, timeout: float = 3.0) -> list[dict]:
        with self._cv:
            assert self._cv.wait_for(lambda: len(self.handled) >= n, timeout), f"upstream saw {self.handled}"
            return list(self.handled)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


@pytest.fixture
def proxy(upstream):
    with fp.FaultProxy(upstream.address, seed=7) as p:
        yield p


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


# ----------------------------------------------------------------------------------------------- pass


def test_pass_keeps_keep_alive_and_bodies_intact(proxy, upstream, session):
    for i in range(5):
        r = session.post(f"{proxy.url}/echo/{i}", data=b"a" * (1000 * i), timeout=5)
        assert r.status_code == 200 and r.json() == {"method": "POST", "received": 1000 * i}
    r = session.patch(f"{proxy.url}/chunked", data=(b"b" * 700 for _ in range(10)), timeout=5)  # chunked body
    assert r.json() == {"method": "PATCH", "received": 7000}
    head = session.head(f"{proxy.url}/head", timeout=5)
    assert head.content == b"" and head.headers["Content-Length"] == str(len(b'{"method": "HEAD", "received": 0}'))
    assert session.get(f"{proxy.url}/big?n=300000", timeout=5).content == b"x" * 300_000

    handled = upstream.wait(8)
    assert len({h["port"] for h in handled}) == 1, "keep-alive: the upstream saw one connection"
    s = proxy.stats()
    assert s.connections == 1 and s.cuts == 0
    assert s.count() == 8 and s.count("POST", "/echo/") == 5 and s.requests[("GET", "/big")] == 1
    assert s.actions == {"pass": 8}
    assert s.bytes_up > 1000 * (0 + 1 + 2 + 3 + 4) + 7000 and s.bytes_down > 300_000


# --------------------------------------------------------------------------------------------- status


def test_status_answers_without_forwarding_and_keeps_the_connection(proxy, upstream, session):
    for code in (503, 429, 500):
        proxy.set(fp.status(code, retry_after=7, method="PATCH", path="/api/v1/uploads"))
        r = session.patch(f"{proxy.url}/api/v1/uploads/abc", data=b"z" * 200_000, timeout=5)
        assert r.status_code == code and r.headers["Retry-After"] == "7"
        assert str(code) in r.text
    assert upstream.handled == [], "the upstream saw nothing"
    # the body was read and discarded exactly: the same connection carries the next requests
    assert session.get(f"{proxy.url}/api/v1/uploads/abc", timeout=5).status_code == 200  # GET: not filtered
    assert session.patch(f"{proxy.url}/other", data=b"1", timeout=5).status_code == 200  # path: not filtered
    assert [h["method"] for h in upstream.wait(2)] == ["GET", "PATCH"]
    s = proxy.stats()
    assert s.connections == 1
    assert s.actions == {"status": 3, "pass": 2}


def test_selectors_every_probability_times(proxy, upstream, session):
    proxy.set(fp.status(503, every=3))
    codes = [session.get(f"{proxy.url}/n", timeout=5).status_code for _ in range(9)]
    assert codes == [200, 200, 503] * 3

    proxy.set(fp.status(503, times=2))
    codes = [session.get(f"{proxy.url}/n", timeout=5).status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]

    # "fail 30 % of PATCHes"; a rule that does not fire falls through to the next one
    proxy.set(fp.status(503, method="PATCH", probability=0.3), fp.status(429, method="PATCH", every=10))
    codes = [session.patch(f"{proxy.url}/p", data=b"x", timeout=5).status_code for _ in range(100)]
    assert 15 <= codes.count(503) <= 45, codes.count(503)
    assert 1 <= codes.count(429) <= 10 and codes.count(200) == 100 - codes.count(503) - codes.count(429)
    assert sum(h["method"] == "PATCH" for h in upstream.handled) == codes.count(200)


# ------------------------------------------------------------------------------------------------ cuts


def test_cut_request_body_leaves_the_upstream_with_a_truncated_body(proxy, upstream, session):
    proxy.set(fp.cut_request_body(1000, method="PATCH"))
    with pytest.raises(requests.ConnectionError):
        session.patch(f"{proxy.url}/api/v1/uploads/u1", data=b"y" * 50_000, timeout=5)
    (h,) = upstream.wait(1)
    assert (h["method"], h["received"], h["announced"]) == ("PATCH", 1000, 50_000)
    s = proxy.stats()
    assert s.cuts == 1 and s.actions == {"cut_request_body": 1}
    # a body not longer than after_bytes is not cut
    proxy.set(fp.cut_request_body(1000))
    assert session.post(f"{proxy.url}/small", data=b"y" * 1000, timeout=5).json()["received"] == 1000


def test_cut_response_the_upstream_did_the_work_the_client_never_learns(proxy, upstream, session):
    proxy.set(fp.cut_response(method="PATCH"))
    with pytest.raises(requests.ConnectionError):
        session.patch(f"{proxy.url}/api/v1/uploads/u1", data=b"w" * 30_000, timeout=5)
    (h,) = upstream.wait(1)
    assert (h["method"], h["received"], h["announced"]) == ("PATCH", 30_000, 30_000)

    # cut inside the response body: exactly after_bytes of it were relayed
    proxy.set(fp.cut_response(after_bytes=5000))
    proxy.reset_stats()
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        session.get(f"{proxy.url}/big?n=100000", timeout=5)
    upstream.wait(2)
    s = proxy.stats()
    assert s.bytes_down == 5000 and s.cuts == 1


# ------------------------------------------------------------------------------------------------ stall


def test_stall_times_the_client_out_and_forwards_nothing(proxy, upstream, session):
    proxy.set(fp.stall())  # forever
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.patch(f"{proxy.url}/api/v1/uploads/u1", data=b"s" * 100_000, timeout=(2, 1))
    assert 0.9 < time.monotonic() - t0 < 2.5
    time.sleep(0.2)  # the client gave up and closed: the held request is dropped, never forwarded
    assert upstream.handled == [] and proxy.stats().actions == {"stall": 1}

    proxy.set(fp.stall(0.5))  # a stall that ends: the request is delivered late
    t0 = time.monotonic()
    r = session.patch(f"{proxy.url}/late", data=b"s" * 10_000, timeout=(2, 3))
    assert r.json() == {"method": "PATCH", "received": 10_000} and time.monotonic() - t0 >= 0.5
    assert [h["path"] for h in upstream.wait(1)] == ["/late"]


# ------------------------------------------------------------------------------------------------- slow


def _elapsed(call) -> float:
    t0 = time.monotonic()
    call()
    return time.monotonic() - t0


def test_slow_limits_throughput_both_ways(proxy, upstream, session):
    size, rate = 300_000, 200_000  # 1.5 s each way at the set rate
    fast_up = _elapsed(lambda: session.post(f"{proxy.url}/up", data=b"u" * size, timeout=5))
    fast_down = _elapsed(lambda: session.get(f"{proxy.url}/big?n={size}", timeout=5))
    assert fast_up < 0.5 and fast_down < 0.5, "the unthrottled link is fast (the throttle is what we measure)"

    proxy.set(fp.slow(rate))
    up = _elapsed(lambda: session.post(f"{proxy.url}/up", data=b"u" * size, timeout=10))
    down = _elapsed(lambda: session.get(f"{proxy.url}/big?n={size}", timeout=10))
    up_rate, down_rate = size / up, size / down
    print(f"slow({rate}): upload {up_rate:.0f} B/s ({up_rate / rate:.3f}x), "
          f"download {down_rate:.0f} B/s ({down_rate / rate:.3f}x)")
    assert 0.7 * rate <= up_rate <= 1.3 * rate
    assert 0.7 * rate <= down_rate <= 1.3 * rate


def test_slow_latency_once_per_burst(proxy, session):
    proxy.set(fp.slow(latency=0.3))
    small = _elapsed(lambda: session.get(f"{proxy.url}/ping", timeout=5))  # request burst + response burst
    big = _elapsed(lambda: session.get(f"{proxy.url}/big?n=2000000", timeout=5))  # not 0.3 s per chunk
    print(f"latency 0.3: small GET {small:.3f} s, 2 MB GET {big:.3f} s")
    assert 0.6 <= small < 1.0 and 0.6 <= big < 1.2


# ------------------------------------------------------------------------------------------ captive portal


def test_captive_portal_answers_everything_with_html(proxy, upstream, session):
    proxy.set(fp.captive_portal())
    for method in ("GET", "HEAD", "POST", "PATCH", "OPTIONS", "DELETE"):
        r = session.request(method, f"{proxy.url}/api/v1/uploads/u1", data=b"p" * 5000 if method in (
            "POST", "PATCH") else None, headers={"Tus-Resumable": "1.0.0"}, timeout=5)
        assert r.status_code == 200, method
        assert r.headers["Content-Type"].startswith("text/html"), method
        assert int(r.headers["Content-Length"]) == len(fp.PORTAL_HTML.encode())
        assert r.text == ("" if method == "HEAD" else fp.PORTAL_HTML)
        assert "Upload-Offset" not in r.headers and "Capturekit-Capture-Id" not in r.headers
    assert upstream.handled == []
    s = proxy.stats()
    assert s.count() == 6 and s.actions == {"captive_portal": 6} and s.connections == 1 and s.bytes_up == 0


# ------------------------------------------------------------------------------------- refuse / drop


def _raw(proxy) -> bytes | type[Exception]:
    """What a raw socket sees sending a request through the proxy: bytes, or the error class."""
    try:  # (a reset may already surface in connect(): the proxy accepts and resets before it returns)
        with socket.create_connection((proxy.host, proxy.port), timeout=2) as s:
            time.sleep(0.1)  # let the proxy act first
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(100)
    except OSError as e:
        return type(e)


def test_refuse_and_drop(proxy, upstream, session):
    proxy.set(fp.refuse())
    assert _raw(proxy) in (b"", BrokenPipeError, ConnectionResetError)  # FIN (or RST: it sent after the FIN)
    with pytest.raises(requests.ConnectionError):
        session.get(f"{proxy.url}/x", timeout=5)

    proxy.set(fp.drop())
    assert _raw(proxy) is ConnectionResetError  # RST
    with pytest.raises(requests.ConnectionError):
        session.get(f"{proxy.url}/x", timeout=5)
    assert upstream.handled == []
    s = proxy.stats()
    assert s.cuts == 4 and s.actions == {"refuse": 2, "drop": 2} and s.count() == 0


def test_kill_connections_and_request_level_drop(proxy, upstream, session):
    assert session.get(f"{proxy.url}/before", timeout=5).status_code == 200
    proxy.set(fp.refuse())  # new connections only: the pooled one still works ...
    assert session.get(f"{proxy.url}/pooled", timeout=5).status_code == 200
    assert proxy.kill_connections() == 1  # ... until the network "goes down" for it too
    with pytest.raises(requests.ConnectionError):
        session.get(f"{proxy.url}/after", timeout=5)

    proxy.set(fp.drop(method="PATCH"))  # a request filter: acts on the matching request's connection
    assert session.get(f"{proxy.url}/get", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        session.patch(f"{proxy.url}/api/v1/uploads/u1", data=b"d" * 1000, timeout=5)
    assert [h["path"] for h in upstream.wait(3)] == ["/before", "/pooled", "/get"]


# -------------------------------------------------------------------------------------------- subprocess


def test_subprocess_proxy_is_controlled_while_running(upstream, session):
    with fp.FaultProxyProcess(upstream.address, seed=1) as proxy:
        assert session.get(f"{proxy.url}/one", timeout=5).status_code == 200
        proxy.set(fp.captive_portal(method="GET"), fp.status(503, retry_after=3, body="busy"))
        r = session.get(f"{proxy.url}/two", timeout=5)
        assert r.status_code == 200 and r.text == fp.PORTAL_HTML
        r = session.post(f"{proxy.url}/three", data=b"x" * 10_000, timeout=5)
        assert (r.status_code, r.headers["Retry-After"], r.text) == (503, "3", "busy")
        proxy.clear()
        assert session.get(f"{proxy.url}/four", timeout=5).status_code == 200
        assert proxy.kill_connections() == 1
        s = proxy.stats()
        assert s.count() == 4 and s.actions == {"pass": 2, "captive_portal": 1, "status": 1}
        assert s.events[1] == ("GET", "/two", "captive_portal") and s.cuts == 1
    assert [h["path"] for h in upstream.handled] == ["/one", "/four"]
    assert proxy.proc.returncode == 0
