"""The one interface to the centre's objects: sealed bundles, photos, derivatives, and tus chunks in flight.

Two backends behind :class:`Storage`, chosen by ``storage_url``:

- ``file:///DIR`` (the embedded default, ``<data_dir>/objects``): one file per object, written to a temporary
  name, fsynced, renamed into place, its directory fsynced — an object is wholly there or absent;
- ``s3://bucket/prefix``: any S3-compatible store through boto3 (MinIO, Ceph RGW, a cloud bucket; the tests
  run moto's server). A PUT that returned is durable by the store's own contract; every PUT carries its
  Content-MD5 so the store refuses bytes damaged on the way.

Keys are ``/``-separated names of ``[A-Za-z0-9._-]`` parts (no part starting with a dot): the callers build
them from validated ids only, and :func:`check_key` refuses anything else before it can name a path.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from appliance.datadir import fsync_dir

_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


class StorageError(RuntimeError):
    """The object store failed (not the client's fault: the request is answered 503, the kit retries)."""


class ObjectMissing(KeyError):
    """No object under that key."""


def check_key(key: str) -> str:
    parts = key.split("/")
    if not parts or not all(_PART.match(p) for p in parts) or len(key) > 400:
        raise ValueError(f"not an object key: {key!r}")
    return key


class Writer(Protocol):
    """One object written piece by piece as it arrives (a request body): durable at :meth:`commit`, never
    visible before; :meth:`abort` leaves nothing."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Storage(Protocol):
    # whether writer() keeps what it is given on disk as it goes (else in memory, until commit)
    streams: bool

    def writer(self, key: str) -> Writer:
        """A :class:`Writer` for ``key``."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, durably when this returns (replaces an object of the same key)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectMissing if there is none."""

    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""

    def exists(self, key: str) -> bool: ...

    def check(self) -> None:
        """Raise StorageError with a clear message if the store cannot be used (called at start)."""

    def describe(self) -> str: ...


class _BufferWriter:
    """Pieces kept in memory, one ``put`` at commit (a store with no cheaper way to stream)."""

    def __init__(self, storage: Storage, key: str) -> None:
        self.storage, self.key, self.pieces = storage, key, []

    def write(self, data: bytes) -> None:
        self.pieces.append(data)

    def commit(self) -> None:
        data = b"".join(self.pieces)
        self.pieces = []
        self.storage.put(self.key, data)

    def abort(self) -> None:
        self.pieces = []


class _FileWriter:
    """Straight into a temporary file next to the object; fsynced and renamed into place at commit."""

    def __init__(self, storage: DirectoryStorage, key: str) -> None:
        self.storage, self.key = storage, key
        self.path = storage._path(key)
        self.tmp = self.path.with_name(f".tmp-{secrets.token_hex(8)}-{self.path.name}")
        try:
            storage._makedirs(self.path.parent)
            # buffered: its write() writes every byte or raises (a raw file's may write fewer, say on a full disk)
            self.fh = open(self.tmp, "xb")  # noqa: SIM115 - closed in commit() or abort()
        except OSError as exc:
            raise StorageError(f"object {key}: {exc.strerror or exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self.fh.write(data)
        except OSError as exc:
            self.abort()
            raise StorageError(f"object {self.key}: {exc.strerror or exc}") from exc

    def commit(self) -> None:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            self.abort()
            raise StorageError(f"object {self.key}: {exc.strerror or exc}") from exc

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


class DirectoryStorage:
    """Objects as files under ``root``."""

    streams = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _makedirs(self, directory: Path) -> None:
        missing = []
        d = directory
        while not d.exists():
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            with contextlib.suppress(FileExistsError):
                m.mkdir()
            fsync_dir(m.parent)  # the new directory entry itself must survive a power cut

    def writer(self, key: str) -> Writer:
        return _FileWriter(self, key)

    def put(self, key: str, data: bytes) -> None:
        w = _FileWriter(self, key)
        w.write(data)
        w.commit()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as exc:
            raise StorageError(f"object {key}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"object {key}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"object directory {self.root}: {exc.strerror or exc}") from exc

    def describe(self) -> str:
        return f"directory {self.root}"


class S3Storage:
    """Objects in an S3-compatible bucket under ``prefix``; credentials from the environment (boto3's chain)."""

    streams = False  # its writer buffers the object, one put at commit

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str = "", region: str = "") -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                   config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                                 connect_timeout=10, read_timeout=60,
                                                 s3={"addressing_style": "path"}))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, key: str, exc: Exception) -> StorageError:
        return StorageError(f"object {key} in s3://{self.bucket}: {exc}")

    def writer(self, key: str) -> Writer:
        return _BufferWriter(self, key)

    def put(self, key: str, data: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # what S3 checks a PUT with
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentMD5=md5)
        except Exception as exc:  # botocore's ClientError, connection errors: all the store's fault
            raise self._error(key, exc) from exc

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissing(key) from None
            raise self._error(key, exc) from exc
        except Exception as exc:
            raise self._error(key, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._error(key, exc) from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._error(key, exc) from exc
        return True

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise StorageError(f"storage_url s3://{self.bucket}: bucket not reachable ({exc}); create it, check"
                               " s3_endpoint_url and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment")\
                from exc

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


def open_storage(url: str, endpoint_url: str = "", region: str = "") -> Storage:
    """The backend for ``url``: ``file:///DIR`` or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return DirectoryStorage(Path(parsed.path))
    if parsed.scheme == "s3":
        return S3Storage(parsed.netloc, parsed.path, endpoint_url, region)
    raise ValueError(f"storage_url: unsupported scheme in {url!r} (file:// or s3://)")
