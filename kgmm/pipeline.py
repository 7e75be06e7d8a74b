"""``KGMM``: the question-answering pipeline, and ``kgmm.answer(image, question)``.

One question flows as DESIGN.md draws it: the image encoder gives grid and pooled features;
the scene parser turns the grid into objects linked to KG entities; the question is linked to
KG entities by the lexicon (re-scored by sentence similarity); the KG around all linked
entities plus the objects becomes the reasoning graph; the fused question/image vector
conditions the reasoner; the answer comes back with its score, alternatives and evidence.

A model directory holds ``kgmm_model.json`` (format version, encoders, KG content hash), the
VQA model (``vqa/``), the scene parser (``parser/``) with its entity vocabulary, and the
compiled KG it was trained with (``kg/``). Nothing in it is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgmm.graph.errors import KGMMError, SnapshotError
from kgmm.graph.home import kgmm_home

MODEL_FORMAT_VERSION = 1
MODEL_FILE = "kgmm_model.json"


class ModelError(KGMMError):
    """A model directory that is missing, incomplete or from another version."""


@dataclass(frozen=True)
class LinkedEntity:
    """An entity the question or the image was linked to."""

    entity_id: str
    label: str
    score: float
    source: str  # "question" or "image"
    span: str | None = None  # the question words, or the object position "x=0.21,y=0.40"


@dataclass(frozen=True)
class EvidencePath:
    """A path through the reasoning graph from a linked entity or object to the answer."""

    nodes: list[str]  # entity ids, or "object#k" for detected objects
    relations: list[str]
    score: float

    def __str__(self) -> str:
        parts = [self.nodes[0]]
        for relation, node in zip(self.relations, self.nodes[1:], strict=True):
            parts.append(f"-[{relation}]->{node}")
        return "".join(parts)


@dataclass(frozen=True)
class Evidence:
    """Why the model answered what it did."""

    linked_entities: list[LinkedEntity]
    subgraph_nodes: int
    subgraph_edges: int
    top_nodes: list[tuple[str, float]]
    paths: list[EvidencePath]


@dataclass(frozen=True)
class Alternative:
    text: str
    score: float
    entity_id: str | None = None


@dataclass(frozen=True)
class Answer:
    """``kgmm.answer``'s result."""

    text: str
    entity_id: str | None
    score: float
    alternatives: list[Alternative]
    evidence: Evidence | None = None
    question: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_model_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``$KGMM_MODEL`` if set, else ``<KGMM_HOME>/models/default``."""
    override = os.environ.get("KGMM_MODEL")
    return Path(override) if override else kgmm_home(data_dir) / "models" / "default"


def read_model_manifest(path: Path) -> dict[str, Any]:
    """The model's manifest, checked for presence and format version."""
    manifest_path = path / MODEL_FILE
    if not path.exists():
        raise ModelError(f"no kgmm model at {path}. Train one with `make demo` or "
                         "`kgmm train --config FILE`, or point KGMM_MODEL at a model directory")
    if not manifest_path.is_file():
        raise ModelError(f"{path} is not a kgmm model directory (no {MODEL_FILE})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{manifest_path}: corrupt manifest ({exc})") from None
    version = manifest.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ModelError(f"{manifest_path}: model format {version!r}; this kgmm reads format "
                         f"{MODEL_FORMAT_VERSION} — retrain the model with this version")
    for part in manifest.get("parts", []):
        if not (path / part).exists():
            raise ModelError(f"{path}: the model is incomplete, {part} is missing")
    return manifest


def check_kg_matches(manifest: dict[str, Any], kg: Any, where: Path) -> None:
    """Refuse a KG snapshot other than the one the model was trained with."""
    expected = manifest.get("kg_content_hash")
    if expected and kg.content_hash != expected:
        raise SnapshotError(
            f"{where}: the model was trained with KG {expected[:12]}, but the snapshot given is "
            f"{kg.content_hash[:12]}; use the model's own kg/ or retrain")


class _LRU:
    """A small thread-safe LRU cache (image features by content hash)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def image_key(image: Any) -> str:
    """Content hash of an RGB PIL image (features are cached per image)."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}".encode())
    return digest.hexdigest()


@dataclass
class PipelineParts:
    """What a loaded model is made of (kept loose so the parts can evolve separately)."""

    kg: Any
    text_encoder: Any
    image_encoder: Any
    parser: Any
    parser_entities: list[int]
    vqa: Any
    node_embeddings: Any
    manifest: dict[str, Any] = field(default_factory=dict)
