"""The centre, as the sync daemon sees it: tus 1.0 uploads and the kit API on requests (docs/kit-api.md).

One obvious call per thing the daemon does — :meth:`Centre.upload` (create or resume, send, confirm),
:meth:`Centre.roster`, :meth:`Centre.keys`, :meth:`Centre.heartbeat` — and errors typed by meaning, as
requests does, so the daemon can decide: :class:`Unreachable` (network down, timeouts, a captive portal or
a proxy answering instead of the centre), :class:`Throttled` (429/503, with the ``Retry-After`` it asked
for), :class:`Refused` (this bundle will never be accepted: another content under its capture id),
:class:`AuthFailed` (token missing or revoked), :class:`CentreError` (anything else, retried).

Our own tus client rather than tuspy: tuspy cannot send one region of a file (the sealed bytes after the
bundle's clear header), time out on no progress while allowing a slow link its time, honour
``Retry-After``, or check the centre's confirmation headers; the subset we need is small.

**Confirmed means confirmed**: :meth:`upload` returns only when an answer names the capture id and the
SHA-256 the centre stored, equal to ours. Anything else — a ``200`` login page — raises.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

TUS = {"Tus-Resumable": "1.0.0"}


class CentreError(RuntimeError):
    """The centre (or what answered in its place) did not do what was asked; retried with back-off."""


class Unreachable(CentreError):
    """No centre at the other end: the network, a timeout, or a captive portal / proxy answering instead."""


class Throttled(CentreError):
    """The centre asked us to come back later (429/503)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthFailed(CentreError):
    """The centre refused this kit's token (missing, wrong or revoked)."""


class Mismatch(CentreError):
    """The centre says the bytes it got do not match their checksum or the bundle's SHA-256: nothing kept."""


