"""Alignment losses between image and text embeddings.

Every loss is called as ``loss(z_a, z_b, targets=None)``; all but ``AdversarialAlignment``
(which returns ``AdversarialOutput(loss, accuracy)``) return a scalar tensor.
"""

from .adversarial import AdversarialAlignment, AdversarialOutput, GradientReversal, grad_reverse
from .factory import ALIGNMENT_LOSSES, CombinedAlignment, build_alignment
from .info_nce import InfoNCELoss
from .l2 import L2Alignment
from .triplet import TripletMarginLoss, pairwise_distance

__all__ = [
    "ALIGNMENT_LOSSES",
    "AdversarialAlignment",
    "AdversarialOutput",
    "CombinedAlignment",
    "GradientReversal",
    "InfoNCELoss",
    "L2Alignment",
    "TripletMarginLoss",
    "build_alignment",
    "grad_reverse",
    "pairwise_distance",
]
