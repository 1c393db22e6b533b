"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("last_heartbeat", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kits")),
        sa.UniqueConstraint("name", name=op.f("uq_kits_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_kits_token_hash")),
    )
    op.create_table(
        "schools",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("roster_key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["schools.id"], name=op.f("fk_schools_parent_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schools")),
        sa.UniqueConstraint("code", name=op.f("uq_schools_code")),
    )
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schools_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "bundles",
        sa.Column("capture_id", sa.String(length=120), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("upload_id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("header", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"], name=op.f("fk_bundles_kit_id_kits")),
        sa.PrimaryKeyConstraint("capture_id", name=op.f("pk_bundles")),
    )
    with op.batch_alter_table("bundles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bundles_kit_id"), ["kit_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bundles_status"), ["status"], unique=False)

    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sa.String(length=120), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("held_sha256", sa.String(length=64), nullable=False),
        sa.Column("offered_sha256", sa.String(length=64), nullable=False),
        sa.Column("header", sa.Text(), nullable=True),
        sa.Column("flagged_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"], name=op.f("fk_conflicts_kit_id_kits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflicts")),
    )
    with op.batch_alter_table("conflicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conflicts_capture_id"), ["capture_id"], unique=False)

    op.create_table(
        "heartbeats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("kit_time", sa.String(length=40), nullable=True),
        sa.Column("clock_offset_s", sa.String(length=30), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"], name=op.f("fk_heartbeats_kit_id_kits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeats")),
    )
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_heartbeats_kit_id_received_at"), ["kit_id", "received_at"], unique=False)

    op.create_table(
        "kit_schools",
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"], name=op.f("fk_kit_schools_kit_id_kits")),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_kit_schools_school_id_schools")),
        sa.PrimaryKeyConstraint("kit_id", "school_id", name=op.f("pk_kit_schools")),
    )
    op.create_table(
        "roster_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_name", sa.String(length=300), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_roster_versions_school_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_versions")),
        sa.UniqueConstraint("school_id", "version", name=op.f("uq_roster_versions_school_id_version")),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sa.String(length=120), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("header", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"], name=op.f("fk_uploads_kit_id_kits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_uploads_kit_id_capture_id"), ["kit_id", "capture_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_uploads_status_updated_at"), ["status", "updated_at"], unique=False)

    op.create_table(
        "captures",
        sa.Column("capture_id", sa.String(length=120), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("journal_id", sa.String(length=120), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("session_school", sa.String(length=64), nullable=False),
        sa.Column("shot", sa.Integer(), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("identity_kind", sa.String(length=20), nullable=False),
        sa.Column("identity_key", sa.String(length=200), nullable=False),
        sa.Column("identity_resolved", sa.Boolean(), nullable=False),
        sa.Column("identity_source", sa.String(length=20), nullable=False),
        sa.Column("identity_reader", sa.String(length=100), nullable=False),
        sa.Column("roster_check", sa.String(length=30), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("accepted_by_operator", sa.Boolean(), nullable=False),
        sa.Column("captured_at", sa.String(length=40), nullable=False),
        sa.Column("captured_at_utc", sa.DateTime(), nullable=True),
        sa.Column("stored_at", sa.String(length=40), nullable=False),
        sa.Column("supersedes", sa.String(length=120), nullable=True),
        sa.Column("sealed_sha256", sa.String(length=64), nullable=False),
        sa.Column("photo_sha256", sa.String(length=64), nullable=False),
        sa.Column("photo_bytes", sa.BigInteger(), nullable=False),
        sa.Column("photo_key", sa.String(length=300), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("derivative_sha256", sa.String(length=64), nullable=True),
        sa.Column("derivative_key", sa.String(length=300), nullable=True),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["capture_id"], ["bundles.capture_id"], name=op.f("fk_captures_capture_id_bundles")),
        sa.ForeignKeyConstraint(["kit_id"], ["kits.id"], name=op.f("fk_captures_kit_id_kits")),
        sa.PrimaryKeyConstraint("capture_id", name=op.f("pk_captures")),
    )
    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_captures_identity_kind_identity_key"), ["identity_kind", "identity_key"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_captures_kit_id_received_at"), ["kit_id", "received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_captures_supersedes"), ["supersedes"], unique=False)

    op.create_table(
        "students",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("roster_version_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("student_no", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("class_name", sa.String(length=200), nullable=False),
        sa.Column("major", sa.String(length=200), nullable=False),
        sa.Column("photographed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["roster_version_id"], ["roster_versions.id"], name=op.f("fk_students_roster_version_id_roster_versions")
        ),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_students_school_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_students")),
    )
    with op.batch_alter_table("students", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_students_school_id_class_name"), ["school_id", "class_name"], unique=False)

    op.create_table(
        "upload_chunks",
        sa.Column("upload_id", sa.String(length=32), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"], ["uploads.id"], name=op.f("fk_upload_chunks_upload_id_uploads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("upload_id", "offset", name=op.f("pk_upload_chunks")),
    )
    op.create_table(
        "student_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("protected", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_student_keys_school_id_schools")),
        sa.ForeignKeyConstraint(
            ["student_id"], ["students.id"], name=op.f("fk_student_keys_student_id_students"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_student_keys")),
        sa.UniqueConstraint("school_id", "kind", "key", name=op.f("uq_student_keys_school_id_kind_key")),
    )
    with op.batch_alter_table("student_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_student_keys_kind_key"), ["kind", "key"], unique=False)
        batch_op.create_index(batch_op.f("ix_student_keys_kind_protected"), ["kind", "protected"], unique=False)
        batch_op.create_index(batch_op.f("ix_student_keys_student_id"), ["student_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("student_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_student_keys_student_id"))
        batch_op.drop_index(batch_op.f("ix_student_keys_kind_protected"))
        batch_op.drop_index(batch_op.f("ix_student_keys_kind_key"))

    op.drop_table("student_keys")
    op.drop_table("upload_chunks")
    with op.batch_alter_table("students", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_students_school_id_class_name"))

    op.drop_table("students")
    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_captures_supersedes"))
        batch_op.drop_index(batch_op.f("ix_captures_kit_id_received_at"))
        batch_op.drop_index(batch_op.f("ix_captures_identity_kind_identity_key"))

    op.drop_table("captures")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_uploads_status_updated_at"))
        batch_op.drop_index(batch_op.f("ix_uploads_kit_id_capture_id"))

    op.drop_table("uploads")
    op.drop_table("roster_versions")
    op.drop_table("kit_schools")
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_heartbeats_kit_id_received_at"))

    op.drop_table("heartbeats")
    with op.batch_alter_table("conflicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conflicts_capture_id"))

    op.drop_table("conflicts")
    with op.batch_alter_table("bundles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bundles_status"))
        batch_op.drop_index(batch_op.f("ix_bundles_kit_id"))

    op.drop_table("bundles")
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schools_parent_id"))

    op.drop_table("schools")
    op.drop_table("kits")
