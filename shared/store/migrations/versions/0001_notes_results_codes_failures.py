"""notes, results, codes, failures

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "notes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("note_id", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("chars", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=1000), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
        sa.UniqueConstraint("note_id", "content_hash", name=op.f("uq_notes_note_id")),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notes_note_id"), ["note_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("note_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("note_id", sa.String(length=200), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("stage", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_pk"], ["notes.id"], name=op.f("fk_failures_note_pk_notes"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failures")),
    )
    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_failures_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_failures_note_id"), ["note_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_failures_note_pk"), ["note_pk"], unique=False)

    op.create_table(
        "results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("note_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pack", sa.String(length=120), nullable=False),
        sa.Column("catalogue_version", sa.String(length=40), nullable=False),
        sa.Column("verifier", sa.String(length=40), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("review", sa.Integer(), nullable=False),
        sa.Column(
            "coded",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_pk"], ["notes.id"], name=op.f("fk_results_note_pk_notes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
        sa.UniqueConstraint("note_pk", "pack", name=op.f("uq_results_note_pk")),
    )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_results_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_results_note_pk"), ["note_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_results_pack"), ["pack"], unique=False)

    op.create_table(
        "codes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "result_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("note_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column(
            "evidence",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("evidence_start", sa.Integer(), nullable=True),
        sa.Column("evidence_end", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["note_pk"], ["notes.id"], name=op.f("fk_codes_note_pk_notes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results.id"],
            name=op.f("fk_codes_result_id_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_codes")),
    )
    with op.batch_alter_table("codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_codes_code"), ["code"], unique=False)
        batch_op.create_index(batch_op.f("ix_codes_decision"), ["decision"], unique=False)
        batch_op.create_index(batch_op.f("ix_codes_note_pk"), ["note_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_codes_result_id"), ["result_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_codes_result_id"))
        batch_op.drop_index(batch_op.f("ix_codes_note_pk"))
        batch_op.drop_index(batch_op.f("ix_codes_decision"))
        batch_op.drop_index(batch_op.f("ix_codes_code"))

    op.drop_table("codes")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_results_pack"))
        batch_op.drop_index(batch_op.f("ix_results_note_pk"))
        batch_op.drop_index(batch_op.f("ix_results_created_at"))

    op.drop_table("results")
    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_failures_note_pk"))
        batch_op.drop_index(batch_op.f("ix_failures_note_id"))
        batch_op.drop_index(batch_op.f("ix_failures_created_at"))

    op.drop_table("failures")
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notes_updated_at"))
        batch_op.drop_index(batch_op.f("ix_notes_status"))
        batch_op.drop_index(batch_op.f("ix_notes_note_id"))

    op.drop_table("notes")
