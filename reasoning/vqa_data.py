"""Turning VQA records into training examples for :class:`~.vqa_model.VQAModel`.

Frozen encoders run once per image and once per distinct question; the scene parser runs once
per image; each question's :class:`~.scene_graph.ReasoningGraph` is built once. Targets:

* ``answer_id`` — the answer's id in the model vocabulary (the baseline's target);
* ``node_targets`` — multi-hot over the graph's KG nodes whose entity is a valid answer (the
  10-answer format may hold several: parts, co-equal categories);
* ``vocab_target`` — ``<count>`` for numbers, ``<yesno>`` for yes/no, a word id for answers
  outside the KG, −1 when the answer is a node (−1 and no node target: the question cannot be
  answered from its graph and only trains the baseline);
* ``count``/``yes`` with their masks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from kgmm.graph.compiled import CompiledKG

from .heads import AnswerVocabulary, normalize_answer
from .question_linking import find_mentions, rescore_mentions
from .scene_graph import GraphConfig, ObjectObservation, ReasoningGraph, build_graph
from .vqa_model import COUNT, YESNO, answer_number


@dataclass
class Example:
    """One question, ready for batching."""

    question_id: Any
    image_vec: Tensor
    text_vec: Tensor
    graph: ReasoningGraph | None
    answer: str
    answers: tuple[str, ...]
    answer_entities: tuple[int, ...]
    family: str | None
    text_tokens: Tensor | None = None  # [T, D] real-token embeddings of the question


def top_answer(answers: Sequence[str], fallback: str | None = None) -> str:
    """The most frequent of the human answers (ties: first seen), normalised."""
    if fallback:
        return normalize_answer(fallback)
    counts = Counter(normalize_answer(a) for a in answers)
    return max(counts, key=lambda a: (counts[a], -list(counts).index(a))) if counts else ""


def build_vocabularies(examples: Iterable[Example]) -> tuple[AnswerVocabulary, AnswerVocabulary]:
    """(KG-model vocabulary, baseline vocabulary) from training examples."""
    kg_words: list[str] = []
    all_words: list[str] = []
    for ex in examples:
        all_words.append(ex.answer)
        if answer_number(ex.answer) is not None:
            kg_words.append(COUNT)
        elif ex.answer in ("yes", "no"):
            kg_words.append(YESNO)
        elif not ex.answer_entities:
            kg_words.append(ex.answer)
    kg_vocab = AnswerVocabulary([COUNT, YESNO, *AnswerVocabulary.build(kg_words).itos[1:]])
    return kg_vocab, AnswerVocabulary.build(all_words)


def to_data(graph: ReasoningGraph) -> Data:
    """The reasoner's view of a graph."""
    return Data(x=graph.x, node_extra=graph.node_extra, edge_index=graph.edge_index,
                edge_type=graph.edge_type, seed_score=graph.seed_score,
                num_nodes=graph.num_nodes)


def make_examples(records: Iterable[Any], kg: CompiledKG,
                  image_features: Callable[[Any], tuple[Tensor, list[ObjectObservation]]],
                  text_embed: Callable[[list[str]], Tensor],
                  node_embeddings: Callable[[Any], Tensor],
                  graph_config: GraphConfig | None, *, with_graphs: bool = True,
                  text_tokens: Callable[[list[str]], list[Tensor]] | None = None,
                  ) -> list[Example]:
    """Examples for ``records`` (``kgmm.data.VQARecord``); graphs only when ``with_graphs``;
    question token embeddings when ``text_tokens`` is given (e.g.
    ``TextEncoder.token_embeddings``)."""
    records = list(records)
    questions = sorted({r.question for r in records})
    text_vecs = dict(zip(questions, text_embed(questions), strict=True))
    tokens = dict(zip(questions, text_tokens(questions), strict=True)) if text_tokens else {}
    # with a prefetching cache, graphs are built first and their node features filled in
    # after one length-sorted pass over every node they need
    deferred = _DeferredEmbeddings(node_embeddings) if hasattr(node_embeddings, "prefetch") \
        else None
    examples = []
    for record in records:
        image_vec, observations = image_features(record)
        entities = []
        for entity_id in record.answer_entity_ids:
            index = kg.find_index(entity_id)
            if index is not None:
                entities.append(index)
        graph = None
        if with_graphs:
            mentions = rescore_mentions(find_mentions(kg, record.question),
                                        text_vecs[record.question],
                                        lambda idx: node_embeddings(idx))
            graph = build_graph(kg, mentions, observations, deferred or node_embeddings,
                                graph_config)
        examples.append(Example(
            question_id=record.question_id, image_vec=image_vec,
            text_vec=text_vecs[record.question], graph=graph,
            answer=top_answer(record.answers, record.multiple_choice_answer),
            answers=tuple(normalize_answer(a) for a in record.answers),
            answer_entities=tuple(entities),
            family=(record.extra or {}).get("question_family"),
            text_tokens=tokens.get(record.question)))
    if deferred is not None:
        deferred.fill(examples)
    return examples


