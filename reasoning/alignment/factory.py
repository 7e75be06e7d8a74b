"""Build alignment losses by name; combine several with weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .adversarial import AdversarialAlignment, AdversarialOutput
from .info_nce import InfoNCELoss
from .l2 import L2Alignment
from .triplet import TripletMarginLoss

__all__ = ["ALIGNMENT_LOSSES", "CombinedAlignment", "build_alignment"]

#: Alignment loss classes by name.
ALIGNMENT_LOSSES: dict[str, type[nn.Module]] = {
    "info_nce": InfoNCELoss,
    "triplet": TripletMarginLoss,
    "adversarial": AdversarialAlignment,
    "l2": L2Alignment,
}


def build_alignment(name: str, dim: int, **kwargs: Any) -> nn.Module:
    """Instantiate the alignment loss ``name`` (one of ``ALIGNMENT_LOSSES``).

    ``dim`` is the embedding size; only ``"adversarial"`` (its discriminator) uses it.
    ``kwargs`` go to the constructor unchanged.
    """
    try:
        cls = ALIGNMENT_LOSSES[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in ALIGNMENT_LOSSES)
        raise ValueError(f"unknown alignment loss {name!r}; valid names: {valid}") from None
    if cls is AdversarialAlignment:
        return cls(dim, **kwargs)
    return cls(**kwargs)


class CombinedAlignment(nn.Module):
    r"""Weighted sum of alignment losses.

    .. math::
        \mathcal{L} = \sum_k \lambda_k \mathcal{L}_k(\mathbf{z}_a, \mathbf{z}_b)

    Every term is called as ``term(z_a, z_b, targets)`` (``z_a`` = image side for the
    adversarial term). ``forward`` returns ``(total, terms)`` where ``terms`` maps each
    name to its unweighted, detached value, plus ``"<name>_accuracy"`` for adversarial terms.

    Args:
        terms: name -> ``(loss module, weight)``. Weights live in ``self.weights`` and may be
            changed (scheduled) during training.
    """

    def __init__(self, terms: Mapping[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CombinedAlignment needs at least one term")
        self.terms = nn.ModuleDict({name: module for name, (module, _) in terms.items()})
        self.weights: dict[str, float] = {name: float(w) for name, (_, w) in terms.items()}

    @classmethod
    def from_weights(cls, weights: Mapping[str, float], dim: int,
                     options: Mapping[str, Mapping[str, Any]] | None = None,
                     ) -> CombinedAlignment:
        """Build from ``{loss name: weight}``; ``options[name]`` go to that loss."""
        options = options or {}
        return cls({name: (build_alignment(name, dim, **options.get(name, {})), w)
                    for name, w in weights.items()})

    def reset_parameters(self) -> None:
        for term in self.terms.values():
            term.reset_parameters()

    def forward(self, z_a: Tensor, z_b: Tensor,
                targets: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        values: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            out = term(z_a, z_b, targets)
            if isinstance(out, AdversarialOutput):
                values[f"{name}_accuracy"] = out.accuracy
                out = out.loss
            values[name] = out.detach()
            weighted = self.weights[name] * out
            total = weighted if total is None else total + weighted
        assert total is not None
        return total, values

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
