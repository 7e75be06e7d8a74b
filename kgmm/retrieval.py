"""Image–text retrieval and re-ranking: ``kgmm.retrieve``, ``kgmm.rerank``, :class:`Retriever`.

>>> import kgmm
>>> hits = kgmm.retrieve("an animal next to a fruit", top=10, rerank="kg")
>>> hits[0].id, hits[0].score, hits[0].evidence.matches[0]["path"]
>>> kgmm.rerank("a picture of a rodent", [{"id": 7, "score": 0.41, "image": "a.jpg"}, ...], k=5)

A retriever directory (default ``$KGMM_RETRIEVER``, else
``<KGMM_HOME>/models/default-retriever``, written by ``make demo`` or
:func:`train_default_retriever`) holds the dual tower, the cross-attention and KG re-rankers,
the image linker (scene parser), the KG snapshot and, optionally, indices of an image and a
caption collection that ``retrieve`` searches.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from kgmm.graph.home import kgmm_home

DEFAULT_NAME = "default-retriever"

__all__ = ["Retriever", "default_retriever_path", "rerank", "retrieve",
           "train_default_retriever"]


def default_retriever_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``$KGMM_RETRIEVER`` if set, else ``<KGMM_HOME>/models/default-retriever``."""
    override = os.environ.get("KGMM_RETRIEVER")
    return Path(override) if override else kgmm_home(data_dir) / "models" / DEFAULT_NAME


class Retriever:
    """A loaded retriever: first-stage search over an index, re-ranking, index building."""

    def __init__(self, model: Any, path: Path | None = None) -> None:
        self.model = model
        self.path = path
        self.image_index: Any = None
        self.caption_index: Any = None
        if path is not None:
            self._load_indices(path)

    # -- loading / saving ----------------------------------------------------------------
    @classmethod
    def load(cls, path_or_name: str | os.PathLike[str] | None = None, *,
             data_dir: str | os.PathLike[str] | None = None, kg: Any = None) -> Retriever:
        """Load a retriever directory (a bare name means ``<KGMM_HOME>/models/<name>``)."""
        from kgmm.reasoning.retrieval.model import RetrievalModel

        if path_or_name is None:
            path = default_retriever_path(data_dir)
        else:
            path = Path(path_or_name)
            if not path.exists() and os.sep not in str(path_or_name):
                path = kgmm_home(data_dir) / "models" / str(path_or_name)
        return cls(RetrievalModel.load(path, data_dir=data_dir, kg=kg), path)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the retriever (and its indices) to ``directory`` atomically."""
        indices = {name: index for name, index in (("index", self.image_index),
                                                   ("caption_index", self.caption_index))
                   if index is not None}
        self.path = self.model.save(directory, indices=indices)
        return self.path

    def _load_indices(self, path: Path) -> None:
        from kgmm.reasoning.retrieval.index import EmbeddingIndex

        for name, attr in (("index", "image_index"), ("caption_index", "caption_index")):
            if (path / name).is_dir():
                setattr(self, attr, EmbeddingIndex.load(path / name,
                                                        model=self.model.fingerprint))

    # -- indices -------------------------------------------------------------------------
    def use_index(self, index: Any) -> None:
        """Search ``index`` from now on (an image index for text queries, a text index for
        image queries); an index built by another model is refused."""
        from kgmm.reasoning.retrieval.index import IndexMismatchError

        encoder = self.model.image_key if index.kind == "image" else self.model.text_key
        index.check_model(self.model.fingerprint, encoder)
        if index.dim != self.model.dual.config.dim:
            raise IndexMismatchError(f"index vectors have dimension {index.dim}, this "
                                     f"retriever's have {self.model.dual.config.dim}")
        if index.kind == "image":
            self.image_index = index
        else:
            self.caption_index = index

    def build_index(self, images: list[Any], ids: list[Any] | None = None, *,
                    backend: str = "exact", link: bool = True, progress: Any = None) -> Any:
        """An image index of ``images`` (paths or PIL images); with ``link`` each item's
        parsed KG concepts are stored with it, so that the KG re-ranker needs no image."""
        import torch

        from kgmm.reasoning.retrieval.index import EmbeddingIndex

        ids = list(ids) if ids is not None else [str(p) if isinstance(p, str | Path) else i
                                                  for i, p in enumerate(images)]
        table = self.model.encode_images(list(images), [str(i) for i in ids], tokens=link,
                                         progress=progress)
        with torch.no_grad():
            z = self.model.dual.encode_image(table.pooled)
        groups = self.model.image_concepts(table) if link else [[] for _ in ids]
        payload = [{"path": str(p) if isinstance(p, str | Path) else None,
                    "concepts": [g.to_json(self.model.kg) for g in grp]}
                   for p, grp in zip(images, groups, strict=True)]
        return EmbeddingIndex(z, ids, kind="image", model=self.model.fingerprint,
                              encoder=self.model.image_key, backend=backend, payload=payload)

    def build_caption_index(self, captions: list[str], ids: list[Any] | None = None, *,
                            backend: str = "exact") -> Any:
        """A caption index for image→text search."""
        import torch

        from kgmm.reasoning.retrieval.index import EmbeddingIndex

        ids = list(ids) if ids is not None else list(range(len(captions)))
        with torch.no_grad():
            z = self.model.dual.encode_text(self.model.encode_texts(captions, tokens=False)
                                            .pooled)
        return EmbeddingIndex(z, ids, kind="text", model=self.model.fingerprint,
                              encoder=self.model.text_key, backend=backend,
                              payload=[{"text": c} for c in captions])

    # -- search --------------------------------------------------------------------------
    def retrieve(self, query: Any, top: int = 10, *, rerank: str | None = None,
                 candidates: int = 100, evidence: bool = True) -> list[Any]:
        """Text query → images of the image index; image query → captions of the caption
        index. ``rerank`` (``"cross"``, ``"kg"``, ``"cross+kg"``) re-orders the first
        ``candidates`` results. Returns :class:`RankedCandidate` s, best first."""
        from kgmm.graph.errors import InputError
        from kgmm.reasoning.retrieval.rerank import encode_query, rerank_candidates

        if top < 1:
            raise InputError(f"top must be at least 1, got {top}", field="top")
        vector, direction, features = encode_query(self.model, query,
                                                   tokens=rerank in ("cross", "cross+kg"))
        index = self.image_index if direction == "t2i" else self.caption_index
        if index is None:
            what = "image" if direction == "t2i" else "caption"
            raise InputError(f"this retriever has no {what} index to search; build one with "
                             f"Retriever.build_index / build_caption_index and use_index()",
                             field="index")
        scores, pos = index.search(vector, max(top, candidates if rerank else top))
        cands = []
        for s, p in zip(scores[0].tolist(), pos[0].tolist(), strict=True):
            item = index.payload[p]
            cand: dict[str, Any] = {"id": index.ids[p], "score": s,
                                    **{k: v for k, v in item.items() if k != "text"}}
            if direction == "i2t":
                cand["text"] = item.get("text")
            elif rerank in ("cross", "cross+kg"):
                if not item.get("path"):
                    raise InputError(f"index item {index.ids[p]!r} has no image path, which "
                                     "the cross-attention re-ranker needs", field="path")
                cand["image"] = item["path"]
            cands.append(cand)
        return rerank_candidates(self.model, query, cands, k=top, method=rerank or "dual",
                                 evidence=evidence, query_features=features)

    def rerank(self, query: Any, candidates: list[Any], k: int | None = 10, *,
               method: str = "kg", evidence: bool = True, strict: bool = False) -> list[Any]:
        """Re-rank a candidate list from any retriever (see :mod:`kgmm.reasoning.retrieval.
        rerank` for the candidate fields)."""
        from kgmm.reasoning.retrieval.rerank import rerank_candidates

        return rerank_candidates(self.model, query, candidates, k=k, method=method,
                                 evidence=evidence, strict=strict)


_LOADED: dict[str, Retriever] = {}
_LOCK = threading.Lock()


def _get(model: str | os.PathLike[str] | Retriever | None) -> Retriever:
    if isinstance(model, Retriever):
        return model
    key = str(model) if model is not None else str(default_retriever_path())
    with _LOCK:
        found = _LOADED.get(key)
        if found is None:
            found = _LOADED[key] = Retriever.load(model)
    return found


def rerank(query: Any, candidates: list[Any], k: int | None = 10, *, method: str = "kg",
           model: str | os.PathLike[str] | Retriever | None = None, evidence: bool = True,
           strict: bool = False) -> list[Any]:
    """Re-rank ``candidates`` (dicts with ``id``, optional ``score`` and ``image`` / ``text``
    / ``entities``; plain strings are captions) for a text or image ``query``; the best ``k``
    with their evidence. ``method``: ``"kg"`` (default), ``"cross"``, ``"cross+kg"``,
    ``"dual"``."""
    return _get(model).rerank(query, candidates, k, method=method, evidence=evidence,
                              strict=strict)


def retrieve(query: Any, top: int = 10, *, rerank: str | None = None,
             model: str | os.PathLike[str] | Retriever | None = None,
             candidates: int = 100) -> list[Any]:
    """Search the default (or given) retriever's index; see :meth:`Retriever.retrieve`."""
    return _get(model).retrieve(query, top, rerank=rerank, candidates=candidates)


