"""Everything a centre process works with, opened once: configuration, database, object store, keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from .config import CentreConfig
from .db import engine_for, migrate
from .errors import CentreError
from .keys import Keys, load_keys
from .opener import Opener
from .storage import Storage, StorageError, open_storage


@dataclass
class Centre:
    config: CentreConfig
    engine: Engine
    storage: Storage
    keys: Keys | None  # None for admin commands that need no key
    opener: Opener | None = None  # `centre serve` only: opens received bundles (centre/opener.py)

    def close(self) -> None:
        if self.opener is not None:
            self.opener.stop()
        self.engine.dispose()


def open_centre(cfg: CentreConfig, keys: bool = False, run_migrations: bool = True) -> Centre:
    """Open the database (migrated to the newest schema), the object store and, if asked, the keys."""
    loaded = load_keys(cfg) if keys else None
    try:
        storage = open_storage(cfg.objects_url, cfg.s3_endpoint_url, cfg.s3_region)
        storage.check()
    except (ValueError, StorageError) as exc:
        raise CentreError(str(exc)) from None
    engine = engine_for(cfg.db_url)
    if run_migrations:
        try:
            migrate(engine)
        except Exception as exc:  # connection refused, authentication, a foreign database: one line says which
            engine.dispose()
            raise CentreError(f"database {engine.url.render_as_string(hide_password=True)}: "
                              f"{str(exc).splitlines()[0]}") from None
    return Centre(cfg, engine, storage, loaded)
