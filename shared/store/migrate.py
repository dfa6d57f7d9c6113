"""Alembic, driven from the package: ``icdcoder db upgrade`` and the checks at start.

The migration scripts ship in ``migrations/`` beside this module, so an installed package
can create and upgrade its own schema; no ``alembic.ini`` is needed.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from icdcoder.shared.settings import StoreConfig
from icdcoder.shared.store.engine import StoreError, make_engine
from icdcoder.shared.store.repository import Store

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision now current."""
    command.upgrade(alembic_config(engine), revision)
    return current(engine)


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config_for_scripts()).get_current_head()


def alembic_config_for_scripts() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def open_store(config: StoreConfig, *, auto_create: bool = True) -> Store:
    """The store of ``config``, its schema checked: a new SQLite file is created on first use;
    a PostgreSQL database, or any store at an older revision, needs ``icdcoder db upgrade``."""
    engine = make_engine(config.url.get_secret_value())
    try:
        revision = current(engine)
    except OperationalError as exc:
        raise StoreError(f"cannot reach the store ({type(exc.orig).__name__})") from None
    wanted = head()
    if revision is None and auto_create and engine.dialect.name == "sqlite":
        revision = upgrade(engine)
    if revision != wanted:
        raise StoreError(
            f"the store's schema is at {revision or 'nothing (an empty database)'}, this "
            f"release needs {wanted}: run `icdcoder db upgrade`"
        )
    return Store(engine, keep_text=config.keep_text)
