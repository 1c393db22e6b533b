"""Kit heartbeats: the history in ``heartbeats``, the latest in ``kits.last_heartbeat`` (the live board's row)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Engine, update

from .db import heartbeats, kits, utcnow
from .kits import Kit


def _iso(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return value[:40]


def record(engine: Engine, kit: Kit, beat: dict[str, Any]) -> None:
    payload = json.dumps(beat, ensure_ascii=True, sort_keys=True)
    offset = beat.get("clock_offset_s")
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(heartbeats.insert().values(kit_id=kit.id, received_at=now, kit_time=_iso(beat.get("kit_time")),
                                                clock_offset_s=None if offset is None else repr(float(offset)),
                                                payload=payload))
        conn.execute(update(kits).where(kits.c.id == kit.id).values(last_seen_at=now, last_heartbeat=payload))
