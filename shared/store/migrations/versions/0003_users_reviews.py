"""users, note reviews and review decisions (the review page)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "note_reviews",
        sa.Column("result_id", KEY, nullable=False),
        sa.Column("note_pk", KEY, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reviewed_by", sa.String(length=120), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.String(length=120), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_pk"],
            ["notes.id"],
            name=op.f("fk_note_reviews_note_pk_notes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results.id"],
            name=op.f("fk_note_reviews_result_id_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_note_reviews")),
    )
    with op.batch_alter_table("note_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_note_reviews_note_pk"), ["note_pk"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_note_reviews_reviewed_at"), ["reviewed_at"], unique=False
        )
    op.create_table(
        "review_decisions",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("result_id", KEY, nullable=False),
        sa.Column("note_pk", KEY, nullable=False),
        sa.Column("note_id", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("user", sa.String(length=120), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("evidence", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_pk"],
            ["notes.id"],
            name=op.f("fk_review_decisions_note_pk_notes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results.id"],
            name=op.f("fk_review_decisions_result_id_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_decisions")),
    )
    with op.batch_alter_table("review_decisions", schema=None) as batch_op:
        for column in ("action", "code", "created_at", "note_id", "note_pk", "result_id"):
            batch_op.create_index(f"ix_review_decisions_{column}", [column], unique=False)


def downgrade() -> None:
    op.drop_table("review_decisions")
    op.drop_table("note_reviews")
    op.drop_table("users")
