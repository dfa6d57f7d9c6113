"""Shared fixtures: paths to ../shared data, the real catalogue (loaded once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.catalogue import Catalogue, load_catalogue

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CODIESP = SHARED_DATA / "codiesp"
INDEX_CSV = SHARED_DATA / "icd10cm-index" / "ICD10CM_2025_Index.csv"
EXAMPLES = REPO / "examples"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found: {path} (../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()
