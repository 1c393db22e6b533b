"""The centre's database: one SQLAlchemy Core schema for SQLite (embedded) and PostgreSQL (at scale).

The tables, in the order an upload meets them: ``kits`` (token hash, revoked) → ``uploads`` and
``upload_chunks`` (tus state: which chunk objects hold which bytes, shared by every centre process) →
``bundles`` (every sealed bundle received and verified: ``received``, then opened: ``stored`` or ``refused``
with its reason) →
``captures`` (what an opened bundle's record says) → ``conflicts`` (same capture id, other bytes: flagged).
Rosters: ``schools`` (``parent_id``: a joint-programme site reports through its main school, §六),
``roster_versions``, ``students`` (clear data: the centre may hold it) and ``student_keys`` (each key of a
student in clear and in the protected form of the school's roster key). ``kit_schools`` assigns kits to
schools; ``heartbeats`` keeps the history, ``kits.last_heartbeat`` the latest.

The web pages (``centre/web``) add: ``users`` (staff and school contacts), ``web_sessions``, ``throttle`` (login
and form rate limits, shared by every process), ``access_log`` (who saw or exported which student's photo),
``shoot_rates`` + ``plan_slots`` (the shoot plan, §一), ``makeup_phases``, ``makeup_hours``, ``makeup_sessions`` and
``makeup_registrations`` (§四), ``errata`` (§五) and ``web_jobs`` (exports and roster loads in the background).
None of them has a foreign key to ``students``: a roster load replaces those rows, and what was filed about a
student keeps a copy of who it was (school, key, student number, name, class).

The schema changes only through migrations (``centre/migrations``, Alembic, run by :func:`migrate`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)

NAMING = {"ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}
metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    """Timestamps are stored as naive UTC (the same on SQLite and PostgreSQL)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime, nullable=nullable)


schools = Table(
    "schools", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("parent_id", Integer, ForeignKey("schools.id"), nullable=True, index=True),
    Column("roster_key", Text, nullable=True),  # RosterKey.to_dict() JSON; main schools only, sites share it
    _ts("created_at"),
)

roster_versions = Table(
    "roster_versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source_sha256", String(64), nullable=False),
    Column("source_name", String(300), nullable=False),
    Column("rows", Integer, nullable=False),
    _ts("loaded_at"),
    UniqueConstraint("school_id", "version"),
)

students = Table(
    "students", metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("roster_version_id", Integer, ForeignKey("roster_versions.id"), nullable=False),
    Column("line", Integer, nullable=False),  # in the roster file, for messages
    Column("student_no", String(64), nullable=False, default=""),
    Column("name", String(200), nullable=False, default=""),
    Column("class_name", String(200), nullable=False, default=""),
    Column("major", String(200), nullable=False, default=""),
    Column("photographed", Boolean, nullable=False, default=False),  # elsewhere, per the school's roster
    Index(None, "school_id", "class_name"),
)

student_keys = Table(
    "student_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("student_id", Integer, ForeignKey("students.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("key", String(200), nullable=False),
    Column("protected", String(64), nullable=False),
    UniqueConstraint("school_id", "kind", "key"),
    Index(None, "kind", "key"),
    Index(None, "kind", "protected"),
    Index(None, "student_id", "kind", "key"),  # index-only: a student's keys (missing list, tally)
)

kits = Table(
    "kits", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),  # the kit_id in its capture ids
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 hex of the token
    _ts("created_at"),
    _ts("revoked_at", nullable=True),
    _ts("last_seen_at", nullable=True),
    Column("last_heartbeat", Text, nullable=True),  # JSON of the latest heartbeat
)

kit_schools = Table(
    "kit_schools", metadata,
    Column("kit_id", Integer, ForeignKey("kits.id"), primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), primary_key=True),
    _ts("assigned_at"),
)

