"""Engines and sessions from a store URL: PostgreSQL through psycopg 3, or a SQLite file.

``postgresql://`` (and ``postgres://``) URLs get the psycopg driver; a SQLite file gets
foreign keys, WAL journaling (a reader does not block the writer) and a busy timeout, so a
backfill and the HTTP API can share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from icdcoder.shared.logging import PublicError


class StoreError(PublicError):
    """The store cannot be used: a bad URL, an unreachable database, a schema to upgrade."""


def normalise_url(url: str) -> URL:
    """The SQLAlchemy URL, with the psycopg driver for PostgreSQL; errors never repeat it."""
    try:
        parsed = make_url(url)
    except Exception:
        raise StoreError(
            "the store URL is not a database URL (postgresql://... or sqlite:///...)"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise StoreError(f"the store must be PostgreSQL or SQLite, not {parsed.get_backend_name()}")
    return parsed


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(Path(database).expanduser()))
        engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
