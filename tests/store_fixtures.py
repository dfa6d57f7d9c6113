"""Stores for tests: a PostgreSQL database created and dropped per test session, and SQLite
files in temporary folders. PostgreSQL is the server on ``ICDCODER_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth); tests skip without it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ADMIN_URL = os.environ.get("ICDCODER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; its URL; dropped afterwards."""
    import psycopg

    name = f"icdcoder_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
