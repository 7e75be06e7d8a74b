"""Frozen-encoder features of texts and images, computed once and kept as safetensors.

The dual tower and the cross-attention re-rankers are small heads over *frozen* towers (MiniLM
sentences, EfficientNet-Lite0 grids), so training and evaluation run on these tables:

* ``pooled [N, D]`` float32 — the sentence vector / the pooled image vector;
* ``tokens [N, L, D]`` float16 — token states (texts, padded/truncated to ``L``) or grid
  cells (images, ``L = h·w``), for the transformer cross-attention re-ranker;
* ``mask [N, L]`` bool — real tokens (all True for image grids);
* ``detail [N, D', H, W]`` float16 — images only, where the encoder has a finer map
  (``ImageFeatures.detail``), for a two-scale scene parser.

A :class:`FeatureTable` saved with :meth:`FeatureTable.save` is one safetensors file whose
metadata holds the item keys and the encoder key; :meth:`FeatureTable.load` refuses a file
written for another encoder.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from kgmm.graph.errors import SnapshotError

ProgressFn = Callable[[str, int, int], None]


@dataclass
class FeatureTable:
    """Features of ``N`` items (see the module docstring); ``keys`` name the items."""

    keys: list[str]
    pooled: Tensor
    tokens: Tensor | None = None
    mask: Tensor | None = None
    encoder_key: str = ""
    detail: Tensor | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def select(self, keys: Sequence[str]) -> FeatureTable:
        """The rows of ``keys`` in that order (KeyError on an unknown key)."""
        pos = self.index()
        rows = torch.tensor([pos[k] for k in keys], dtype=torch.long)
        return FeatureTable(list(keys), self.pooled[rows],
                            None if self.tokens is None else self.tokens[rows],
                            None if self.mask is None else self.mask[rows], self.encoder_key,
                            None if self.detail is None else self.detail[rows])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """One safetensors file (atomic); keys and encoder key in its metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"pooled": self.pooled.float().contiguous()}
        if self.tokens is not None and self.mask is not None:
            tensors["tokens"] = self.tokens.half().contiguous()
            tensors["mask"] = self.mask.to(torch.uint8).contiguous()
        if self.detail is not None:
            tensors["detail"] = self.detail.half().contiguous()
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        # "detail": the table keeps the encoder's finer map whenever it has one
        save_file(tensors, str(tmp), metadata={"keys": json.dumps(self.keys),
                                               "encoder_key": self.encoder_key,
                                               "detail": "kept"})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], encoder_key: str | None = None) -> FeatureTable:
        """Read a table written by :meth:`save` (``encoder_key`` given: it must match, and a
        table with tokens written before detail maps were kept is refused too, so that
        :func:`cached` encodes it again)."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
            keys = json.loads(meta["keys"])
        except Exception as exc:  # safetensors raises its own error types on bad bytes
            raise SnapshotError(f"{path}: not a readable feature table ({exc})") from None
        if encoder_key is not None and meta.get("encoder_key") != encoder_key:
            raise SnapshotError(f"{path}: features of encoder {meta.get('encoder_key')!r}, "
                                f"expected {encoder_key!r}")
        if encoder_key is not None and "tokens" in tensors and "detail" not in meta:
            raise SnapshotError(f"{path}: features written before detail maps were kept "
                                "(by an older kgmm); encode them again")
        mask = tensors.get("mask")
        return cls(keys, tensors["pooled"], tensors.get("tokens"),
                   None if mask is None else mask.bool(), meta.get("encoder_key", ""),
                   tensors.get("detail"))


def encode_texts(encoder: Any, texts: Sequence[str], *, batch_size: int = 64,
                 max_tokens: int = 32, tokens: bool = True, encoder_key: str = "",
                 progress: ProgressFn | None = None) -> FeatureTable:
    """Sentence vectors (and token states, truncated/padded to ``max_tokens``) of ``texts``."""
    texts = list(texts)
    pooled = torch.zeros(len(texts), encoder.dim)
    tok = torch.zeros(len(texts), max_tokens, encoder.dim, dtype=torch.float16) if tokens \
        else None
    mask = torch.zeros(len(texts), max_tokens, dtype=torch.bool) if tokens else None
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        with torch.no_grad():
            out = encoder.encode(chunk)
        pooled[start:start + len(chunk)] = out.pooled.float().cpu()
        if tok is not None and mask is not None:
            n = min(max_tokens, out.tokens.shape[1])
            tok[start:start + len(chunk), :n] = out.tokens[:, :n].half().cpu()
            mask[start:start + len(chunk), :n] = out.mask[:, :n].cpu()
        if progress is not None:
            progress("encode texts", start + len(chunk), len(texts))
    return FeatureTable(texts, pooled, tok, mask, encoder_key)


def encode_images(encoder: Any, images: Sequence[Any], keys: Sequence[str], *,
                  batch_size: int = 16, tokens: bool = True, encoder_key: str = "",
                  progress: ProgressFn | None = None) -> FeatureTable:
    """Pooled vectors (and grid cells) of ``images`` (paths, bytes or PIL images)."""
    from kgmm.reasoning.inputs import load_image

    if len(images) != len(keys):
        raise ValueError(f"{len(images)} images for {len(keys)} keys")
    pooled_rows: list[Tensor] = []
    token_rows: list[Tensor] = []
    detail_rows: list[Tensor] = []
    for start in range(0, len(images), batch_size):
        chunk = [load_image(img) for img in images[start:start + batch_size]]
        with torch.no_grad():
            out = encoder.encode(chunk)
        pooled_rows.append(out.pooled.float().cpu())
        if tokens:
            token_rows.append(out.tokens.half().cpu())
            if out.detail is not None:
                detail_rows.append(out.detail.half().cpu())
        if progress is not None:
            progress("encode images", start + len(chunk), len(images))
    if not pooled_rows:
        return FeatureTable([], torch.zeros(0, encoder.dim), encoder_key=encoder_key)
    tok = torch.cat(token_rows) if tokens else None
    mask = torch.ones(tok.shape[:2], dtype=torch.bool) if tok is not None else None
    detail = torch.cat(detail_rows) if detail_rows else None
    return FeatureTable(list(keys), torch.cat(pooled_rows), tok, mask, encoder_key, detail)


def cached(path: str | os.PathLike[str] | None, encoder_key: str,
           compute: Callable[[], FeatureTable], keys: Sequence[str]) -> FeatureTable:
    """``compute()`` unless ``path`` holds a table of the same encoder covering ``keys``."""
    if path is not None and Path(path).is_file():
        try:
            table = FeatureTable.load(path, encoder_key)
            if set(keys) <= set(table.keys):
                return table.select(list(keys))
        except SnapshotError:
            pass
    table = compute()
    if path is not None:
        table.save(path)
    return table
