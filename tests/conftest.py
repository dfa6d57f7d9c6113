"""Shared fixtures: paths to ../shared data, the real catalogue (loaded once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
import structlog

from icdcoder.shared.catalogue import Catalogue, load_catalogue

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CODIESP = SHARED_DATA / "codiesp"
INDEX_CSV = SHARED_DATA / "icd10cm-index" / "ICD10CM_2025_Index.csv"
EXAMPLES = REPO / "examples"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found: {path} (../shared beside the repo)")
    return path


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A test that runs the CLI in process configures structlog onto pytest's captured
    stderr, which is closed after the test; put the previous configuration back."""
    old = structlog.get_config()
    yield
    structlog.configure(**old)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


def flushed_redis(url: str) -> Iterator[sync_redis.Redis]:
    """A client on a test database, emptied before and after; skips the test without Redis."""
    client = sync_redis.Redis.from_url(url)
    try:
        client.ping()
    except (sync_redis.ConnectionError, OSError):
        pytest.skip(f"no Redis at {url}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
