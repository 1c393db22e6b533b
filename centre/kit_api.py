"""The kit-facing HTTP API (docs/kit-api.md): tus uploads, captures, roster and keys down, heartbeats.

Thin: each route checks what HTTP can check (token, headers, sizes), then calls :mod:`centre.uploads`,
:mod:`centre.rosters` or :mod:`centre.heartbeats` in a worker thread (SQLAlchemy and the store are blocking).
Every refusal is JSON ``{"error", "detail"}`` with a 4xx status; a failing database or object store is ``503``
with ``Retry-After`` (the kit tries again), never a ``5xx`` for anything a client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import heartbeats, rosters, uploads
from .bodycap import capped
from .context import Centre
from .errors import ApiError
from .ingest import held, sealed_key
from .kits import Kit, authenticate
from .storage import StorageError

TUS_VERSION = "1.0.0"
BASE = "/api/v1"
MAX_JSON_BODY = 256 * 1024
MAX_INT = 2**62

bearer = HTTPBearer(auto_error=False, description="the kit's token from `capturekit centre add-kit NAME`")


class ErrorBody(BaseModel):
    error: str
    detail: str


class CaptureState(BaseModel):
    capture_id: str
    sha256: str
    status: str = Field(description="received (every byte held, not opened yet) | stored | refused")
    reason: str | None = None


class KeysBody(BaseModel):
    sealing_public_keys: list[str]
    makeup_public_keys: list[str]


class Backlog(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    bundles: int | None = None
    bytes: int | None = None
    oldest_pending_age_s: float | None = None


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    kit_id: str | None = Field(None, max_length=64)
    software_version: str | None = Field(None, max_length=100)
    kit_time: str | None = Field(None, max_length=40, description="ISO 8601")
    disk_free_mb: float | None = None
    cpu_temp_c: float | None = None
    throttled: int | None = None
    backlog: Backlog | None = None
    last_shot_at: str | None = Field(None, max_length=40)
    clock_offset_s: float | None = None
    camera_failures_since_start: int | None = None


class HeartbeatReply(BaseModel):
    server_time: str
    received: bool


def _centre(request: Request) -> Centre:
    return request.app.state.centre


def kit_of(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Kit:
    """The authenticated kit (401 otherwise; looked up at every request, so a revoked token fails at once)."""
    if creds is None:
        raise ApiError(401, "no_token", "Authorization: Bearer <kit token> is required",
                       {"WWW-Authenticate": "Bearer"})
    kit = authenticate(_centre(request).engine, creds.credentials)
    if kit is None:
        raise ApiError(401, "bad_token", "unknown or revoked kit token", {"WWW-Authenticate": "Bearer"})
    return kit


def tus_resumable(tus_resumable: Annotated[str | None, Header()] = None) -> None:
    if tus_resumable != TUS_VERSION:
        raise ApiError(412, "tus_version", f"Tus-Resumable: {TUS_VERSION} is required",
                       {"Tus-Version": TUS_VERSION})


KitDep = Annotated[Kit, Depends(kit_of)]
ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 412, 413, 415,
                                                                            460)}
router = APIRouter(prefix=BASE)


def _tus_headers(centre: Centre) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION,
            "Tus-Extension": "creation,creation-with-upload,checksum,termination",
            "Tus-Checksum-Algorithm": "sha256,sha1",
            "Tus-Max-Size": str(centre.config.max_upload_bytes)}


@router.options("/uploads", status_code=204, responses={204: {"description": "tus capabilities"}})
def upload_options(request: Request) -> Response:
    """tus discovery (no token needed: it tells nothing but the protocol)."""
    return Response(status_code=204, headers=_tus_headers(_centre(request)))


def _int_header(name: str, value: str | None, required: bool = True) -> int | None:
    if value is None:
        if required:
            raise ApiError(400, "missing_header", f"{name} is required")
        return None
    v = value.strip()
    if not v.isdigit() or not v.isascii() or int(v) > MAX_INT:
        raise ApiError(400, "bad_header", f"{name}: a non-negative integer")
    return int(v)


CREATE_BODY = {"requestBody": {"required": False, "content": {"application/offset+octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}


@router.post("/uploads", status_code=201, dependencies=[Depends(tus_resumable)], responses=ERRORS,
             openapi_extra=CREATE_BODY)
async def upload_create(request: Request, kit: KitDep,
                        upload_length: Annotated[str | None, Header()] = None,
                        upload_metadata: Annotated[str | None, Header()] = None,
                        upload_defer_length: Annotated[str | None, Header()] = None,
                        upload_checksum: Annotated[str | None, Header()] = None,
                        content_type: Annotated[str | None, Header()] = None,
                        content_length: Annotated[str | None, Header()] = None) -> Response:
    """tus creation: a new upload of one bundle's sealed bytes, or "already have it" (201 + confirmation).

    creation-with-upload: with ``Content-Type: application/offset+octet-stream`` the body is the upload's first
    bytes; when it is all of them the answer is the confirmation itself (one request, one transaction)."""
    centre = _centre(request)
    if upload_defer_length is not None:
        raise ApiError(400, "defer_length_unsupported", "Upload-Defer-Length is not supported: send Upload-Length")
    length = _int_header("Upload-Length", upload_length) or 0
    declared = _int_header("Content-Length", content_length, required=False)
    with_body = (content_type or "").split(";")[0].strip().lower() == "application/offset+octet-stream"
    if not with_body:
        if declared:
            raise ApiError(415, "bad_content_type", "a creation body needs Content-Type:"
                           " application/offset+octet-stream (creation-with-upload)")
        created = await run_in_threadpool(uploads.create, centre.engine, kit, length, upload_metadata,
                                          centre.config.max_upload_bytes)
        offset, stored = 0, created.existing
    else:
        checksum = uploads.parse_checksum(upload_checksum)
        uploads.check_length(length, centre.config.max_upload_bytes)
        if declared is not None and declared > length:
            raise ApiError(413, "past_upload_length", f"{declared} bytes go past Upload-Length {length}")
        if declared == length:
            # every byte, straight into the object's writer as it arrives, hashed on the way; a directory store
            # holds no body in memory, a store that takes whole objects does, so those are bounded
            async with contextlib.nullcontext() if centre.storage.streams else _bodies():
                created, state = await _create_streamed(centre, request, kit, length, upload_metadata, checksum)
        else:
            async with _bodies():
                # (cut short, it is dropped: the kit never learnt this upload's URL, it will create another)
                body = await _read_body(request, length, checksum, keep_partial=False)
                created, state = await run_in_threadpool(uploads.create_with_body, centre.engine, centre.storage,
                                                         kit, length, upload_metadata,
                                                         centre.config.max_upload_bytes, body, checksum)
                del body
        offset, stored = state.offset, state.stored
    if stored is not None and stored.status == "received" and centre.opener is not None:
        centre.opener.poke()
    headers = {"Location": f"{BASE}/uploads/{created.upload_id}", "Tus-Resumable": TUS_VERSION,
               "Upload-Offset": str(created.length if stored is not None else offset)}
    if stored is not None:
        headers.update(stored.headers())
    return Response(status_code=201, headers=headers)


async def _create_streamed(centre: Centre, request: Request, kit: Kit, length: int, metadata: str | None,
                           checksum: tuple[str, bytes] | None) -> tuple[uploads.Created, uploads.State]:
    """creation-with-upload of all ``length`` bytes, as the bare sink of the benchmarks does it: each piece goes
    to the object's writer (a temporary file for the directory store) and the hashes as it arrives, so no body
    is held in memory and nothing is read twice; then the SHA-256 check, the object and one transaction."""
    meta, header = uploads.prepare(kit, length, metadata, centre.config.max_upload_bytes)
    writer = centre.storage.writer(sealed_key(kit.id, header.capture_id, header.sealed_sha256))
    sha = hashlib.sha256()
    other = uploads.CHECKSUMS[checksum[0]]() if checksum and checksum[0] != "sha256" else None
    size = 0
    try:
        async for piece in request.stream():
            size += len(piece)
            if size > length:
                raise ApiError(413, "past_upload_length", f"the body goes past Upload-Length {length}")
            sha.update(piece)
            if other is not None:
                other.update(piece)
            writer.write(piece)
        if size < length:
            raise ApiError(400, "body_incomplete", f"{size} of the {length} bytes Content-Length promised")
        if checksum is not None and (other.digest() if other else sha.digest()) != checksum[1]:
            raise ApiError(460, "checksum_mismatch", f"the body does not match its Upload-Checksum ({checksum[0]}):"
                           " nothing of it kept")
    except ClientDisconnect:
        writer.abort()
        raise ApiError(400, "body_incomplete", "the connection closed inside the body: nothing of it kept") from None
    except BaseException:
        writer.abort()
        raise
    return await run_in_threadpool(uploads.receive_streamed, centre.engine, kit, meta, header, writer, size,
                                   sha.hexdigest())


async def _read_body(request: Request, room: int, checksum: tuple[str, bytes] | None, keep_partial: bool = True
                     ) -> bytes:
    """The request body, refused (413) as soon as it goes past ``room`` bytes. A body cut by the client is kept
    as far as it came (``keep_partial``), unless it is checksummed (a partial body cannot be checked)."""
    pieces: list[bytes] = []  # joined once at the end: growing one buffer would copy it again and again
    size = 0
    try:
        async for piece in request.stream():
            pieces.append(piece)
            size += len(piece)
            if size > room:
                raise ApiError(413, "past_upload_length", f"the body goes past Upload-Length ({room} bytes left)")
    except ClientDisconnect:
        if checksum is not None or not keep_partial:
            raise ApiError(400, "body_incomplete", "the connection closed inside the body: nothing of it kept")\
                from None
    return b"".join(pieces)


def _state_headers(state: uploads.State) -> dict[str, str]:
    h = {"Upload-Offset": str(state.offset), "Upload-Length": str(state.length), "Cache-Control": "no-store",
         "Tus-Resumable": TUS_VERSION}
    if state.stored is not None:
        h.update(state.stored.headers())
    return h


@router.head("/uploads/{upload_id}", dependencies=[Depends(tus_resumable)], responses=ERRORS)
def upload_head(request: Request, kit: KitDep, upload_id: str) -> Response:
    """The upload's offset (resume from there); a complete upload also carries the confirmation headers."""
    state = uploads.head(_centre(request).engine, kit, upload_id)
    return Response(status_code=200, headers=_state_headers(state))