def train_default_retriever(data_dir_of_benchmark: str | os.PathLike[str],
                            out_dir: str | os.PathLike[str] | None = None, *, kg: Any,
                            vqa_model: Any = None, data_dir: str | os.PathLike[str] | None = None,
                            epochs: int = 40, cross_epochs: int = 2, image_size: int = 224,
                            feature_cache: str | os.PathLike[str] | None = None,
                            log: Any = print, progress: Any = None) -> dict[str, Any]:
    """Train the default retriever on an OpenMoji-scenes (or COCO-captions) folder and save it
    at ``out_dir`` (default ``<KGMM_HOME>/models/default-retriever``); returns its metrics.

    ``vqa_model``: a loaded :class:`kgmm.KGMM` (or its directory) whose encoders, scene parser
    and node-embedding cache are reused (no second parser training, no second model load)."""
    from kgmm.reasoning.retrieval.train import train_retriever

    out = Path(out_dir) if out_dir is not None else kgmm_home(data_dir) / "models" / DEFAULT_NAME
    kwargs: dict[str, Any] = {}
    if vqa_model is not None:
        if not hasattr(vqa_model, "parts"):
            from kgmm.pipeline import KGMM

            vqa_model = KGMM.load(vqa_model, data_dir=data_dir, kg=kg)
        parts = vqa_model.parts
        kwargs = {"text_encoder": parts.text_encoder, "image_encoder": parts.image_encoder,
                  "parser": parts.parser, "node_embeddings": parts.node_embeddings,
                  "linker_entities": list(parts.manifest.get("parser_entities", []))}
        image_size = int(parts.manifest.get("image_size", image_size))
        kwargs["image_encoder_name"] = str(parts.manifest.get("image_encoder",
                                                              "efficientnet-lite0"))
        kwargs["crop_pct"] = float(parts.manifest.get("crop_pct", 1.0))
    _, metrics = train_retriever(data_dir_of_benchmark, out, kg=kg, data_dir=data_dir,
                                 epochs=epochs, cross_epochs=cross_epochs,
                                 image_size=image_size, feature_cache=feature_cache, log=log,
                                 progress=progress, **kwargs)
    return metrics
