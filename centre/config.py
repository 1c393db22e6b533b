"""Centre configuration: one TOML file, validated at start-up with errors that name the bad key.

Path: ``--config``, else ``$CAPTUREKIT_CENTRE_CONFIG``, else ``/etc/capturekit/centre.toml``; with no file
at the default path the embedded defaults apply (SQLite and a photo directory in ``data_dir``). Command-line
options (``--data-dir``, ``--host``, ``--port``, ``--keys-dir``) override the file. Credentials never go in
the file: the database password in ``database_url`` may come from ``$CAPTUREKIT_CENTRE_DATABASE_URL``, and
S3 keys from the environment boto3 reads (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
``docs/centre.md`` lists every key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.config import ConfigError, build, read_toml
from appliance.protect import DEFAULT_MEMLIMIT, DEFAULT_OPSLIMIT

DEFAULT_PATH = Path("/etc/capturekit/centre.toml")
ENV_PATH = "CAPTUREKIT_CENTRE_CONFIG"
ENV_DATABASE_URL = "CAPTUREKIT_CENTRE_DATABASE_URL"


@dataclass(frozen=True)
class CentreConfig:
    data_dir: str = "/var/lib/capturekit-centre"
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    database_url: str = ""  # empty: SQLite file <data_dir>/centre.sqlite; "postgresql+psycopg://..." at scale
    storage_url: str = ""  # empty: directory <data_dir>/objects; "s3://bucket/prefix" at scale
    s3_endpoint_url: str = ""  # MinIO, Ceph, another S3-compatible store; empty: AWS
    s3_region: str = ""
    keys_dir: str = "/etc/capturekit/centre-keys"  # <key_id>.key files from `capturekit centre keygen`
    current_key: str = ""  # key id new bundles are sealed to (listed first to kits); empty: the newest key file
    makeup_public_keys: tuple[str, ...] = ()  # base64 Ed25519 keys kits verify make-up QR codes with
    max_upload_bytes: int = 64 * 2**20  # Tus-Max-Size: one sealed bundle (a 12 MP photo is ~5 MB)
    log_level: str = "INFO"
    open_lease_s: float = 30.0  # a received bundle being opened by one process; after this, another one may
    # the web pages (centre/web, docs/centre.md "Web pages")
    makeup_signing_key: str = ""  # Ed25519 seed file (python -m centre.makeup_qr keygen); empty: no make-up form
    secure_cookies: str = "auto"  # auto: Secure when the request came over https; always; never
    public_url: str = ""  # base URL on the schools' posters (https://centre.example.org); empty: the request's
    timezone: str = "Asia/Shanghai"  # the wall-clock times of shoot slots and make-up sessions
    session_hours: float = 12.0  # a staff or school login lasts this long
    max_form_bytes: int = 32 * 2**20  # a roster or errata upload through the web
    exports_dir: str = ""  # empty: <data_dir>/exports (the folders web exports write; shared storage at scale)
    new_school_argon2_opslimit: int = DEFAULT_OPSLIMIT  # roster key cost of schools added on the web page
    new_school_argon2_memlimit_kib: int = DEFAULT_MEMLIMIT // 1024

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def keys_path(self) -> Path:
        return Path(self.keys_dir)

    @property
    def exports_path(self) -> Path:
        return Path(self.exports_dir) if self.exports_dir else self.data_path / "exports"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'centre.sqlite'}"

    @property
    def objects_url(self) -> str:
        return self.storage_url or f"file://{self.data_path / 'objects'}"


def _zone_ok(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check(cfg: CentreConfig) -> None:
    rules = [
        (1 <= cfg.listen_port <= 65535, f"listen_port: must be 1..65535, got {cfg.listen_port}"),
        (cfg.max_upload_bytes >= 1024, f"max_upload_bytes: must be at least 1024, got {cfg.max_upload_bytes}"),
        (not cfg.database_url or cfg.database_url.startswith(("sqlite:", "postgresql")),
         "database_url: must be empty (SQLite in data_dir), sqlite:///FILE or postgresql+psycopg://..."),
        (not cfg.storage_url or cfg.storage_url.startswith(("s3://", "file://")),
         "storage_url: must be empty (a directory in data_dir), file:///DIR or s3://bucket/prefix"),
        (not cfg.storage_url.startswith("s3://") or len(cfg.storage_url) > len("s3://"),
         "storage_url: s3:// needs a bucket name"),
        (bool(cfg.data_dir), "data_dir: must not be empty"),
        (cfg.secure_cookies in ("auto", "always", "never"),
         f"secure_cookies: must be auto, always or never, got {cfg.secure_cookies!r}"),
        (_zone_ok(cfg.timezone), f"timezone: not a time zone name (Asia/Shanghai, UTC, …): {cfg.timezone!r}"),
        (1 <= cfg.open_lease_s <= 3600, f"open_lease_s: must be 1..3600 seconds, got {cfg.open_lease_s}"),
        (cfg.session_hours > 0, f"session_hours: must be positive, got {cfg.session_hours}"),
        (cfg.max_form_bytes >= 1024, f"max_form_bytes: must be at least 1024, got {cfg.max_form_bytes}"),
        (not cfg.public_url or cfg.public_url.startswith(("http://", "https://")),
         "public_url: must start with https:// (or http://)"),
        (cfg.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
         f"log_level: must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {cfg.log_level!r}"),
    ]
    broken = [message for ok, message in rules if not ok]
    if broken:
        raise ConfigError(broken[0] if len(broken) == 1 else f"{broken[0]} (and {len(broken) - 1} more problems)")


def load(path: str | os.PathLike[str] | None = None, **overrides: Any) -> CentreConfig:
    """Load and validate the centre configuration; ``overrides`` (None values ignored) win over the file."""
    file, data = read_toml(path or os.environ.get(ENV_PATH), DEFAULT_PATH)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = build(CentreConfig, data)
        if not cfg.database_url and os.environ.get(ENV_DATABASE_URL):
            cfg = replace(cfg, database_url=os.environ[ENV_DATABASE_URL])
        _check(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{file if file.exists() else 'defaults'}: {exc}") from None
    return cfg
