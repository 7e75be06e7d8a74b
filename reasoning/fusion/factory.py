"""Build a fusion module by name; ``FusionConfig`` round-trips through a JSON dict."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from .attention import AttentionFusion
from .co_attention import CoAttentionFusion
from .early import EarlyFusion
from .late import LateFusion

__all__ = ["FUSION_MODULES", "FusionConfig", "build_fusion"]

#: Fusion module classes by name.
FUSION_MODULES: dict[str, type[nn.Module]] = {
    "early": EarlyFusion,
    "late": LateFusion,
    "attention": AttentionFusion,
    "co_attention": CoAttentionFusion,
}


def _check_name(name: str) -> type[nn.Module]:
    try:
        return FUSION_MODULES[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in FUSION_MODULES)
        raise ValueError(f"unknown fusion {name!r}; valid names: {valid}") from None


def build_fusion(name: str, d_img: int, d_txt: int, d_out: int, **kwargs: Any) -> nn.Module:
    """Instantiate the fusion module ``name`` (one of ``FUSION_MODULES``).

    ``kwargs`` go to the module's constructor unchanged (an argument it does not take raises
    ``TypeError``); use :meth:`FusionConfig.build` to pass only the relevant options.
    """
    return _check_name(name)(d_img, d_txt, d_out, **kwargs)


@dataclass
class FusionConfig:
    """Configuration of a fusion module; ``to_dict()`` is JSON-serialisable.

    ``build()`` passes each module only the options it takes: ``hidden`` and ``dropout`` to
    all, ``use_tokens`` to ``"attention"``, ``heads`` and ``layers`` (as ``n_layers``) to
    ``"co_attention"``.
    """

    name: str = "co_attention"
    d_out: int = 256
    hidden: int | None = None
    dropout: float = 0.1
    heads: int = 4
    layers: int = 1
    use_tokens: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FusionConfig keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def build(self, d_img: int, d_txt: int) -> nn.Module:
        """The configured module for image features ``d_img`` and text features ``d_txt``."""
        options = {"hidden": self.hidden, "dropout": self.dropout, "heads": self.heads,
                   "n_layers": self.layers, "use_tokens": self.use_tokens}
        accepted = inspect.signature(_check_name(self.name)).parameters
        kwargs = {k: v for k, v in options.items() if k in accepted}
        return build_fusion(self.name, d_img, d_txt, self.d_out, **kwargs)