uploads = Table(
    "uploads", metadata,
    Column("id", String(32), primary_key=True),  # random hex: the tus upload URL
    Column("kit_id", Integer, ForeignKey("kits.id"), nullable=False),
    Column("capture_id", String(120), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("length", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False, default=0),
    Column("header", Text, nullable=False),  # the bundle's clear header, JSON
    Column("status", String(12), nullable=False, default="open"),  # open | complete
    _ts("created_at"),
    _ts("updated_at"),
    Index(None, "kit_id", "capture_id"),
    Index(None, "status", "updated_at"),
)

upload_chunks = Table(
    "upload_chunks", metadata,
    Column("upload_id", String(32), ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("length", BigInteger, nullable=False),
    Column("object_key", String(300), nullable=False),
)

bundles = Table(
    "bundles", metadata,
    Column("capture_id", String(120), primary_key=True),
    Column("kit_id", Integer, ForeignKey("kits.id"), nullable=False, index=True),
    Column("upload_id", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("object_key", String(300), nullable=False),
    Column("header", Text, nullable=False),
    Column("status", String(12), nullable=False),  # received (verified, not opened yet) | stored | refused
    Column("reason", String(64), nullable=True),  # BundleRefused.reason
    Column("detail", Text, nullable=True),
    _ts("received_at"),
    _ts("open_after", nullable=True),  # received: any process may open it from then on (a lease: centre/opener.py)
    Index(None, "status"),
)

captures = Table(
    "captures", metadata,
    Column("capture_id", String(120), ForeignKey("bundles.capture_id"), primary_key=True),
    Column("kit_id", Integer, ForeignKey("kits.id"), nullable=False),
    Column("kind", String(12), nullable=False),  # capture | reject
    Column("journal_id", String(120), nullable=False),
    Column("session_id", Integer, nullable=True),
    Column("session_school", String(64), nullable=False, default=""),  # the kit's config `school`
    Column("shot", Integer, nullable=False),
    Column("frame", Integer, nullable=False),
    Column("identity_kind", String(20), nullable=False),
    Column("identity_key", String(200), nullable=False),  # clear (resolved from the roster if it came protected)
    Column("identity_resolved", Boolean, nullable=False),  # False: arrived protected and no roster key matched
    Column("identity_source", String(20), nullable=False, default=""),
    Column("identity_reader", String(100), nullable=False, default=""),
    Column("roster_check", String(30), nullable=False, default=""),
    Column("verdict", String(10), nullable=False, default=""),
    Column("reasons", Text, nullable=False, default="[]"),
    Column("accepted_by_operator", Boolean, nullable=False, default=False),
    Column("captured_at", String(40), nullable=False),  # ISO 8601 with the kit's offset, as recorded
    Column("captured_at_utc", DateTime, nullable=True),  # for ordering across offsets
    Column("stored_at", String(40), nullable=False, default=""),
    Column("supersedes", String(120), nullable=True, index=True),
    Column("sealed_sha256", String(64), nullable=False),
    Column("photo_sha256", String(64), nullable=False),
    Column("photo_bytes", BigInteger, nullable=False),
    Column("photo_key", String(300), nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("derivative_sha256", String(64), nullable=True),
    Column("derivative_key", String(300), nullable=True),
    Column("record", Text, nullable=False),  # the whole sealed record, JSON
    _ts("received_at"),
    Index(None, "identity_kind", "identity_key"),
    Index(None, "kit_id", "received_at"),
    Index(None, "identity_kind", "identity_key", "kind"),  # index-only: "has this student a stored capture"
    Index(None, "received_at"),  # the board's tally reads what arrived since its last pass (centre/tally.py)
)

conflicts = Table(
    "conflicts", metadata,
    Column("id", Integer, primary_key=True),
    Column("capture_id", String(120), nullable=False, index=True),
    Column("kit_id", Integer, ForeignKey("kits.id"), nullable=False),
    Column("held_sha256", String(64), nullable=False),
    Column("offered_sha256", String(64), nullable=False),
    Column("header", Text, nullable=True),
    _ts("flagged_at"),
    _ts("resolved_at", nullable=True),
)

heartbeats = Table(
    "heartbeats", metadata,
    Column("id", Integer, primary_key=True),
    Column("kit_id", Integer, ForeignKey("kits.id"), nullable=False),
    _ts("received_at"),
    Column("kit_time", String(40), nullable=True),
    Column("clock_offset_s", String(30), nullable=True),
    Column("payload", Text, nullable=False),
    Index(None, "kit_id", "received_at"),
)


# ---- the web pages (issue 15)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),  # argon2-cffi's encoded hash
    Column("display_name", String(200), nullable=False, default=""),
    Column("kind", String(10), nullable=False),  # staff | school
    Column("roles", String(100), nullable=False, default=""),  # staff: viewer,operator,exporter (any of them)
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=True, unique=True),  # one contact per school
    Column("active", Boolean, nullable=False, default=True),
    _ts("created_at"),
    _ts("last_login_at", nullable=True),
)

web_sessions = Table(
    "web_sessions", metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 hex of the cookie's token
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
    Index(None, "expires_at"),
)

throttle = Table(
    "throttle", metadata,
    Column("id", Integer, primary_key=True),
    Column("bucket", String(120), nullable=False),  # e.g. login-user:<name>, makeup-ip:<address>
    _ts("at"),
    Index(None, "bucket", "at"),
    Index(None, "at"),
)

access_log = Table(
    "access_log", metadata,
    Column("id", Integer, primary_key=True),
    _ts("at"),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("action", String(30), nullable=False),  # view_photo | view_thumb | export | export_download
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=True),
    Column("student_id", Integer, nullable=True),  # at the time (roster loads replace students)
    Column("student", String(300), nullable=False, default=""),  # who, as the roster said then
    Column("capture_id", String(120), nullable=True),
    Column("detail", String(300), nullable=False, default=""),
    Index(None, "at"),
    Index(None, "user_id", "at"),
    Index(None, "school_id", "at"),
)

shoot_rates = Table(
    "shoot_rates", metadata,
    Column("code", String(30), primary_key=True),  # full_time | correspondence | …
    Column("name_zh", String(100), nullable=False),
    Column("name_en", String(100), nullable=False),
    Column("per_hour_min", Integer, nullable=False),
    Column("per_hour_max", Integer, nullable=False),
)

plan_slots = Table(
    "plan_slots", metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("group_kind", String(10), nullable=False),  # class | major
    Column("group_name", String(200), nullable=False),
    Column("starts_at", DateTime, nullable=False),  # wall-clock time in the centre's `timezone`
    Column("minutes", Integer, nullable=False, default=60),
    Column("kit_id", Integer, ForeignKey("kits.id"), nullable=True),
    Column("rate_code", String(30), ForeignKey("shoot_rates.code"), nullable=False),
    Column("place", String(200), nullable=False, default=""),
    Column("created_by", Integer, ForeignKey("users.id"), nullable=True),
    _ts("created_at"),
    Index(None, "starts_at"),
    Index(None, "school_id", "starts_at"),
    Index(None, "kit_id", "starts_at"),
)

makeup_phases = Table(
    "makeup_phases", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    _ts("created_at"),
)

makeup_hours = Table(
    "makeup_hours", metadata,
    Column("id", Integer, primary_key=True),
    Column("starts", String(5), nullable=False),  # "08:30"
    Column("ends", String(5), nullable=False),  # "11:30"
)

makeup_sessions = Table(
    "makeup_sessions", metadata,
    Column("id", Integer, primary_key=True),
    Column("phase_id", Integer, ForeignKey("makeup_phases.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("day", Date, nullable=False),
    Column("starts", String(5), nullable=False),
    Column("ends", String(5), nullable=False),
    Column("place", String(200), nullable=False, default=""),
    Column("capacity", Integer, nullable=False, default=100),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=True),  # None: open to every school
    _ts("created_at"),
    Index(None, "day"),
)

makeup_registrations = Table(
    "makeup_registrations", metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("makeup_sessions.id"), nullable=False, index=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("identity_kind", String(20), nullable=False),
    Column("identity_key", String(200), nullable=False),
    Column("student", String(300), nullable=False, default=""),  # class, student number, name at registration
    Column("code_id", String(12), nullable=False, unique=True),  # the CKM1 code id (hex), for revocation
    _ts("issued_at"),
    _ts("expires_at"),
    _ts("replaced_at", nullable=True),  # a later registration of the same student
    Index(None, "school_id", "identity_kind", "identity_key"),
)

errata = Table(
    "errata", metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("filed_by", Integer, ForeignKey("users.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # data | photo_wrong | photo_missing | photo_damaged
    Column("student_ref", String(200), nullable=False, default=""),  # student number or key, as filed
    Column("student", String(300), nullable=False, default=""),  # class and name, as the roster said
    Column("capture_id", String(120), nullable=True),
    Column("field", String(40), nullable=False, default=""),
    Column("wrong_value", Text, nullable=False, default=""),
    Column("right_value", Text, nullable=False, default=""),
    Column("note", Text, nullable=False, default=""),
    Column("status", String(20), nullable=False, default="new"),
    Column("staff_note", Text, nullable=False, default=""),
    Column("handled_by", Integer, ForeignKey("users.id"), nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    Index(None, "status", "created_at"),
    Index(None, "school_id", "created_at"),
)

# the live board's tally (centre/tally.py): per student the number of stored captures, per school the sums
student_shots = Table(
    "student_shots", metadata,
    Column("student_id", Integer, primary_key=True),  # students.id (no foreign key: roster loads replace them)
    Column("school_id", Integer, nullable=False),
    Column("captures", Integer, nullable=False),
    Index(None, "school_id", "captures"),
)

tally_schools = Table(
    "tally_schools", metadata,
    Column("school_id", Integer, primary_key=True),
    Column("roster_version_id", Integer, nullable=True),  # the roster the tally was built from
    Column("students", Integer, nullable=False, default=0),
    Column("shot", Integer, nullable=False, default=0),
    Column("retakes", Integer, nullable=False, default=0),
    _ts("rebuilt_at"),
)

tally_state = Table(
    "tally_state", metadata,
    Column("id", Integer, primary_key=True),  # one row
    _ts("counted_until", nullable=True),  # captures received before this (less the overlap) are counted
)

web_jobs = Table(
    "web_jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(10), nullable=False),  # export | roster
    Column("school_id", Integer, ForeignKey("schools.id"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("status", String(10), nullable=False, default="queued"),  # queued | running | done | failed
    Column("total", Integer, nullable=False, default=0),
    Column("done", Integer, nullable=False, default=0),
    Column("result", Text, nullable=False, default="{}"),  # JSON: the export's report, the roster's counts
    Column("error", Text, nullable=False, default=""),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("finished_at", nullable=True),
    Index(None, "kind", "created_at"),
    Index(None, "school_id", "created_at"),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a confirmed capture survives a power cut
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def engine_for(url: str) -> Engine:
    """An engine for ``url``: SQLite with WAL and synchronous=FULL, or PostgreSQL through psycopg 3."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x636B6D67  # "ckmg": one process migrates at a time


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; concurrent centre processes wait for each other)."""
    from alembic import command

    cfg = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
    else:
        command.upgrade(cfg, "head")


def schema_version(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
