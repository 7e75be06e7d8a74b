"""The VQA model: fusion → query, KG reasoning over the question's graph, answer heads.

Inputs per question (computed by frozen encoders and cached by the caller): the question's
sentence vector ``t [384]``, its contextual token embeddings ``x_{1..T}`` (with
``question_pool_heads > 0``), the image's pooled vector ``v [D_img]``, and the
:class:`~.scene_graph.ReasoningGraph`. The fused query ``q = fusion(v, [t ; z])``, with
``z = pool(x_{1..T})`` the :class:`~.fusion.MultiHeadTokenPool` summary of the tokens (or
``q = fusion(v, t)`` without it), conditions the :class:`~.kg_reasoner.KGReasoner`. Three
answer kinds:

* **entity** — a KG node: ``P(v) = gate · softmax_g(ℓ)_v`` (object names, categories, parts);
* **count** — ``n̂ = Σ_{o ∈ objects} σ(ℓ_o)``, rounded (a soft count over object nodes);
* **yes/no** — ``P(yes) = 1 − Π_{o ∈ objects} (1 − σ(ℓ_o))`` (noisy-or over object nodes);

and a small vocabulary for the answer *type* (``<count>``, ``<yesno>``) plus words outside the
KG. Loss: the reasoner's node/vocab/gate loss, ``SmoothL1(n̂, n)`` for counts and
``BCE(P(yes), y)`` for yes/no questions.

``use_kg=False`` gives the baseline of every table: the same fusion and training loop, with a
vocabulary classifier over all answers and no graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .fusion import FusionConfig, FusionInputs, MultiHeadTokenPool
from .heads import AnswerVocabulary, VocabClassifier
from .kg_reasoner import KGReasoner, KGReasonerConfig, make_reasoner_batch, reasoner_loss
from .scene_graph import GraphConfig, ReasoningGraph

COUNT = "<count>"
YESNO = "<yesno>"
NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def answer_number(text: str) -> int | None:
    """The integer an answer states (``"3"``, ``"three"``), else None."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    return NUMBER_WORDS.get(text)


@dataclass
class VQAConfig:
    """Everything needed to rebuild a :class:`VQAModel` (JSON round-trip)."""

    use_kg: bool = True
    text_dim: int = 384
    image_dim: int = 1280
    fusion: dict = field(default_factory=lambda: {"name": "early", "d_out": 256})
    reasoner: dict = field(default_factory=dict)
    graph: dict = field(default_factory=lambda: GraphConfig().to_dict())
    answers: list[str] = field(default_factory=list)  # the vocabulary, in id order
    kg_content_hash: str = ""
    text_encoder: str = "minilm"
    image_encoder: str = "efficientnet-lite0"
    image_size: int = 224
    count_weight: float = 1.0
    yesno_weight: float = 1.0
    #: heads of the question-token attention pooling (0: sentence vector only)
    question_pool_heads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VQAConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown VQA config keys {sorted(unknown)}")
        return cls(**data)


