"""Linking a question's words to KG entities: lexical lookup plus embedding similarity.

1. Candidate mentions: the question's word n-grams (longest first, n ≤ ``max_ngram``) whose
   normal form — or its singular — is a label or alias in the compiled KG's lexicon; words
   that are function words, question words or spatial words are not mentions on their own.
2. Candidate senses: up to ``max_senses`` entities per mention, in lexicon order (label
   before alias, well-connected senses first).
3. Scores: ``s = softmax_k(τ · cos(e_question, e_k) + log prior_k)`` over a mention's senses,
   where ``e`` are sentence embeddings (question; node text) and ``prior_k ∝ 1/(k+1)`` — the
   question's context picks the sense ("bank" in "what is next to the river bank").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kgmm.graph.compiled import CompiledKG

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")

#: Words that never start or make up a mention alone (they may sit inside a longer name).
STOPWORDS = frozenset({
    "a", "an", "the", "this", "that", "these", "those", "is", "are", "was", "were", "be", "been",
    "being", "am", "do", "does", "did", "done", "has", "have", "had", "what", "which", "who",
    "whom", "whose", "where", "when", "why", "how", "many", "much", "any", "some", "no", "not",
    "of", "in", "on", "at", "to", "from", "by", "for", "with", "without", "as", "and", "or",
    "but", "if", "then", "than", "there", "here", "it", "its", "it's", "they", "them", "their",
    "i", "you", "he", "she", "we", "me", "my", "your", "our", "his", "her", "thing", "things",
    "object", "objects", "kind", "kinds", "sort", "type", "one", "ones", "picture", "image",
    "photo", "scene", "shown", "show", "see", "visible", "can", "could", "would", "should",
    "will", "left", "right", "top", "bottom", "above", "below", "under", "over", "next", "near",
    "beside", "middle", "center", "centre", "far", "side", "front", "behind", "between", "part",
    "parts", "whole", "made", "belong", "belongs", "same", "common", "both", "each", "other",
    "another", "every", "all", "only", "more", "most", "less", "least", "number", "count",
    "total",
})


@dataclass(frozen=True)
class Mention:
    """A span of the question linked to candidate entities (indices into the CompiledKG)."""

    start: int
    end: int
    text: str
    candidates: tuple[int, ...]
    scores: tuple[float, ...]


def find_mentions(kg: CompiledKG, question: str, *, max_ngram: int = 3,
                  max_senses: int = 3) -> list[Mention]:
    """Lexical mentions (longest match first, no overlaps), with uniform-by-rank priors."""
    words = _WORD.findall(question.lower())
    taken = [False] * len(words)
    mentions: list[Mention] = []
    for n in range(min(max_ngram, len(words)), 0, -1):
        for start in range(len(words) - n + 1):
            end = start + n
            if any(taken[start:end]):
                continue
            span = words[start:end]
            if span[0] in STOPWORDS or span[-1] in STOPWORDS:
                continue
            text = " ".join(span)
            hits = kg.lookup(text, limit=max_senses)
            if not hits:
                continue
            prior = [1.0 / (rank + 1) for rank in range(len(hits))]
            total = sum(prior)
            mentions.append(Mention(start, end, text, tuple(hits),
                                    tuple(p / total for p in prior)))
            for k in range(start, end):
                taken[k] = True
    return sorted(mentions, key=lambda m: m.start)


def rescore_mentions(mentions: list[Mention], question_embedding: torch.Tensor,
                     node_embeddings: Callable[[list[int]], torch.Tensor],
                     temperature: float = 10.0) -> list[Mention]:
    """Re-weight each mention's senses by similarity to the question (module docstring, 3)."""
    out = []
    q = torch.nn.functional.normalize(question_embedding.float().flatten(), dim=0)
    for mention in mentions:
        if len(mention.candidates) == 1:
            out.append(mention)
            continue
        e = torch.nn.functional.normalize(node_embeddings(list(mention.candidates)).float(),
                                          dim=-1)
        logits = temperature * (e @ q) + torch.log(torch.tensor(mention.scores))
        scores = torch.softmax(logits, dim=0).tolist()
        out.append(Mention(mention.start, mention.end, mention.text, mention.candidates,
                           tuple(scores)))
    return out
