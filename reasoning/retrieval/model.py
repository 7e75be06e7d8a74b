"""A trained retrieval model: encoders, dual tower, re-rankers, image linker and KG.

Directory layout (written atomically by :meth:`RetrievalModel.save`; nothing pickled)::

    kgmm_retriever.json     format version, encoder names, image size, KG content hash,
                            entity vocabulary of the image linker, dual-tower fingerprint,
                            metrics, the combiners (a few dozen numbers each)
    dual/                   DualTower (config JSON + safetensors)
    cross/<kind>/           cross-attention scorers (additive, transformer)
    parser/                 SceneParser (image-side entity linking), when there is one
    kg/                     the CompiledKG snapshot the model was trained with
    index/, caption_index/  optional embedding indices of an image / caption collection
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kgmm.graph.errors import KGMMError, SnapshotError
from kgmm.reasoning.model_manifest import read_checked_manifest

from .combiner import ScoreCombiner
from .cross import load_cross_scorer, save_cross_scorer
from .dual import DualTower
from .features import FeatureTable, encode_images, encode_texts
from .kg_features import ConceptGraph
from .linking import ConceptGroup, ImageLinker, link_text

FORMAT_VERSION = 1
MODEL_FILE = "kgmm_retriever.json"
RANKERS = ("dual", "cross", "kg", "cross+kg")
DIRECTIONS = ("t2i", "i2t")


class RetrieverModelError(KGMMError):
    """A retriever directory that is missing, incomplete or from another version."""


@dataclass
class RetrievalModel:
    """Everything retrieval and re-ranking need (see the module docstring)."""

    kg: Any
    text_encoder: Any
    image_encoder: Any
    dual: DualTower
    cross: dict[str, nn.Module]
    combiners: dict[str, dict[str, ScoreCombiner]]
    linker: ImageLinker | None = None
    node_embeddings: Any = None
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    _graph: ConceptGraph | None = None

    # -- pieces ---------------------------------------------------------------------------
    @property
    def graph(self) -> ConceptGraph:
        if self._graph is None:
            self._graph = ConceptGraph(self.kg, self.node_embeddings)
        return self._graph

    @property
    def text_key(self) -> str:
        return str(self.manifest.get("text_encoder", "minilm"))

    @property
    def image_key(self) -> str:
        return f"{self.manifest.get('image_encoder', 'efficientnet-lite0')}@" \
               f"{self.manifest.get('image_size', 224)}"

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("dual_fingerprint") or self.dual.fingerprint())

    def rankers(self) -> list[str]:
        """The rankers this model can run (``dual`` always; others need their parts)."""
        out = ["dual"]
        for name in RANKERS[1:]:
            if all(d in self.combiners.get(name, {}) for d in DIRECTIONS):
                out.append(name)
        return out

    # -- features -------------------------------------------------------------------------
    def encode_texts(self, texts: list[str], tokens: bool = True) -> FeatureTable:
        return encode_texts(self.text_encoder, texts, tokens=tokens, encoder_key=self.text_key)

    def encode_images(self, images: list[Any], keys: list[str], tokens: bool = True,
                      progress: Any = None) -> FeatureTable:
        return encode_images(self.image_encoder, images, keys, tokens=tokens,
                             encoder_key=self.image_key, progress=progress)

    def text_concepts(self, texts: list[str], pooled: torch.Tensor | None = None
                      ) -> list[list[ConceptGroup]]:
        """Entity groups of each text (lexicon + sense re-scoring by the sentence vector)."""
        out = []
        for i, text in enumerate(texts):
            vec = pooled[i] if pooled is not None else None
            out.append(link_text(self.kg, text, sentence_vector=vec,
                                 node_embeddings=self.node_embeddings if vec is not None
                                 else None))
        return out

    def image_concepts(self, table: FeatureTable) -> list[list[ConceptGroup]]:
        """Entity groups of each image of ``table`` (the scene parser on its grid)."""
        if self.linker is None or table.tokens is None:
            return [[] for _ in range(len(table))]
        p = table.tokens.shape[1]
        side = round(p ** 0.5)
        grid = (side, side) if side * side == p else None
        return self.linker(table.tokens, grid, detail=table.detail)

    # -- persistence ----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str], *, indices: dict[str, Any] | None = None
             ) -> Path:
        """Write the model directory atomically (module docstring)."""
        from kgmm.graph.atomic_dir import written_aside

        target = Path(directory)
        with written_aside(target) as tmp:
            self.dual.save_pretrained(tmp / "dual")
            for kind, scorer in self.cross.items():
                save_cross_scorer(scorer, tmp / "cross" / kind)
            parts = ["dual", "kg", *(f"cross/{k}" for k in self.cross)]
            if self.manifest.get("image_encoder") == "image_encoder":  # trained weights
                self.image_encoder.save_pretrained(tmp / "image_encoder")
                parts.append("image_encoder")
            if self.linker is not None:
                self.linker.parser.save_pretrained(tmp / "parser")
                parts.append("parser")
            _save_kg(self.kg, tmp / "kg")
            for name, index in (indices or {}).items():
                index.save(tmp / name)
                parts.append(name)
            manifest = dict(self.manifest)
            manifest.update(
                format_version=FORMAT_VERSION, kg_content_hash=self.kg.content_hash,
                dual_fingerprint=self.dual.fingerprint(), parts=parts,
                linker_entities=[self.kg.id_of(i) for i in self.linker.entity_indices]
                if self.linker is not None else [],
                combiners={r: {d: c.to_json() for d, c in by_dir.items()}
                           for r, by_dir in self.combiners.items()})
            (tmp / MODEL_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        self.path = target
        self.manifest = manifest
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None,
             kg: Any = None, text_encoder: Any = None, image_encoder: Any = None
             ) -> RetrievalModel:
        """Load a directory written by :meth:`save` (encoders may be passed in to share them)."""
        from kgmm.graph.compiled import CompiledKG
        from kgmm.graph.home import kgmm_home
        from kgmm.reasoning.encoders import build_image_encoder, build_text_encoder
        from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
        from kgmm.reasoning.scene_parser import SceneParser

        path = Path(path)
        manifest = read_manifest(path)
        kg = kg if kg is not None else CompiledKG.load(path / "kg")
        expected = manifest.get("kg_content_hash")
        if expected and kg.content_hash != expected:
            raise SnapshotError(f"{path}: the retriever was trained with KG {expected[:12]}, "
                                f"the snapshot given is {kg.content_hash[:12]}")
        text = text_encoder or build_text_encoder(manifest.get("text_encoder", "minilm"))
        image_name = manifest.get("image_encoder", "efficientnet-lite0")
        if image_name == "image_encoder":
            image_name = str(path / "image_encoder")
        image = image_encoder or build_image_encoder(
            image_name,
            image_size=manifest.get("image_size", 224), crop_pct=manifest.get("crop_pct", 1.0))
        try:
            dual = DualTower.from_pretrained(path / "dual")
            cross = {p.name: load_cross_scorer(p) for p in sorted((path / "cross").iterdir())
                     if p.is_dir()} if (path / "cross").is_dir() else {}
            combiners = {r: {d: ScoreCombiner.from_json(c) for d, c in by_dir.items()}
                         for r, by_dir in manifest.get("combiners", {}).items()}
            parser = SceneParser.from_pretrained(path / "parser") \
                if (path / "parser").is_dir() else None
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise RetrieverModelError(f"{path}: cannot load the retriever ({exc})") from None
        if dual.fingerprint() != manifest.get("dual_fingerprint", dual.fingerprint()):
            raise RetrieverModelError(f"{path}/dual: weights differ from the manifest's "
                                      "fingerprint (a corrupt or replaced file)")
        cache = NodeEmbeddingCache(kg, text, encoder_key=manifest.get("text_encoder", "minilm"),
                                   cache_dir=kgmm_home(data_dir) / "cache")
        linker = None
        if parser is not None:
            ids = [kg.find_index(e) for e in manifest.get("linker_entities", [])]
            linker = ImageLinker(parser, [i for i in ids if i is not None], cache)
        return cls(kg, text, image, dual, cross, combiners, linker, cache, manifest, path)


def read_manifest(path: Path) -> dict[str, Any]:
    """The retriever manifest, checked for presence, format and parts."""
    return read_checked_manifest(
        path, file_name=MODEL_FILE, format_version=FORMAT_VERSION, kind="retriever",
        error=RetrieverModelError,
        not_found=f"no retriever at {path}. Train one with `make demo` (it saves "
                  "<KGMM_HOME>/models/default-retriever) or point --model at a retriever "
                  "directory")


def _save_kg(kg: Any, target: Path) -> None:
    """Hard-link the snapshot's files when it lives on disk (same file system), else save."""
    source = getattr(kg, "path", None)
    if source is not None and (Path(source) / "meta.json").is_file():
        try:
            target.mkdir(parents=True)
            for file in Path(source).iterdir():
                if file.is_file():
                    try:
                        os.link(file, target / file.name)
                    except OSError:
                        shutil.copy2(file, target / file.name)
            return
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
    kg.save(target)
    kg.path = source  # save() points the snapshot at the (temporary) copy
