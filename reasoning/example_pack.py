"""Prepared VQA examples as one compact safetensors + JSON bundle.

Preparing examples (question encoder, node text embeddings, graph building over the KG) needs
the text encoder, the compiled KG and the benchmark; training on them needs only torch and
PyG. A *pack* carries the prepared examples to a machine that has only the latter (a GPU
host without the MiniLM package, say), small enough to copy: every row of every graph's
``x`` is stored once in a shared table (graphs of one benchmark reuse the same node text
embeddings), question tokens once per distinct question, image vectors once per image, floats
as float16, node indices as int16 (graphs of at most 2¹⁵ nodes).

Layout of ``DIR``: ``pack.json`` (format version, the split → example ranges, answers,
families, question ids, ``meta`` given by the caller) and ``pack.safetensors`` (the tensors,
concatenated along the first axis with offset arrays). :func:`read_pack` returns the same
:class:`~.vqa_data.Example` objects (``x`` rows and vectors as float32), which :mod:`vqa_train`
trains on as if just prepared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .scene_graph import ReasoningGraph
from .vqa_data import Example

__all__ = ["PACK_FORMAT_VERSION", "read_pack", "write_pack"]

PACK_FORMAT_VERSION = 1
JSON_NAME = "pack.json"
TENSORS_NAME = "pack.safetensors"


def _offsets(lengths: Sequence[int]) -> Tensor:
    out = torch.zeros(len(lengths) + 1, dtype=torch.long)
    out[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
    return out


class _Distinct:
    """Float16 tensors kept once each, by content, in first-seen order."""

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.items: list[Tensor] = []

    def add(self, tensor: Tensor) -> int:
        """The position of ``tensor`` (as float16), appended when new."""
        half = tensor.to(torch.float16)
        key = half.numpy().tobytes()
        if key not in self.index:
            self.index[key] = len(self.items)
            self.items.append(half)
        return self.index[key]


def write_pack(directory: str | os.PathLike[str], splits: Mapping[str, Sequence[Example]],
               meta: Mapping[str, Any] | None = None) -> Path:
    """Write the examples of each split (graphs required) into ``directory``."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    rows, token_rows, image_rows = _Distinct(), _Distinct(), _Distinct()
    row_index, node_extra, edge_index, edge_type, seed, kg_index, slots = ([] for _ in range(7))
    n_nodes, n_edges, text_vec, image_id, token_id = [], [], [], [], []
    records: list[dict[str, Any]] = []
    ranges: dict[str, list[int]] = {}
    for split, examples in splits.items():
        start = len(records)
        for ex in examples:
            if ex.graph is None:
                raise ValueError(f"{split}: example {ex.question_id!r} has no graph")
            g = ex.graph
            if g.num_nodes > 2**15:
                raise ValueError(f"{split}: example {ex.question_id!r} has {g.num_nodes} "
                                 f"nodes; a pack holds graphs of at most {2**15}")
            row_index.append(torch.tensor([rows.add(row) for row in g.x.to(torch.float16)],
                                          dtype=torch.int32))
            node_extra.append(g.node_extra.to(torch.float16))
            edge_index.append(g.edge_index.to(torch.int16).T)
            edge_type.append(g.edge_type.to(torch.int16))
            seed.append(g.seed_score.to(torch.float16))
            kg_index.append(g.kg_index.to(torch.int32))
            slots.append(g.object_slot.to(torch.int16))
            n_nodes.append(g.num_nodes)
            n_edges.append(int(g.edge_index.shape[1]))
            text_vec.append(ex.text_vec.to(torch.float16))
            image_id.append(image_rows.add(ex.image_vec.reshape(-1)))
            token_id.append(token_rows.add(ex.text_tokens) if ex.text_tokens is not None
                            else -1)
            records.append({"id": ex.question_id, "answer": ex.answer,
                            "answers": list(ex.answers),
                            "entities": list(ex.answer_entities), "family": ex.family})
        ranges[split] = [start, len(records)]
    tensors = {
        "node_table": (torch.stack(rows.items) if rows.items
                       else torch.zeros(0, 0, dtype=torch.float16)),
        "row_index": torch.cat(row_index), "node_extra": torch.cat(node_extra),
        "edge_index": torch.cat(edge_index), "edge_type": torch.cat(edge_type),
        "seed_score": torch.cat(seed), "kg_index": torch.cat(kg_index),
        "object_slot": torch.cat(slots), "node_offsets": _offsets(n_nodes),
        "edge_offsets": _offsets(n_edges), "text_vec": torch.stack(text_vec),
        "image_vec": torch.stack(image_rows.items), "image_id": torch.tensor(image_id),
        "token_id": torch.tensor(token_id),
    }
    if token_rows.items:
        tensors["token_rows"] = torch.cat(token_rows.items)
        tensors["token_offsets"] = _offsets([t.shape[0] for t in token_rows.items])
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / TENSORS_NAME))
    (path / JSON_NAME).write_text(json.dumps({
        "format_version": PACK_FORMAT_VERSION, "splits": ranges, "examples": records,
        "meta": dict(meta or {})}), encoding="utf-8")
    return path


def read_pack(directory: str | os.PathLike[str]
              ) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    """``(split → examples, meta)`` of a pack written by :func:`write_pack`.

    Raises:
        ValueError: not a pack, or a pack of another format version (the message names it).
    """
    from safetensors.torch import load_file

    path = Path(directory)
    try:
        info = json.loads((path / JSON_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable example pack ({exc})") from None
    if info.get("format_version") != PACK_FORMAT_VERSION:
        raise ValueError(f"{path / JSON_NAME}: pack format {info.get('format_version')!r}; "
                         f"this kgmm reads format {PACK_FORMAT_VERSION}")
    t = load_file(str(path / TENSORS_NAME))
    table = t["node_table"].float()
    nodes, edges = t["node_offsets"].tolist(), t["edge_offsets"].tolist()
    token_offsets = t["token_offsets"].tolist() if "token_rows" in t else []
    examples: list[Example] = []
    for i, rec in enumerate(info["examples"]):
        a, b = nodes[i], nodes[i + 1]
        c, d = edges[i], edges[i + 1]
        graph = ReasoningGraph(
            x=table[t["row_index"][a:b].long()], node_extra=t["node_extra"][a:b].float(),
            edge_index=t["edge_index"][c:d].long().T.contiguous(),
            edge_type=t["edge_type"][c:d].long(), seed_score=t["seed_score"][a:b].float(),
            kg_index=t["kg_index"][a:b].long(), object_slot=t["object_slot"][a:b].long())
        token = int(t["token_id"][i])
        tokens = (t["token_rows"][token_offsets[token]:token_offsets[token + 1]].float()
                  if token >= 0 else None)
        examples.append(Example(
            question_id=rec["id"], image_vec=t["image_vec"][int(t["image_id"][i])].float(),
            text_vec=t["text_vec"][i].float(), graph=graph, answer=rec["answer"],
            answers=tuple(rec["answers"]), answer_entities=tuple(rec["entities"]),
            family=rec["family"], text_tokens=tokens))
    splits = {name: examples[lo:hi] for name, (lo, hi) in info["splits"].items()}
    return splits, info.get("meta", {})
