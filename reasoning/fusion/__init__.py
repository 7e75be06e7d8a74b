"""Fusion of image and question features into one query vector.

All modules share one call: ``module(FusionInputs(...)) -> FusionOutput``.
"""

from .attention import AttentionFusion
from .co_attention import AttentionPooling, CoAttentionFusion, CoAttentionLayer, CrossAttention
from .early import (
    EarlyFusion,
    FeedForward,
    FusionInputs,
    FusionOutput,
    masked_mean,
    masked_softmax,
)
from .factory import FUSION_MODULES, FusionConfig, build_fusion
from .late import LateFusion
from .token_pool import MultiHeadTokenPool

__all__ = [
    "FUSION_MODULES",
    "AttentionFusion",
    "AttentionPooling",
    "CoAttentionFusion",
    "CoAttentionLayer",
    "CrossAttention",
    "EarlyFusion",
    "FeedForward",
    "FusionConfig",
    "FusionInputs",
    "FusionOutput",
    "LateFusion",
    "MultiHeadTokenPool",
    "build_fusion",
    "masked_mean",
    "masked_softmax",
]
