"""Text embeddings of KG nodes, computed once per (snapshot, encoder) and cached on disk.

A WordNet-sized KG has 117k nodes; embedding all of them with MiniLM takes minutes on two
cores, and a question touches a few hundred. :class:`NodeEmbeddingCache` therefore embeds nodes
on first use (``CompiledKG.node_text``), keeps them in a ``[N, D]`` float16 matrix with a
"computed" mask, and saves both as safetensors under
``<KGMM_HOME>/cache/node_embeddings/<kg content hash>-<encoder key>.safetensors`` — keyed by the
snapshot's content hash, so a different graph never reuses stale vectors. ``embed_all()`` fills
the whole matrix (what the issue calls "computed once and cached with the CompiledKG").
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.home import kgmm_home


class NodeEmbeddingCache:
    """Lazily computed, persisted node text embeddings of one CompiledKG (see module doc)."""

    def __init__(self, kg: CompiledKG, encoder: Any, *, encoder_key: str,
                 cache_dir: str | os.PathLike[str] | None = None, batch_size: int = 128) -> None:
        self.kg = kg
        self.encoder = encoder
        self.dim = int(encoder.dim)
        self.batch_size = batch_size
        digest = hashlib.sha256(encoder_key.encode("utf-8")).hexdigest()[:12]
        root = Path(cache_dir) if cache_dir is not None else kgmm_home() / "cache"
        self.path = root / "node_embeddings" / f"{kg.content_hash[:24]}-{digest}.safetensors"
        self._lock = threading.Lock()
        self._matrix = np.zeros((kg.num_nodes, self.dim), dtype=np.float16)
        self._done = np.zeros(kg.num_nodes, dtype=bool)
        self._dirty = False
        self._load()

    def _load(self) -> None:
        from safetensors.numpy import load_file

        if not self.path.exists():
            return
        try:
            saved = load_file(str(self.path))
        except Exception:  # a corrupt cache is recomputed, never trusted
            return
        matrix, done = saved.get("matrix"), saved.get("done")
        if matrix is None or done is None or matrix.shape != self._matrix.shape:
            return
        self._matrix, self._done = matrix.astype(np.float16), done.astype(bool)

    def save(self) -> None:
        """Persist what has been computed (atomically: written aside, then renamed)."""
        from safetensors.numpy import save_file

        with self._lock:
            if not self._dirty:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
            save_file({"matrix": self._matrix, "done": self._done.astype(np.uint8)}, str(tmp))
            os.replace(tmp, self.path)
            self._dirty = False

    def __call__(self, indices: Sequence[int] | np.ndarray | Tensor) -> Tensor:
        """Embeddings ``[len(indices), D]`` (float32) of the given node indices."""
        index = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices,
                           dtype=np.int64)
        with self._lock:
            missing = np.unique(index[~self._done[index]])
            if missing.size:
                self._compute(missing)
            return torch.from_numpy(self._matrix[index].astype(np.float32))

    def _compute(self, indices: np.ndarray) -> None:
        """Embed ``indices`` in batches of similar text length (a batch is padded to its
        longest text, so sorting by length roughly halves the encoder's work)."""
        texts = [self.kg.node_text(int(i)) for i in indices]
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            chunk = indices[rows]
            with torch.no_grad():
                vectors = self.encoder.embed([texts[r] for r in rows]).float().cpu().numpy()
            self._matrix[chunk] = vectors.astype(np.float16)
            self._done[chunk] = True
        self._dirty = True

    def prefetch(self, indices: Sequence[int] | np.ndarray) -> None:
        """Compute every missing node of ``indices`` now, in one length-sorted pass (cheaper
        than many small first-use batches)."""
        index = np.asarray(indices, dtype=np.int64)
        with self._lock:
            missing = np.unique(index[~self._done[index]])
            if missing.size:
                self._compute(missing)

    def embed_all(self, progress: Any = None) -> None:
        """Compute every node (minutes for WordNet on CPU), then save."""
        todo = np.flatnonzero(~self._done)
        step = self.batch_size * 16
        for start in range(0, len(todo), step):
            self(todo[start:start + step])
            if progress is not None:
                progress("embed nodes", min(start + step, len(todo)), len(todo))
        self.save()

    @property
    def computed(self) -> int:
        """How many nodes have an embedding."""
        return int(self._done.sum())
