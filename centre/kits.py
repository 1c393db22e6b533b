"""Kits and their tokens: ``add-kit`` prints a token once, the centre keeps only its SHA-256.

A token is 256 random bits (``secrets.token_urlsafe(32)``), so a plain SHA-256 is enough to store it: there is
nothing to enumerate. Every request looks the hash up, so a revoked kit is refused by every centre process
at its next request.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, update

from .db import kit_schools, kits, schools, utcnow
from .errors import CentreError

KIT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Kit:
    id: int
    name: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_kit(engine: Engine, name: str) -> str:
    """Register kit ``name`` (its ``kit_id``); return its token (shown once, never stored)."""
    if not KIT_NAME.match(name):
        raise CentreError(f"kit name {name!r}: letters, digits, '-' and '_' only (it is the kit_id in kit.toml)")
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        if conn.execute(select(kits.c.id).where(kits.c.name == name)).first():
            raise CentreError(f"kit {name} already exists (revoke-kit it and add it under a new name, or use"
                              " rotate-token)")
        conn.execute(kits.insert().values(name=name, token_hash=hash_token(token), created_at=utcnow()))
    return token


def rotate_token(engine: Engine, name: str) -> str:
    """A new token for ``name`` (the old one stops working at once); un-revokes the kit."""
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        done = conn.execute(update(kits).where(kits.c.name == name)
                            .values(token_hash=hash_token(token), revoked_at=None)).rowcount
    if not done:
        raise CentreError(f"no kit named {name}")
    return token


def revoke_kit(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        done = conn.execute(update(kits).where(kits.c.name == name, kits.c.revoked_at.is_(None))
                            .values(revoked_at=utcnow())).rowcount
        if not done and not conn.execute(select(kits.c.id).where(kits.c.name == name)).first():
            raise CentreError(f"no kit named {name}")


def authenticate(engine: Engine, token: str) -> Kit | None:
    """The kit holding ``token``, or None (unknown or revoked)."""
    if not token or len(token) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(kits.c.id, kits.c.name, kits.c.revoked_at)
                           .where(kits.c.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return Kit(row.id, row.name)


def kit_by_name(engine: Engine, name: str) -> Kit:
    with engine.connect() as conn:
        row = conn.execute(select(kits.c.id, kits.c.name).where(kits.c.name == name)).first()
    if row is None:
        raise CentreError(f"no kit named {name} (capturekit centre add-kit {name})")
    return Kit(row.id, row.name)


def list_kits(engine: Engine) -> list[dict[str, Any]]:
    """Every kit with its state, last contact, assigned schools and the numbers of its latest heartbeat."""
    with engine.connect() as conn:
        rows = conn.execute(select(kits).order_by(kits.c.name)).all()
        assigned: dict[int, list[str]] = {}
        for kit_id, code in conn.execute(select(kit_schools.c.kit_id, schools.c.code)
                                         .join(schools, schools.c.id == kit_schools.c.school_id)
                                         .order_by(schools.c.code)):
            assigned.setdefault(kit_id, []).append(code)
    out = []
    for r in rows:
        hb = json.loads(r.last_heartbeat) if r.last_heartbeat else {}
        out.append({"name": r.name, "state": "revoked" if r.revoked_at else "active", "created_at": r.created_at,
                    "last_seen_at": r.last_seen_at, "schools": assigned.get(r.id, []),
                    "software_version": hb.get("software_version"),
                    "backlog": (hb.get("backlog") or {}).get("bundles"), "disk_free_mb": hb.get("disk_free_mb")})
    return out
