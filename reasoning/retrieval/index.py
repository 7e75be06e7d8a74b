"""An embedding index of images or captions: exact search by default, FAISS as an option.

Search returns the top ``k`` items by inner product (= cosine for the dual tower's unit
vectors). Backends:

* ``"exact"`` — batched matrix product ``Q E^T`` and ``topk``, in chunks of the collection so
  that memory stays bounded; exact and the default.
* ``"faiss"`` — ``faiss.IndexFlatIP`` (exact, multi-threaded BLAS), or with ``nlist > 0`` an
  ``IndexIVFFlat`` (approximate: ``nprobe`` of ``nlist`` inverted lists are scanned), for large
  collections. Needs ``faiss-cpu`` (``pip install kgmm[faiss]``).

An index remembers which model made its vectors (``model``: the dual tower's fingerprint,
``encoder``: the frozen encoder's name) and their dimension; :meth:`EmbeddingIndex.search`
with vectors of another dimension, and :meth:`EmbeddingIndex.check_model` with another model,
raise :class:`IndexMismatchError`.

On disk (:meth:`EmbeddingIndex.save`): ``index.json`` (format version, kind, model, encoder,
dimension, ids, per-item payload, the SHA-256 of the vectors) and ``embeddings.safetensors``
— no pickle. The FAISS structure is rebuilt from the vectors on load. A missing, truncated or
altered file raises :class:`IndexFileError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kgmm.graph.errors import SnapshotError

INDEX_FORMAT_VERSION = 1
INDEX_FILE = "index.json"
VECTORS_FILE = "embeddings.safetensors"
BACKENDS = ("exact", "faiss")


class IndexFileError(SnapshotError):
    """An index directory that is missing, corrupt, or not an index."""


class IndexMismatchError(SnapshotError):
    """An index used with vectors of another dimension or from another model."""


def _digest(matrix: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(matrix, dtype=np.float32).tobytes()).hexdigest()


class EmbeddingIndex:
    """Vectors ``[N, D]`` with ids and optional per-item payload (see the module docstring)."""

    def __init__(self, embeddings: Tensor | np.ndarray, ids: Sequence[Any], *, kind: str,
                 model: str = "", encoder: str = "", backend: str = "exact", nlist: int = 0,
                 nprobe: int = 16, payload: Sequence[dict[str, Any]] | None = None) -> None:
        matrix = embeddings.detach().cpu().float().numpy() if isinstance(embeddings, Tensor) \
            else np.asarray(embeddings, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {matrix.shape}")
        if len(ids) != matrix.shape[0]:
            raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} vectors")
        if payload is not None and len(payload) != len(ids):
            raise ValueError(f"{len(payload)} payload entries for {len(ids)} ids")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.matrix = np.ascontiguousarray(matrix)
        self.ids = list(ids)
        self.kind, self.model, self.encoder = kind, model, encoder
        self.backend, self.nlist, self.nprobe = backend, int(nlist), int(nprobe)
        self.payload = [dict(p) for p in payload] if payload is not None else [{} for _ in ids]
        self._faiss: Any = None
        self._tensor = torch.from_numpy(self.matrix)
        if backend == "faiss":
            self._build_faiss()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def _build_faiss(self) -> None:
        try:
            import faiss
        except ImportError as exc:
            raise ImportError("the faiss backend needs faiss-cpu: pip install 'kgmm[faiss]'") \
                from exc
        if self.nlist > 0 and len(self) >= self.nlist:
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.train(self.matrix)
            index.nprobe = min(self.nprobe, self.nlist)
        else:
            index = faiss.IndexFlatIP(self.dim)
        index.add(self.matrix)
        self._faiss = index

    # -- checks --------------------------------------------------------------------------
    def check_model(self, model: str, encoder: str | None = None) -> None:
        """Raise :class:`IndexMismatchError` unless the index was built by ``model``."""
        if self.model and model and model != self.model:
            raise IndexMismatchError(
                f"this {self.kind} index was built with model {self.model}, not {model}: "
                "rebuild it with the retriever you search with")
        if encoder and self.encoder and encoder != self.encoder:
            raise IndexMismatchError(f"this {self.kind} index was built with encoder "
                                     f"{self.encoder!r}, not {encoder!r}: rebuild it")

    def _queries(self, queries: Tensor | np.ndarray) -> np.ndarray:
        q = queries.detach().cpu().float().numpy() if isinstance(queries, Tensor) \
            else np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise IndexMismatchError(
                f"query vectors have dimension {q.shape[-1]}, this {self.kind} index has "
                f"{self.dim} (built with {self.encoder or 'another encoder'}"
                f"{', model ' + self.model if self.model else ''})")
        return np.ascontiguousarray(q)

    # -- search --------------------------------------------------------------------------
    def search(self, queries: Tensor | np.ndarray, k: int = 10, *,
               chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [B, k'], positions [B, k'])`` of the top ``k' = min(k, N)`` items."""
        q = self._queries(queries)
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if self._faiss is not None:
            scores, pos = self._faiss.search(q, k)
            return scores, pos.astype(np.int64)
        qt = torch.from_numpy(q)
        best_s: Tensor | None = None
        best_i: Tensor | None = None
        for start in range(0, len(self), chunk):
            block = qt @ self._tensor[start:start + chunk].T
            s, i = block.topk(min(k, block.shape[1]), dim=1)
            i = i + start
            if best_s is None or best_i is None:
                best_s, best_i = s, i
            else:
                s, sel = torch.cat([best_s, s], 1).topk(k, dim=1)
                best_i = torch.cat([best_i, i], 1).gather(1, sel)
                best_s = s
        assert best_s is not None and best_i is not None
        return best_s.numpy(), best_i.numpy()

    def scores(self, queries: Tensor | np.ndarray) -> np.ndarray:
        """Scores of every item ``[B, N]`` (exact)."""
        return (torch.from_numpy(self._queries(queries)) @ self._tensor.T).numpy()

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``index.json`` + ``embeddings.safetensors`` atomically (a directory swap)."""
        from safetensors.numpy import save_file

        from kgmm.graph.atomic_dir import written_aside

        target = Path(directory)
        with written_aside(target) as tmp:
            save_file({"embeddings": self.matrix}, str(tmp / VECTORS_FILE))
            meta = {"format_version": INDEX_FORMAT_VERSION, "kind": self.kind,
                    "model": self.model, "encoder": self.encoder, "dim": self.dim,
                    "count": len(self), "backend": self.backend, "nlist": self.nlist,
                    "nprobe": self.nprobe, "sha256": _digest(self.matrix), "ids": self.ids,
                    "payload": self.payload}
            (tmp / INDEX_FILE).write_text(json.dumps(meta, ensure_ascii=False),
                                          encoding="utf-8")
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, backend: str | None = None,
             model: str | None = None) -> EmbeddingIndex:
        """Read an index written by :meth:`save`; ``model`` given: it must be the index's."""
        from safetensors.numpy import load_file

        path = Path(directory)
        meta_path, vec_path = path / INDEX_FILE, path / VECTORS_FILE
        if not meta_path.is_file() or not vec_path.is_file():
            raise IndexFileError(f"{path}: not an embedding index (needs {INDEX_FILE} and "
                                 f"{VECTORS_FILE})")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexFileError(f"{meta_path}: corrupt index metadata ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format_version") != INDEX_FORMAT_VERSION:
            raise IndexFileError(f"{meta_path}: not an index of format {INDEX_FORMAT_VERSION}")
        try:
            matrix = load_file(str(vec_path))["embeddings"]
        except Exception as exc:  # safetensors raises its own error types on bad bytes
            raise IndexFileError(f"{vec_path}: corrupt vectors file ({exc})") from None
        ids = meta.get("ids")
        if not isinstance(ids, list) or matrix.ndim != 2 or matrix.shape != \
                (meta.get("count"), meta.get("dim")) or len(ids) != matrix.shape[0]:
            raise IndexFileError(f"{path}: vectors {tuple(matrix.shape)} do not match the "
                                 f"metadata ({meta.get('count')} × {meta.get('dim')})")
        if _digest(matrix) != meta.get("sha256"):
            raise IndexFileError(f"{vec_path}: checksum mismatch (the file was altered)")
        index = cls(matrix, ids, kind=str(meta.get("kind", "")), model=meta.get("model", ""),
                    encoder=meta.get("encoder", ""), backend=backend or meta.get("backend",
                                                                                 "exact"),
                    nlist=meta.get("nlist", 0), nprobe=meta.get("nprobe", 16),
                    payload=meta.get("payload"))
        if model is not None:
            index.check_model(model)
        return index
