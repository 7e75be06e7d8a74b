r"""Answer vocabulary and the no-KG baseline head.

:class:`AnswerVocabulary` maps answer strings (the ones outside the KG: yes/no, numbers,
words) to ids; :class:`VocabClassifier` scores them from the fused query alone — the
"fusion only, no KG" baseline row of every results table.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

__all__ = ["AnswerVocabulary", "VocabClassifier", "normalize_answer"]

UNK = "<unk>"


def normalize_answer(answer: str) -> str:
    """Lower-case, strip and collapse whitespace (``" Two  Dogs "`` → ``"two dogs"``)."""
    return " ".join(answer.lower().split())


class AnswerVocabulary:
    """Answer strings ↔ ids; id 0 is ``unk`` (every answer not in the vocabulary).

    Built from training answers: answers seen at least ``min_count`` times, ordered by count
    (descending) then alphabetically, so the same answers always give the same ids. Answers
    are normalised by :func:`normalize_answer`.
    """

    def __init__(self, answers: Iterable[str] = (), unk: str = UNK) -> None:
        self.unk = unk
        self.itos: list[str] = [unk]
        self.stoi: dict[str, int] = {unk: 0}
        for answer in answers:
            key = normalize_answer(answer)
            if key not in self.stoi:
                self.stoi[key] = len(self.itos)
                self.itos.append(key)

    @classmethod
    def build(cls, answers: Iterable[str], min_count: int = 1,
              max_size: int | None = None, unk: str = UNK) -> AnswerVocabulary:
        """Vocabulary of the answers seen ``≥ min_count`` times (at most ``max_size``)."""
        counts = Counter(normalize_answer(a) for a in answers)
        counts.pop(unk, None)
        kept = sorted((a for a, c in counts.items() if c >= min_count and a),
                      key=lambda a: (-counts[a], a))
        return cls(kept[:max_size] if max_size is not None else kept, unk=unk)

    @property
    def unk_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, answer: object) -> bool:
        return isinstance(answer, str) and normalize_answer(answer) in self.stoi

    def encode(self, answer: str) -> int:
        """Id of ``answer`` (``unk_id`` when unknown)."""
        return self.stoi.get(normalize_answer(answer), 0)

    def decode(self, index: int) -> str:
        return self.itos[index]

    def to_dict(self) -> dict[str, Any]:
        return {"unk": self.unk, "answers": self.itos[1:]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnswerVocabulary:
        return cls(data["answers"], unk=data.get("unk", UNK))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> AnswerVocabulary:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.write_text(self.to_json(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AnswerVocabulary:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, AnswerVocabulary) and self.itos == other.itos
                and self.unk == other.unk)

    def __hash__(self) -> int:
        return hash((self.unk, tuple(self.itos)))

    def __repr__(self) -> str:
        return f"AnswerVocabulary(size={len(self)})"


class VocabClassifier(nn.Module):
    r"""The no-KG baseline: an MLP over the fused query.

    .. math::
        \mathbf{z} = \mathbf{W}_2\, \mathrm{Dropout}(\mathrm{GELU}(\mathrm{LayerNorm}(
        \mathbf{W}_1 \mathbf{q} + \mathbf{b}_1))) + \mathbf{b}_2

    Shapes:
        ``q [B, query_dim]`` → logits ``[B, vocab_size]``.
    """

    def __init__(self, query_dim: int, vocab_size: int, hidden: int = 512,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.query_dim, self.vocab_size, self.hidden = query_dim, vocab_size, hidden
        self.lin1 = nn.Linear(query_dim, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.lin2 = nn.Linear(hidden, vocab_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.norm.reset_parameters()
        self.lin2.reset_parameters()

    def forward(self, q: Tensor) -> Tensor:
        return self.lin2(self.dropout(self.act(self.norm(self.lin1(q)))))