PATCH_BODY = {"requestBody": {"required": True, "content": {"application/offset+octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}


_BODY_SLOTS = 4  # PATCH bodies held in memory at once per process (each up to the kit's chunk, 8 MiB by default)
_slots: dict[int, asyncio.Semaphore] = {}


def _bodies() -> asyncio.Semaphore:
    """The PATCH-body semaphore of the running event loop (one per loop: tests start several servers)."""
    loop = id(asyncio.get_running_loop())
    if loop not in _slots:
        _slots[loop] = asyncio.Semaphore(_BODY_SLOTS)
    return _slots[loop]


@router.patch("/uploads/{upload_id}", status_code=204, dependencies=[Depends(tus_resumable)],
              responses=ERRORS, openapi_extra=PATCH_BODY)
async def upload_patch(request: Request, kit: KitDep, upload_id: str,
                       upload_offset: Annotated[str | None, Header()] = None,
                       upload_checksum: Annotated[str | None, Header()] = None,
                       content_type: Annotated[str | None, Header()] = None,
                       content_length: Annotated[str | None, Header()] = None) -> Response:
    """Bytes at ``Upload-Offset``; the last byte is answered only once the capture is verified and durable."""
    centre = _centre(request)
    if (content_type or "").split(";")[0].strip().lower() != "application/offset+octet-stream":
        raise ApiError(415, "bad_content_type", "Content-Type: application/offset+octet-stream")
    offset = _int_header("Upload-Offset", upload_offset)
    checksum = uploads.parse_checksum(upload_checksum)
    row = await run_in_threadpool(uploads.upload_row, centre.engine, kit, upload_id)
    room = max(row.length - (offset or 0), 0)
    declared = _int_header("Content-Length", content_length, required=False)
    if declared is not None and declared > room:
        raise ApiError(413, "past_upload_length", f"{declared} bytes at {offset} go past Upload-Length {row.length}")
    async with _bodies():  # a bounded number of bodies in memory; the other kits wait (TCP back-pressure)
        body = await _read_body(request, room, checksum)
        state = await run_in_threadpool(uploads.append, centre.engine, centre.storage, kit, row, offset or 0, body,
                                        checksum)
        del body
    if state.stored is not None and state.stored.status == "received" and centre.opener is not None:
        centre.opener.poke()
    headers = {"Upload-Offset": str(state.offset), "Tus-Resumable": TUS_VERSION}
    if state.stored is not None:
        headers.update(state.stored.headers())
    return Response(status_code=204, headers=headers)


@router.delete("/uploads/{upload_id}", status_code=204, dependencies=[Depends(tus_resumable)], responses=ERRORS)
def upload_delete(request: Request, kit: KitDep, upload_id: str) -> Response:
    """tus termination: an incomplete upload of this kit, with its chunks."""
    centre = _centre(request)
    uploads.terminate(centre.engine, centre.storage, kit, upload_id)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


@router.get("/captures/{capture_id}", response_model=CaptureState, responses=ERRORS)
def capture_state(request: Request, kit: KitDep, capture_id: str) -> CaptureState:
    """What the centre holds for one of this kit's capture ids (asked before re-uploading after a crash)."""
    uploads.check_capture_id(capture_id)
    with _centre(request).engine.connect() as conn:
        stored = held(conn, capture_id)
    if stored is None or not capture_id.startswith(f"{kit.name}-"):
        raise ApiError(404, "no_such_capture", f"the centre holds no capture {capture_id} of kit {kit.name}")
    return CaptureState(**stored.json())


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or f'"{etag}"' in tags


@router.get("/roster", responses={**ERRORS, 200: {"description": "capturekit.roster/2 (docs/roster-format.md)",
                                                  "content": {"application/json": {}}},
                                  304: {"description": "not modified"}})
def roster(request: Request, kit: KitDep, if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """The protected roster of the schools (and their sites) this kit is assigned to; ETag / If-None-Match."""
    with _centre(request).engine.connect() as conn:
        etag, family = rosters.roster_etag(conn, kit)
        headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache"}
        if _etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        doc = rosters.kit_roster(conn, kit, family, etag)
    return JSONResponse(doc, headers=headers)


@router.get("/keys", response_model=KeysBody, responses=ERRORS)
def keys(request: Request, kit: KitDep) -> KeysBody:
    """The centre's sealing public keys (new bundles are sealed to the first) and the make-up QR keys."""
    k = _centre(request).keys
    return KeysBody(sealing_public_keys=k.sealing_lines, makeup_public_keys=k.makeup_public_keys)


@router.post("/heartbeat", response_model=HeartbeatReply, responses=ERRORS)
def heartbeat(request: Request, kit: KitDep, beat: Heartbeat) -> HeartbeatReply:
    """A kit's health; the answer's ``server_time`` lets the kit estimate its clock offset."""
    if beat.kit_id is not None and beat.kit_id != kit.name:
        raise ApiError(403, "not_your_kit", f"kit {kit.name} cannot report for {beat.kit_id[:64]!r}")
    heartbeats.record(_centre(request).engine, kit, beat.model_dump(mode="json"))
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    return HeartbeatReply(server_time=now, received=True)


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class KitApiMiddleware:
    """``Tus-Resumable`` on every upload response; request bodies other than uploads capped at MAX_JSON_BODY."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        is_upload = scope["path"].startswith(f"{BASE}/uploads")

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start" and is_upload:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"tus-resumable"]
                message = {**message, "headers": [*headers, (b"tus-resumable", TUS_VERSION.encode())]}
            await send(message)

        bulk = (scope["method"] == "PATCH" and is_upload) or (scope["method"] == "POST"
                                                              and scope["path"] == f"{BASE}/uploads")
        if not bulk:  # (upload bodies are capped by their route, at Upload-Length)
            receive = capped(receive, MAX_JSON_BODY, lambda: ApiError(
                413, "body_too_large", f"request bodies are at most {MAX_JSON_BODY} bytes"))
        await self.app(scope, receive, tagged)


def create_app(centre: Centre, lifespan: Any = None) -> FastAPI:
    """The centre's ASGI app: the kit API, and the web pages (``centre.web``) mounted next to it."""
    from . import __version__

    app = FastAPI(title="capturekit centre — kit API", version=__version__, openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="What a kit's sync daemon says to the centre: docs/kit-api.md.")
    app.state.centre = centre

    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail, exc.headers)

    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, "bad_request", f"{where}: {first.get('msg', 'invalid')}"[:300])

    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        import logging

        logging.getLogger("capturekit.centre").error("unavailable: %s", str(exc).splitlines()[0][:300])
        return _error(503, "unavailable", "the centre's database or object store is not answering; try again",
                      {"Retry-After": "5"})

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(StorageError, unavailable)
    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(DBAPIError, unavailable)
    app.include_router(router)
    app.add_middleware(KitApiMiddleware)
    from .web import mount

    mount(app, centre)  # every path outside /api/ and /openapi.json: the web pages
    return app