class Refused(CentreError):
    """The centre will never accept this bundle (a conflicting capture id, a bundle that does not open)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Confirmation:
    capture_id: str
    sha256: str
    status: str  # the centre's word: received (held, opened just after) | stored | refused (held, will not open)
    reason: str = ""  # refused: why (staff see it at the centre; the bytes are there to open again)


@dataclass(frozen=True)
class Bundle:
    """What is uploaded: a region of the bundle file (the sealed bytes) and its clear header."""

    capture_id: str
    path: Path
    offset: int  # where the sealed bytes start in the file
    length: int
    sha256: str
    header: dict[str, Any]


class _Region:
    """A file-like view of one chunk's bytes, already in memory, handed out in blocks of 64 KiB under a bandwidth
    cap, else 1 MiB (requests streams it with a Content-Length). ``read(size)`` hands out a whole block even when
    asked for less: http.client and urllib3 1.x/2.x send whatever one read returns, and their 8–16 KiB reads
    would cost hundreds of Python calls per bundle. ``on_progress`` is called as bytes leave; ``rate`` caps bytes
    per second. The chunk is read from the bundle file once: the bytes sent are the bytes its ``Upload-Checksum``
    was computed from."""

    def __init__(self, data: bytes, rate: float = 0.0, on_progress: Callable[[int], None] | None = None) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._rate = rate
        self._t0 = time.monotonic()
        self._on_progress = on_progress
        self._block = 64 * 1024 if rate else 1 << 20  # capped: fine-grained pacing; else few, large writes
        self.len = len(data)

    def __len__(self) -> int:
        return self.len

    def read(self, size: int = -1) -> bytes | memoryview:
        left = self.len - self._pos
        if left <= 0:
            return b""
        n = left if size is None or size < 0 else min(max(size, self._block), left)
        if self._rate:
            ahead = self._pos / self._rate - (time.monotonic() - self._t0)
            if ahead > 0:
                time.sleep(ahead)
        data = self._data[self._pos:self._pos + n]  # a view: sent as it is, not copied
        self._pos += n
        if self._on_progress:
            self._on_progress(n)
        return data


class Capabilities:
    """What the centre's tus server says it can do (``OPTIONS``, asked once), shared by the clients of one daemon:
    one of them asks, the others wait for its answer."""

    def __init__(self) -> None:
        self.creation_with_upload: bool | None = None
        self.lock = threading.Lock()


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


class Centre:
    """One centre, one kit token. Thread-unsafe: the sync daemon has one loop."""

    def __init__(self, url: str, token: str, connect_timeout: float = 10.0, inactivity_timeout: float = 30.0,
                 chunk_bytes: int = 4 * 2**20, bandwidth_bps: float = 0.0, ca_file: str = "",
                 on_progress: Callable[[int], None] | None = None, capabilities: Capabilities | None = None) -> None:
        self.base = url.rstrip("/")
        parts = requests.compat.urlparse(self.base)
        self.origin = f"{parts.scheme}://{parts.netloc}"  # upload paths (from Location) are joined to this
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "capturekit-sync"})
        if ca_file:
            self.session.verify = ca_file
        self.timeout = (connect_timeout, inactivity_timeout)
        self.chunk_bytes = chunk_bytes
        self.bandwidth_bps = bandwidth_bps
        self.on_progress = on_progress
        self.capabilities = capabilities or Capabilities()

    def close(self) -> None:
        self.session.close()

    # ---- plumbing
    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}{path}"
        try:
            resp = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kw)
        except requests.exceptions.ConnectionError as exc:
            raise Unreachable(f"{method} {path}: {_short(exc)}") from None
        except requests.exceptions.Timeout as exc:
            raise Unreachable(f"{method} {path}: timed out ({_short(exc)})") from None
        except requests.exceptions.RequestException as exc:
            raise CentreError(f"{method} {path}: {_short(exc)}") from None
        if resp.status_code in (429, 503):
            raise Throttled(f"{method} {path}: {resp.status_code}", _retry_after(resp))
        if resp.status_code == 401:
            raise AuthFailed(f"{method} {path}: 401 {_reason(resp)}")
        if 300 <= resp.status_code < 400 and resp.status_code != 304:
            raise Unreachable(f"{method} {path}: redirected to {resp.headers.get('Location', '?')} (captive portal?)")
        if resp.status_code >= 500:
            raise CentreError(f"{method} {path}: {resp.status_code} {_reason(resp)}")
        return resp

    def _json(self, resp: requests.Response, what: str) -> Any:
        if "json" not in resp.headers.get("Content-Type", ""):
            raise Unreachable(f"{what}: {resp.status_code} {resp.headers.get('Content-Type', 'no type')}, not the"
                              " centre's JSON (captive portal or proxy?)")
        try:
            return resp.json()
        except ValueError:
            raise Unreachable(f"{what}: unreadable JSON") from None

    # ---- captures
    def confirmed(self, capture_id: str, sha256: str) -> Confirmation | None:
        """The centre's record of ``capture_id`` if it holds it with ``sha256``; None if it does not hold it."""
        resp = self._request("GET", f"/api/v1/captures/{capture_id}")
        if resp.status_code == 404 and _centre_error(resp):
            return None
        if resp.status_code != 200:
            raise CentreError(f"GET capture {capture_id}: {resp.status_code} {_reason(resp)}")
        body = self._json(resp, f"GET capture {capture_id}")
        if not isinstance(body, dict) or body.get("capture_id") != capture_id:
            raise Unreachable(f"GET capture {capture_id}: the answer does not name it")
        if body.get("sha256") != sha256:
            raise Refused(f"{capture_id}: the centre holds other content (SHA-256 {body.get('sha256')})",
                          "capture_conflict")
        return Confirmation(capture_id, sha256, str(body.get("status") or "stored"), str(body.get("reason") or ""))

    def _confirmation(self, resp: requests.Response, bundle: Bundle) -> Confirmation | None:
        cid, sha = resp.headers.get("Capturekit-Capture-Id"), resp.headers.get("Capturekit-Sha256")
        status = resp.headers.get("Capturekit-Status", "")
        if cid is None and sha is None:
            return None
        if cid != bundle.capture_id or sha != bundle.sha256:
            raise Unreachable(f"{bundle.capture_id}: the confirmation names {cid} / {sha}, not this bundle")
        # refused too: the centre holds these very bytes (it could not open them: a missing key, a kit fault);
        # nothing the kit could send again would differ, so the kit's copy has done its work
        return Confirmation(cid, sha, status or "stored", resp.headers.get("Capturekit-Reason", ""))

    def creation_with_upload(self) -> bool:
        """Whether the centre takes an upload's bytes in its creation request (tus OPTIONS, asked once; an answer
        that is not a tus server's — a portal's — is not remembered)."""
        caps = self.capabilities
        with caps.lock:
            if caps.creation_with_upload is None:
                resp = self._request("OPTIONS", "/api/v1/uploads")
                if resp.status_code not in (200, 204) or "Tus-Version" not in resp.headers:
                    return False
                extensions = {e.strip() for e in resp.headers.get("Tus-Extension", "").split(",")}
                caps.creation_with_upload = "creation-with-upload" in extensions
            return caps.creation_with_upload

    def create(self, bundle: Bundle, body: bytes | None = None) -> tuple[str, Confirmation | None, int]:
        """tus creation: the upload's URL, the confirmation if the centre holds the capture (already, or now:
        ``body``, the first sealed bytes, goes in the same request — creation-with-upload), and its offset."""
        meta = ",".join(f"{k} {_b64(v)}" for k, v in (
            ("capture_id", bundle.capture_id), ("sha256", bundle.sha256),
            ("header", json.dumps(bundle.header, separators=(",", ":")))))
        headers = {**TUS, "Upload-Length": str(bundle.length), "Upload-Metadata": meta}
        data = None
        if body:
            headers["Content-Type"] = "application/offset+octet-stream"
            data = _Region(body, self.bandwidth_bps, self.on_progress)
        resp = self._request("POST", "/api/v1/uploads", headers=headers, data=data)
        if resp.status_code == 409 and _centre_error(resp):
            raise Refused(f"{bundle.capture_id}: the centre holds this capture id with other content (409)",
                          "capture_conflict")
        if resp.status_code == 460 and _centre_error(resp):
            raise Mismatch(f"{bundle.capture_id}: the centre found a checksum mismatch in the creation body")
        if resp.status_code != 201 or "Location" not in resp.headers:
            raise self._unexpected(resp, f"create {bundle.capture_id}", expected="201 with a Location")
        # keep the path only: the upload lives in the centre's database and store, so any centre process
        # (another address behind the same name, a fail-over) resumes it
        path = requests.compat.urlparse(requests.compat.urljoin(self.base + "/", resp.headers["Location"])).path
        done = self._confirmation(resp, bundle)
        if done is not None or not body:
            return path, done, 0
        try:
            return path, None, int(resp.headers["Upload-Offset"])
        except (KeyError, ValueError):
            raise self._unexpected(resp, f"create {bundle.capture_id}", expected="an Upload-Offset") from None

    def offset(self, url: str) -> int | None:
        """The centre's offset of an upload, or None if it no longer knows it (start again)."""
        resp = self._request("HEAD", self.origin + url, headers=TUS)
        if resp.status_code in (403, 404, 410) and resp.headers.get("Tus-Resumable"):
            return None  # (a HEAD has no body: the tus header tells the centre's answer from a portal's)
        try:
            return int(resp.headers["Upload-Offset"])
        except (KeyError, ValueError):
            raise self._unexpected(resp, f"HEAD {url}", expected="an Upload-Offset") from None

    def upload(self, bundle: Bundle, url: str | None, remember: Callable[[str], None]) -> Confirmation:
        """Create (or resume ``url``), send every remaining byte in PATCH chunks, and return the centre's
        confirmation. ``remember(url)`` is called as soon as an unfinished upload exists, so a crash resumes it."""
        offset = self.offset(url) if url else None
        if offset is None:
            # a bundle that fits one chunk goes with its creation: one request, one transaction at the centre
            first = self._read(bundle, 0, bundle.length) if (bundle.length <= self.chunk_bytes
                                                              and self.creation_with_upload()) else None
            url, done, offset = self.create(bundle, first)
            del first
            if done:  # held already, or confirmed by its one request: nothing left to resume, nothing to remember
                return done
            remember(url)
        while offset < bundle.length:
            n = min(self.chunk_bytes, bundle.length - offset)
            chunk = self._read(bundle, offset, n)
            headers = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
            if n < bundle.length:  # one chunk of several: checked on its own, so a damaged one costs only itself
                headers["Upload-Checksum"] = f"sha256 {base64.b64encode(hashlib.sha256(chunk).digest()).decode()}"
            # (one PATCH with every byte: the centre checks them all against the bundle's SHA-256 anyway)
            body = _Region(chunk, self.bandwidth_bps, self.on_progress)
            resp = self._request("PATCH", self.origin + url, data=body, headers=headers)
            if resp.status_code == 409 and _centre_error(resp):  # our offset is stale (a cut PATCH kept part)
                offset = self.offset(url)
                if offset is None:
                    raise CentreError(f"{bundle.capture_id}: the upload vanished at the centre; starting again")
                continue
            if resp.status_code == 460 and _centre_error(resp):
                raise Mismatch(f"{bundle.capture_id}: the centre found a checksum mismatch at offset {offset}")
            if resp.status_code in (404, 410) and _centre_error(resp):
                raise CentreError(f"{bundle.capture_id}: the centre dropped the upload ({resp.status_code})")
            if resp.status_code != 204 or "Upload-Offset" not in resp.headers:
                raise self._unexpected(resp, f"PATCH {bundle.capture_id}", expected="204 with an Upload-Offset")
            offset = int(resp.headers["Upload-Offset"])
            if offset >= bundle.length:
                done = self._confirmation(resp, bundle)
                if done:
                    return done
        done = self.confirmed(bundle.capture_id, bundle.sha256)  # sent before, confirmation lost on the way
        if done is None:
            raise CentreError(f"{bundle.capture_id}: all bytes sent but the centre does not hold it")
        return done

    @staticmethod
    def _read(bundle: Bundle, offset: int, n: int) -> bytes:
        """``n`` sealed bytes from ``offset``, read once: checksummed and sent from memory."""
        with open(bundle.path, "rb") as fh:
            fh.seek(bundle.offset + offset)
            chunk = fh.read(n)
        if len(chunk) != n:
            raise CentreError(f"{bundle.capture_id}: the bundle file ends {n - len(chunk)} bytes early at offset"
                              f" {offset}")
        return chunk

    def _unexpected(self, resp: requests.Response, what: str, expected: str) -> CentreError:
        text = f"{what}: {resp.status_code} {resp.headers.get('Content-Type', '')} instead of {expected}"
        if 400 <= resp.status_code < 500 and _centre_error(resp):  # the centre itself says no: final
            return Refused(f"{text}: {_reason(resp)}", _error_code(resp))
        # a success, or an error, that is not the centre's own answer: a portal, a proxy, a login page
        return Unreachable(text + " — not the centre's answer (captive portal or proxy?)")

    # ---- down and up
    def roster(self, etag: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """(roster document, its ETag), or (None, etag) when unchanged."""
        resp = self._request("GET", "/api/v1/roster", headers={"If-None-Match": etag} if etag else {})
        if resp.status_code == 304:
            return None, etag
        if resp.status_code != 200:
            raise self._unexpected(resp, "GET roster", expected="200 or 304")
        doc = self._json(resp, "GET roster")
        if not isinstance(doc, dict) or doc.get("format") != "capturekit.roster/2":
            raise Unreachable("GET roster: not a capturekit.roster/2 document")
        return doc, resp.headers.get("ETag")

    def keys(self) -> dict[str, Any]:
        resp = self._request("GET", "/api/v1/keys")
        if resp.status_code != 200:
            raise self._unexpected(resp, "GET keys", expected="200")
        body = self._json(resp, "GET keys")
        if not isinstance(body, dict) or not isinstance(body.get("sealing_public_keys"), list):
            raise Unreachable("GET keys: not the centre's key list")
        return body

    def heartbeat(self, payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Send a heartbeat; return the centre's answer and the round-trip time in seconds."""
        t0 = time.monotonic()
        resp = self._request("POST", "/api/v1/heartbeat", json=payload)
        rtt = time.monotonic() - t0
        if resp.status_code != 200:
            raise self._unexpected(resp, "POST heartbeat", expected="200")
        body = self._json(resp, "POST heartbeat")
        if not isinstance(body, dict) or "server_time" not in body:
            raise Unreachable("POST heartbeat: the answer has no server_time")
        return body, rtt


def _centre_error(resp: requests.Response) -> bool:
    """Whether a 4xx is the centre's own refusal (its JSON error body), not a portal's page."""
    if "json" not in resp.headers.get("Content-Type", ""):
        return False
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def _reason(resp: requests.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("detail") or body.get("error") or "")[:200]
    except ValueError:
        return resp.reason or ""


def _error_code(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error") or resp.status_code)
    except ValueError:
        return str(resp.status_code)
