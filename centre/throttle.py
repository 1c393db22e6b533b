"""Rate limits shared by every centre process: events per bucket in a sliding window, in the database.

``hit(engine, bucket, limit, window)`` records one event and says whether the bucket is over its limit. Buckets
name what is limited (``login-user:<name>``, ``login-ip:<address>``, ``makeup-ip:<address>``, ``makeup-key:<hash>``).
Events older than a day are swept now and then.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import Engine, delete, func, select

from .db import throttle, utcnow

KEEP = dt.timedelta(days=1)


def count(engine: Engine, bucket: str, window: dt.timedelta) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(throttle)
                            .where(throttle.c.bucket == bucket[:120], throttle.c.at >= utcnow() - window)).scalar_one()


def over(engine: Engine, bucket: str, limit: int, window: dt.timedelta) -> bool:
    """True when ``bucket`` already had ``limit`` events in the window (nothing recorded)."""
    return count(engine, bucket, window) >= limit


def record(engine: Engine, *buckets: str) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(throttle.insert(), [{"bucket": b[:120], "at": now} for b in buckets])
        if secrets.randbelow(50) == 0:
            conn.execute(delete(throttle).where(throttle.c.at < now - KEEP))


def clear(engine: Engine, bucket: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(throttle).where(throttle.c.bucket == bucket[:120]))


def retry_after(engine: Engine, bucket: str, limit: int, window: dt.timedelta) -> int:
    """Seconds until the bucket is under its limit again (0 if it is)."""
    with engine.connect() as conn:
        times = [t for (t,) in conn.execute(select(throttle.c.at).where(
            throttle.c.bucket == bucket[:120], throttle.c.at >= utcnow() - window).order_by(throttle.c.at.desc())
            .limit(limit))]
    if len(times) < limit:
        return 0
    return max(1, int((times[-1] + window - utcnow()).total_seconds()) + 1)
