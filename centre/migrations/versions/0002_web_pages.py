"""the web pages: accounts, sessions, throttle, access log, shoot plan, make-up sessions, errata, jobs, tally

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Also seeds the data §一.2 and §四 give (rates per hour, the make-up hours); staff edit them on the pages.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RATES = [
    {"code": "full_time", "name_zh": "全日制", "name_en": "full-time", "per_hour_min": 100, "per_hour_max": 150},
    {
        "code": "correspondence",
        "name_zh": "函授/业余",
        "name_en": "correspondence",
        "per_hour_min": 80,
        "per_hour_max": 120,
    },
]
HOURS = [{"starts": "08:30", "ends": "11:30"}, {"starts": "14:30", "ends": "17:30"}]


def upgrade() -> None:
    op.create_table(
        "makeup_hours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("starts", sa.String(length=5), nullable=False),
        sa.Column("ends", sa.String(length=5), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_makeup_hours")),
    )
    op.create_table(
        "makeup_phases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_makeup_phases")),
    )
    op.create_table(
        "shoot_rates",
        sa.Column("code", sa.String(length=30), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("per_hour_min", sa.Integer(), nullable=False),
        sa.Column("per_hour_max", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_shoot_rates")),
    )
    op.create_table(
        "student_shots",
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("captures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("student_id", name=op.f("pk_student_shots")),
    )
    with op.batch_alter_table("student_shots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_student_shots_school_id_captures"), ["school_id", "captures"], unique=False
        )

    op.create_table(
        "tally_schools",
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("roster_version_id", sa.Integer(), nullable=True),
        sa.Column("students", sa.Integer(), nullable=False),
        sa.Column("shot", sa.Integer(), nullable=False),
        sa.Column("retakes", sa.Integer(), nullable=False),
        sa.Column("rebuilt_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("school_id", name=op.f("pk_tally_schools")),
    )
    op.create_table(
        "tally_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("counted_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tally_state")),
    )
    op.create_table(
        "throttle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=120), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_throttle")),
    )
    with op.batch_alter_table("throttle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_throttle_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_throttle_bucket_at"), ["bucket", "at"], unique=False)

    op.create_table(
        "makeup_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("starts", sa.String(length=5), nullable=False),
        sa.Column("ends", sa.String(length=5), nullable=False),
        sa.Column("place", sa.String(length=200), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["phase_id"],
            ["makeup_phases.id"],
            name=op.f("fk_makeup_sessions_phase_id_makeup_phases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_makeup_sessions_school_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_makeup_sessions")),
    )
    with op.batch_alter_table("makeup_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_makeup_sessions_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_makeup_sessions_phase_id"), ["phase_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("roles", sa.String(length=100), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_users_school_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("school_id", name=op.f("uq_users_school_id")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("student_id", sa.Integer(), nullable=True),
        sa.Column("student", sa.String(length=300), nullable=False),
        sa.Column("capture_id", sa.String(length=120), nullable=True),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_access_log_school_id_schools")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_access_log_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
    )
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_log_school_id_at"), ["school_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_log_user_id_at"), ["user_id", "at"], unique=False)

    op.create_table(
        "errata",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("filed_by", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("student_ref", sa.String(length=200), nullable=False),
        sa.Column("student", sa.String(length=300), nullable=False),
        sa.Column("capture_id", sa.String(length=120), nullable=True),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("wrong_value", sa.Text(), nullable=False),
        sa.Column("right_value", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("staff_note", sa.Text(), nullable=False),
        sa.Column("handled_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["filed_by"], ["users.id"], name=op.f("fk_errata_filed_by_users")),
        sa.ForeignKeyConstraint(["handled_by"], ["users.id"], name=op.f("fk_errata_handled_by_users")),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_errata_school_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_errata")),
    )
    with op.batch_alter_table("errata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_errata_school_id_created_at"), ["school_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_errata_status_created_at"), ["status", "created_at"], unique=False)

    op.create_table(
        "makeup_registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("identity_kind", sa.String(length=20), nullable=False),
        sa.Column("identity_key", sa.String(length=200), nullable=False),
        sa.Column("student", sa.String(length=300), nullable=False),
        sa.Column("code_id", sa.String(length=12), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_makeup_registrations_school_id_schools")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["makeup_sessions.id"], name=op.f("fk_makeup_registrations_session_id_makeup_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_makeup_registrations")),
        sa.UniqueConstraint("code_id", name=op.f("uq_makeup_registrations_code_id")),
    )
    with op.batch_alter_table("makeup_registrations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_makeup_registrations_school_id_identity_kind_identity_key"),
            ["school_id", "identity_kind", "identity_key"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_makeup_registrations_session_id"), ["session_id"], unique=False)

    op.create_table(
        "plan_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("group_kind", sa.String(length=10), nullable=False),
        sa.Column("group_name", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=True),
        sa.Column("rate_code", sa.String(length=30), nullable=False),
        sa.Column("place", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_plan_slots_created_by_users")),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"], name=op.f("fk_plan_slots_kit_id_kits")),
        sa.ForeignKeyConstraint(["rate_code"], ["shoot_rates.code"], name=op.f("fk_plan_slots_rate_code_shoot_rates")),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_plan_slots_school_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_slots")),
    )
    with op.batch_alter_table("plan_slots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_slots_kit_id_starts_at"), ["kit_id", "starts_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_plan_slots_school_id_starts_at"), ["school_id", "starts_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_plan_slots_starts_at"), ["starts_at"], unique=False)

    op.create_table(
        "web_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_web_jobs_school_id_schools")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_jobs_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_jobs")),
    )
    with op.batch_alter_table("web_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_jobs_kind_created_at"), ["kind", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_jobs_school_id_created_at"), ["school_id", "created_at"], unique=False)

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_captures_identity_kind_identity_key_kind"),
            ["identity_kind", "identity_key", "kind"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_captures_received_at"), ["received_at"], unique=False)

    with op.batch_alter_table("student_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_student_keys_student_id_kind_key"), ["student_id", "kind", "key"], unique=False
        )

    rates = sa.table(
        "shoot_rates",
        sa.column("code"),
        sa.column("name_zh"),
        sa.column("name_en"),
        sa.column("per_hour_min"),
        sa.column("per_hour_max"),
    )
    op.bulk_insert(rates, RATES)
    hours = sa.table("makeup_hours", sa.column("starts"), sa.column("ends"))
    op.bulk_insert(hours, HOURS)


def downgrade() -> None:
    with op.batch_alter_table("student_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_student_keys_student_id_kind_key"))

    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_captures_received_at"))
        batch_op.drop_index(batch_op.f("ix_captures_identity_kind_identity_key_kind"))

    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))
        batch_op.drop_index(batch_op.f("ix_web_sessions_expires_at"))

    op.drop_table("web_sessions")
    with op.batch_alter_table("web_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_jobs_school_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_web_jobs_kind_created_at"))

    op.drop_table("web_jobs")
    with op.batch_alter_table("plan_slots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_slots_starts_at"))
        batch_op.drop_index(batch_op.f("ix_plan_slots_school_id_starts_at"))
        batch_op.drop_index(batch_op.f("ix_plan_slots_kit_id_starts_at"))

    op.drop_table("plan_slots")
    with op.batch_alter_table("makeup_registrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_makeup_registrations_session_id"))
        batch_op.drop_index(batch_op.f("ix_makeup_registrations_school_id_identity_kind_identity_key"))

    op.drop_table("makeup_registrations")
    with op.batch_alter_table("errata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_errata_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_errata_school_id_created_at"))

    op.drop_table("errata")
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_log_user_id_at"))
        batch_op.drop_index(batch_op.f("ix_access_log_school_id_at"))
        batch_op.drop_index(batch_op.f("ix_access_log_at"))

    op.drop_table("access_log")
    op.drop_table("users")
    with op.batch_alter_table("makeup_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_makeup_sessions_phase_id"))
        batch_op.drop_index(batch_op.f("ix_makeup_sessions_day"))

    op.drop_table("makeup_sessions")
    with op.batch_alter_table("throttle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_throttle_bucket_at"))
        batch_op.drop_index(batch_op.f("ix_throttle_at"))

    op.drop_table("throttle")
    op.drop_table("tally_state")
    op.drop_table("tally_schools")
    with op.batch_alter_table("student_shots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_student_shots_school_id_captures"))

    op.drop_table("student_shots")
    op.drop_table("shoot_rates")
    op.drop_table("makeup_phases")
    op.drop_table("makeup_hours")