class _DeferredEmbeddings:
    """Stands in for a node-embedding cache while graphs are built: hands out zeros and
    remembers the nodes, then :meth:`fill` computes them at once and writes the features."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.wanted: list[np.ndarray] = []

    def __call__(self, indices: Any) -> Tensor:
        index = np.asarray(indices, dtype=np.int64)
        self.wanted.append(index)
        return torch.zeros(len(index), int(self.cache.dim))

    def fill(self, examples: Sequence[Example]) -> None:
        if self.wanted:
            self.cache.prefetch(np.concatenate(self.wanted))
        for example in examples:
            graph = example.graph
            if graph is None:
                continue
            kg_rows = torch.nonzero(graph.kg_index >= 0).flatten()
            if kg_rows.numel():
                graph.x[kg_rows] = self.cache(graph.kg_index[kg_rows].numpy()).to(graph.x.dtype)


def pad_tokens(tokens: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Token embeddings ``[T_i, D]`` → padded ``[B, T_max, D]`` and mask ``[B, T_max]``."""
    longest = max(1, max(len(t) for t in tokens))
    dim = tokens[0].shape[-1]
    padded = torch.zeros(len(tokens), longest, dim)
    mask = torch.zeros(len(tokens), longest, dtype=torch.bool)
    for row, t in enumerate(tokens):
        padded[row, :len(t)] = t.float()
        mask[row, :len(t)] = True
    return padded, mask


def forward_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :meth:`VQAModel.forward` from a collated batch."""
    return {"image_vec": batch["image_vec"], "text_vec": batch["text_vec"],
            "graphs": batch.get("graphs"), "text_tokens": batch.get("text_tokens"),
            "text_mask": batch.get("text_mask")}


def collate(examples: Sequence[Example], vocab: AnswerVocabulary,
            use_kg: bool) -> dict[str, Any]:
    """Stack a batch: inputs for :meth:`VQAModel.forward` and targets for its loss."""
    image_vec = torch.stack([e.image_vec for e in examples]).float()
    text_vec = torch.stack([e.text_vec for e in examples]).float()
    batch: dict[str, Any] = {"image_vec": image_vec, "text_vec": text_vec,
                             "examples": list(examples)}
    if examples and all(e.text_tokens is not None for e in examples):
        batch["text_tokens"], batch["text_mask"] = pad_tokens([e.text_tokens for e in examples])
    targets: dict[str, Tensor] = {
        "answer_id": torch.tensor([vocab.encode(e.answer) for e in examples])}
    if use_kg:
        graphs = [to_data(e.graph) for e in examples]
        node_targets, vocab_target, count, count_mask, yes, yes_mask = [], [], [], [], [], []
        for e in examples:
            wanted = set(e.answer_entities)
            node_targets.append(torch.tensor(
                [1.0 if int(i) in wanted else 0.0 for i in e.graph.kg_index.tolist()]))
            number = answer_number(e.answer)
            is_yesno = e.answer in ("yes", "no")
            count.append(float(number or 0))
            count_mask.append(number is not None)
            yes.append(1.0 if e.answer == "yes" else 0.0)
            yes_mask.append(is_yesno)
            if number is not None:
                vocab_target.append(vocab.encode(COUNT))
            elif is_yesno:
                vocab_target.append(vocab.encode(YESNO))
            elif e.answer_entities:
                vocab_target.append(-1)
            else:
                word = vocab.encode(e.answer)
                vocab_target.append(word if word != vocab.unk_id else -1)
        batch["graphs"] = graphs
        targets.update(
            node_targets=torch.cat(node_targets), vocab_target=torch.tensor(vocab_target),
            count=torch.tensor(count), count_mask=torch.tensor(count_mask),
            yes=torch.tensor(yes), yesno_mask=torch.tensor(yes_mask))
    batch["targets"] = targets
    return batch
