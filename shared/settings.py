"""The settings tree: one :class:`Settings`, read from the environment once, at the edge.

Every variable is ``ICDCODER_`` plus the path to the field, sections joined by ``__``::

    ICDCODER_PACK=/packs/codiesp-train           # Settings.pack
    ICDCODER_RETRIEVER__TOP_K=30                 # Settings.retriever.top_k
    ICDCODER_BUS__REDIS_URL=redis://:pw@redis:6379/0

The command line, the worker start and the HTTP server build one ``Settings()`` and hand each
core its section: plain frozen models that read nothing themselves, so a core's defaults are
the same in a test as in production. What must agree across stages (embedding model,
enrichment texts, example memory, verifier weights, catalogue version) is not a setting but a
model pack (:mod:`icdcoder.shared.pack`), named by one setting, ``ICDCODER_PACK``.

``icdcoder settings`` prints every variable with its default and meaning (the README's table is
that output, kept in step by a test).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ICDCODER_"
NESTED = "__"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "icdcoder"


def default_consumer_name() -> str:
    """Pod name in Kubernetes (HOSTNAME), host name elsewhere, plus the pid for local replicas."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


class Section(BaseModel):
    """A branch of the tree: frozen, unknown fields refused (a misspelt variable is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmenterConfig(Section):
    max_note_chars: int = Field(
        default=200_000, gt=0, description="larger notes are refused (characters)"
    )


class RetrieverConfig(Section):
    top_k: int = Field(default=20, gt=0, le=200, description="candidates per span")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="encoder device: auto (CUDA when torch sees it), cpu, cuda"
    )
    batch_size: int = Field(
        default=32,
        gt=0,
        description="texts per torch encoder batch (the int8 ONNX encoder batches texts of one "
        "token count, 64 at most)",
    )
    encoder: Literal["auto", "onnx-int8", "torch"] = Field(
        default="auto",
        description="auto: torch on a CUDA device, else onnx-int8 (exported once into the cache)",
    )
    index: Literal["auto", "hnsw", "flat"] = Field(
        default="auto",
        description="catalogue vector index: auto (flat on a FAISS GPU, else hnsw), hnsw, flat",
    )
    catalogue_precision: Literal["full", "query"] = Field(
        default="full",
        description="full: the catalogue embedded once by the model in float32 (torch), queries "
        "by the encoder; query: the catalogue by the query encoder too",
    )
    hnsw_ef_search: int = Field(
        default=128, gt=0, le=4096, description="HNSW search breadth (recall against speed)"
    )
    threads: int = Field(
        default=0,
        ge=0,
        description="CPU threads for the encoder and search (0: all); one per CPU requested",
    )
    lexical: bool = Field(
        default=True,
        description="also search the catalogue texts by their words (BM25): +0.003 dev MAP and "
        "recall@20 for about 3% of notes/s (docs/accuracy.md)",
    )
    lexical_k: int = Field(default=10, gt=0, le=200, description="lexical rows per query")
    query_cache: int = Field(
        default=20_000,
        ge=0,
        description="query vectors kept in memory, so a text met again is not embedded again "
        "(0: none; 1.5 KiB each with the default model)",
    )
    phrases: bool = Field(
        default=True,
        description="also search a span of more than five words phrase by phrase: more codes "
        "found (dev MAP 0.410 against 0.395, recall@20 0.747 against 0.727), about a sixth "
        "fewer notes/s",
    )
    rerank: bool = Field(
        default=True,
        description="order each span's first codes by the pack's retrieval trees before its "
        "top_k are kept, where its weights have them (docs/accuracy.md, stop 35)",
    )
    search_ruled_out: bool = Field(
        default=False,
        description="also search negated spans (on with ICDCODER_NEGATED_MENTIONS=review; "
        "otherwise no code may come of them); they get no candidates otherwise",
    )
    memory_neighbours: int = Field(
        default=10, gt=0, le=100, description="with a memory: nearest examples that vote per span"
    )


class VllmConfig(Section):
    base_url: str = Field(
        default="http://127.0.0.1:8000/v1", description="OpenAI-compatible vLLM endpoint"
    )
    model: str = Field(default="default", description="served model name")
    api_key: SecretStr = Field(default=SecretStr("EMPTY"), description="bearer key for vLLM")
    timeout_s: float = Field(default=60.0, gt=0, description="per request")
    max_concurrency: int = Field(default=16, gt=0, description="span requests in flight per note")
    max_retries: int = Field(default=4, ge=0, description="retries of a failed request")


class VerifierConfig(Section):
    backend: Literal["similarity", "vllm"] = Field(
        default="similarity", description="similarity (embedded, deterministic) or vllm"
    )
    accept_threshold: float | None = Field(
        default=None, ge=0, le=1, description="accept at this confidence (default: the pack's)"
    )
    review_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="below this a code is not even suggested for review (default: the pack's)",
    )
    max_codes_per_span: int | None = Field(
        default=None, gt=0, description="without the re-ranker: codes accepted per span"
    )
    max_suggestions_per_span: int = Field(
        default=3, gt=0, description="further candidates per span kept as review suggestions"
    )
    note_reranker: bool = Field(
        default=True, description="re-rank each note's codes with the pack's note model"
    )
    max_codes_per_note: int | None = Field(
        default=None, gt=0, description="codes a note keeps, accepted or for review (the pack's)"
    )
    similar_notes: int = Field(
        default=10, ge=0, le=100, description="with a memory: similar coded notes that vote"
    )
    category_mass: bool = Field(
        default=True,
        description="a listed diagnosis: accept its category's best code when the category's "
        "codes together reach the accept threshold",
    )
    note_classifier: bool = Field(
        default=True, description="with a memory: learn a note classifier from its coded notes"
    )
    vllm: VllmConfig = VllmConfig()


class AggregatorConfig(Section):
    include_review: bool = Field(
        default=True, description="keep review codes (false: excluded with the reason)"
    )
    combine: Literal["max", "noisy_or"] = Field(
        default="max", description="a code's confidence from its spans: max or noisy_or"
    )
    one_code_per_category: bool = Field(
        default=True,
        description="a second code of one category on the same evidence goes to review",
    )
    patient_checks: bool = Field(
        default=True, description="codes for the other sex, or pregnancy codes, to review"
    )
    stated_title: bool = Field(
        default=True,
        description="a code whose title the evidence states word for word is settled first",
    )
    documented_specificity: bool = Field(
        default=True,
        description="an accepted code whose title asks for words its sentences do not state "
        "gives way to a sibling they state in full (E11.65 on 'type 2 diabetes': E11.9)",
    )
    symptoms: Literal["off", "system", "sentence", "both", "either"] = Field(
        default="system",
        description="accepted R codes to review beside an accepted diagnosis of their body "
        "system (system), in their sentence (sentence), either, or off",
    )
    injury_needs_trauma: bool = Field(
        default=True,
        description="S/T codes whose evidence sentence names no external cause go to review",
    )
    procedure_names: bool = Field(
        default=True,
        description="a code whose evidence only names a test or procedure (a blood type on "
        "a blood count, skin anaesthesia on anaesthesia given for a procedure), or a Z00-Z13 "
        "encounter-for-examination code whose sentences name no such visit, or a code whose "
        "evidence only gives the patient's age or sex, goes to review",
    )
    ill_defined: bool = Field(
        default=True,
        description="R69 (illness, unspecified) goes to review unless its evidence says the "
        "patient is ill or has a disease",
    )
    generic_disorders: bool = Field(
        default=True,
        description="an unspecified disorder of an organ (M89.9 'Disorder of bone, "
        "unspecified') goes to review unless its evidence says something is wrong (a disease, "
        "lesion, abnormality, -itis): 'bone densitometry' or 'her liver' is no disorder; so "
        "does a congenital malformation named by its organ (Q89.9) unless its evidence says "
        "congenital, malformation, agenesis, atresia",
    )
    uncertain_behavior: bool = Field(
        default=True,
        description="a neoplasm of uncertain behavior (D37-D44) goes to review unless its "
        "evidence gives a histology ('borderline', 'Leydig cell tumor'): the Alphabetic Index "
        "codes a bare 'tumor' as of unspecified behavior (D49)",
    )
    localized_nodes: bool = Field(
        default=True,
        description="lymphadenopathy at a named site ('inguinal lymphadenopathy') is coded "
        "localized (R59.0), not generalized (R59.1, whose 'Lymphadenopathy NOS' a stated site "
        "is not), unless the note says generalized",
    )
    unsupported_weight: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="a code sent to review because its evidence cannot support it (an age, a "
        "test's name, no injury) keeps this share of its confidence, so it ranks below the "
        "codes the note supports",
    )
    combination_codes: bool = Field(
        default=True,
        description="propose the guidelines' combination code (I10 + I50: I11.0) for review",
    )
    shown_review: int = Field(
        default=5,
        ge=0,
        description="review suggestions a table shows beside the accepted codes (results keep all)",
    )


class BusConfig(Section):
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="redis://[:password@]host:port/db, rediss:// for TLS",
    )
    consumer_name: str = Field(
        default_factory=default_consumer_name,
        description="this replica's consumer name (default HOSTNAME-pid)",
    )
    max_deliveries: int = Field(default=5, gt=0, description="deliveries before a dead letter")
    claim_idle_ms: int = Field(
        default=60_000, gt=0, description="a pending entry idle this long is reclaimed"
    )
    claim_interval_s: float = Field(
        default=5.0, gt=0, description="how often groups and consumers are checked"
    )
    max_message_bytes: int = Field(
        default=16 * 2**20, gt=0, description="a larger stage result is dead-lettered"
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        from icdcoder.shared.redis_url import check_redis_url

        check_redis_url(value.get_secret_value())
        return value


def default_store_url() -> SecretStr:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return SecretStr(f"sqlite:///{Path(base) / 'icdcoder' / 'store.db'}")


class StoreConfig(Section):
    url: SecretStr = Field(
        default_factory=default_store_url,
        description="results store: postgresql://user:pw@host/db or sqlite:///file",
    )
    keep_text: bool = Field(
        default=True, description="store note text (the review page needs it); false: offsets only"
    )
    trim_after_s: float = Field(
        default=60.0, ge=0, description="store worker: stored entries leave Redis after this"
    )


class ApiConfig(Section):
    mode: Literal["in-process", "bus"] = Field(
        default="in-process",
        description="in-process: the API codes notes itself; bus: through the Redis workers",
    )
    keys: SecretStr = Field(
        default=SecretStr(""),
        description="API keys as name:sha256 pairs, comma-separated (also the store's keys)",
    )
    max_body_bytes: int = Field(
        default=2 * 2**20, gt=0, description="larger request bodies get 413"
    )
    max_wait_s: float = Field(default=60.0, ge=0, description="longest ?wait= of a POST")
    sessions_secret: SecretStr = Field(
        default=SecretStr(""),
        description="review page: key that signs login sessions (default: random per start)",
    )


class HttpConfig(Section):
    host: str = Field(
        default="127.0.0.1", description="address the HTTP port listens on (pods: their IP)"
    )
    port: int = Field(default=8080, ge=0, le=65535, description="0: any free port")


class Settings(BaseSettings):
    """The whole tree. Build it once per process: ``Settings()`` reads the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        extra="forbid",
        frozen=True,
    )

    pack: Path | None = Field(
        default=None, description="model pack folder (default: the built-in pack)"
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="where vector indexes are cached"
    )
    alphabetic_index: bool = Field(
        default=True,
        description="retrieve over the pack's Alphabetic Index term paths too (false: "
        "descriptions and inclusion terms only)",
    )
    negated_mentions: Literal["exclude", "review"] = Field(
        default="exclude",
        description='a finding the note rules out ("no fever"): exclude (the Official '
        "Guidelines: not coded) or review (searched, listed for review, never accepted; "
        "CodiEsp's gold codes such mentions)",
    )
    segmenter: SegmenterConfig = SegmenterConfig()
    retriever: RetrieverConfig = RetrieverConfig()
    verifier: VerifierConfig = VerifierConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    bus: BusConfig = BusConfig()
    store: StoreConfig = StoreConfig()
    api: ApiConfig = ApiConfig()
    http: HttpConfig = HttpConfig()

    @property
    def negated_for_review(self) -> bool:
        """Negated spans searched and their codes listed for review (``negated_mentions``)."""
        return self.negated_mentions == "review"

    def with_section(self, **sections: Any) -> Settings:
        """A copy with some fields replaced (``pack=...``, ``retriever=RetrieverConfig(...)``)."""
        return self.model_copy(update=sections)


def settings_rows(
    model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX
) -> Iterator[tuple[str, str, str]]:
    """(variable, default, meaning) for every leaf of the tree, in declaration order."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from settings_rows(annotation, f"{prefix}{name.upper()}{NESTED}")
            continue
        if field.default_factory is not None:
            default = _factory_default(name)
        elif isinstance(field.default, SecretStr):
            default = field.default.get_secret_value()
        elif field.default is None:
            default = "none"
        else:
            default = (
                str(field.default).lower()
                if isinstance(field.default, bool)
                else str(field.default)
            )
        yield f"{prefix}{name.upper()}", default, field.description or ""


def _factory_default(name: str) -> str:
    defaults = {
        "cache_dir": "~/.cache/icdcoder",
        "consumer_name": "HOSTNAME-pid",
        "url": "sqlite:///~/.local/share/icdcoder/store.db",
    }
    return defaults.get(name, "computed")


def settings_table() -> str:
    """The settings as a Markdown table (the README's)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{var}` | {default} | {meaning} |" for var, default, meaning in settings_rows()]
    return "\n".join(lines)