class VQAModel(nn.Module):
    """Fusion + KG reasoner + answer heads (or the no-KG baseline); see the module docstring."""

    def __init__(self, config: VQAConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab = AnswerVocabulary(config.answers[1:])  # answers[0] is the unk token
        fusion_cfg = FusionConfig.from_dict(config.fusion)
        self.token_pool = (MultiHeadTokenPool(config.text_dim, config.question_pool_heads,
                                              config.text_dim)
                           if config.question_pool_heads else None)
        text_in = config.text_dim * (2 if self.token_pool is not None else 1)
        self.fusion = fusion_cfg.build(config.image_dim, text_in)
        self.query_dim = fusion_cfg.d_out
        if config.use_kg:
            rcfg = KGReasonerConfig.from_dict({
                **config.reasoner, "node_dim": config.text_dim,
                "extra_node_dim": self.graph_config.node_extra_dim, "query_dim": self.query_dim,
                "vocab_size": len(self.vocab)})
            self.reasoner: KGReasoner | None = KGReasoner(rcfg)
            self.classifier: VocabClassifier | None = None
        else:
            self.reasoner = None
            self.classifier = VocabClassifier(self.query_dim, len(self.vocab))

    @property
    def graph_config(self) -> GraphConfig:
        return GraphConfig.from_dict(self.config.graph)

    @property
    def uses_tokens(self) -> bool:
        """Whether :meth:`forward` needs the question's token embeddings."""
        return self.token_pool is not None

    def query(self, image_vec: Tensor, text_vec: Tensor, text_tokens: Tensor | None = None,
              text_mask: Tensor | None = None) -> Tensor:
        """``q = fusion(v, [t ; pool(x)])`` (or ``fusion(v, t)``) ``[B, Dq]``."""
        if self.token_pool is not None:
            if text_tokens is None:
                raise ValueError("this model pools question tokens: pass text_tokens "
                                 "(see kgmm.reasoning.vqa_data.collate)")
            text_vec = torch.cat([text_vec, self.token_pool(text_tokens, text_mask)], dim=-1)
        return self.fusion(FusionInputs(img_global=image_vec, txt_global=text_vec)).q

    def forward(self, image_vec: Tensor, text_vec: Tensor,
                graphs: list[Data] | None = None, text_tokens: Tensor | None = None,
                text_mask: Tensor | None = None) -> dict[str, Any]:
        q = self.query(image_vec, text_vec, text_tokens, text_mask)
        if self.reasoner is None:
            return {"vocab_logits": self.classifier(q), "query": q}
        batch = make_reasoner_batch(graphs, q)
        output = self.reasoner(batch)
        sel = torch.sigmoid(output.node_logits)
        is_obj = batch.node_extra[:, 0] > 0.5
        num_graphs = q.size(0)
        count = torch.zeros(num_graphs, device=q.device).index_add(
            0, batch.batch, torch.where(is_obj, sel, torch.zeros_like(sel)))
        log_none = torch.zeros(num_graphs, device=q.device).index_add(
            0, batch.batch, torch.where(is_obj, torch.log1p(-sel.clamp(max=1 - 1e-6)),
                                        torch.zeros_like(sel)))
        return {"output": output, "batch": batch, "count": count,
                "p_yes": 1.0 - torch.exp(log_none), "query": q}

    # -- training ----------------------------------------------------------------------
    def loss(self, result: dict[str, Any], targets: dict[str, Tensor]) -> tuple[Tensor,
                                                                               dict[str, float]]:
        """Total loss and its terms (see the module docstring)."""
        if self.reasoner is None:
            loss = F.cross_entropy(result["vocab_logits"], targets["answer_id"])
            return loss, {"loss": float(loss.detach())}
        batch: Batch = result["batch"]
        vocab_targets = targets["vocab_target"]
        has_node = targets["node_targets"].new_zeros(vocab_targets.shape, dtype=torch.bool)
        has_node.index_fill_(0, batch.batch[targets["node_targets"] > 0].unique(), True)
        usable = (vocab_targets >= 0) | has_node
        gate_targets = (vocab_targets < 0).float()
        vt = torch.where(usable, vocab_targets, torch.full_like(vocab_targets, -1))
        main = reasoner_loss(result["output"], batch, targets["node_targets"], vt, gate_targets)
        terms = {"reasoner": float(main.detach())}
        loss = main
        is_count = targets["count_mask"]
        if is_count.any():
            c = F.smooth_l1_loss(result["count"][is_count].float(), targets["count"][is_count])
            loss = loss + self.config.count_weight * c
            terms["count"] = float(c.detach())
        is_yesno = targets["yesno_mask"]
        if is_yesno.any():
            p = result["p_yes"][is_yesno].float().clamp(1e-6, 1 - 1e-6)
            y = F.binary_cross_entropy(p, targets["yes"][is_yesno])
            loss = loss + self.config.yesno_weight * y
            terms["yesno"] = float(y.detach())
        terms["loss"] = float(loss.detach())
        return loss, terms

    # -- decoding ----------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, result: dict[str, Any], graphs: list[ReasoningGraph], labels: Any,
               k: int = 5) -> list[list[tuple[str, float, int | None]]]:
        """Top-``k`` answers per question: ``(text, probability, KG index or None)``.

        ``labels(kg_index) -> str`` names a KG node.
        """
        if self.reasoner is None:
            probs = torch.softmax(result["vocab_logits"], dim=-1)
            out = []
            for row in probs:
                top = torch.topk(row, min(k, row.numel()))
                out.append([(self.vocab.itos[i], float(p), None)
                            for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                            strict=True) if self.vocab.itos[i] != self.vocab.unk])
            return out
        output, batch = result["output"], result["batch"]
        answers: list[list[tuple[str, float, int | None]]] = []
        gate = output.gate.tolist()
        vocab_p = torch.softmax(output.vocab_logits, dim=-1)
        for g, graph in enumerate(graphs):
            mask = batch.batch == g
            logits = output.node_logits[mask]
            node_p = torch.softmax(logits, dim=0) * gate[g]
            kg_index = graph.kg_index.tolist()
            scored: dict[str, tuple[float, int | None]] = {}
            for p, i in zip(*[t.tolist() for t in torch.topk(node_p, min(k * 2, len(node_p)))],
                            strict=True):
                if kg_index[i] < 0:
                    continue
                text = labels(kg_index[i])
                if text not in scored or scored[text][0] < p:
                    scored[text] = (p, kg_index[i])
            for word_id, p in enumerate(vocab_p[g].tolist()):
                word = self.vocab.itos[word_id]
                p = p * (1.0 - gate[g])
                if word == self.vocab.unk:
                    continue
                if word == COUNT:
                    word = str(round(float(result["count"][g])))
                elif word == YESNO:
                    py = float(result["p_yes"][g])
                    word, p = ("yes", p * py) if py >= 0.5 else ("no", p * (1 - py))
                if word not in scored or scored[word][0] < p:
                    scored[word] = (p, None)
            ranked = sorted(scored.items(), key=lambda kv: -kv[1][0])[:k]
            answers.append([(text, p, idx) for text, (p, idx) in ranked])
        return answers

    # -- persistence -------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """``config.json`` + ``model.safetensors`` (no pickle)."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        save_model(self, str(directory / "model.safetensors"))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> VQAModel:
        from safetensors.torch import load_model

        directory = Path(directory)
        model = cls(VQAConfig.from_dict(json.loads((directory / "config.json").read_text())))
        load_model(model, str(directory / "model.safetensors"))
        return model.eval()
