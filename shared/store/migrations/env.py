"""Alembic's environment: the engine comes from ``icdcoder.shared.store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from icdcoder.shared.store.schema import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run migrations through `icdcoder db upgrade`")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
