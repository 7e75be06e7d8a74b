import math

import pytest
import torch

from kgmm.reasoning.alignment import TripletMarginLoss

from .test_alignment_common import assert_aligns, train_alignment

# Euclidean distances D[i, j] = d(A[i], B[j]) of this example:
#   [[1,  3,    2  ],
#    [√2, 2,    √5 ],
#    [2,  3√2,  1  ]]
A = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
B = torch.tensor([[0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])


def test_hardest_negative_hand_computed() -> None:
    loss = TripletMarginLoss(margin=1.5, distance="euclidean", symmetric=False)
    terms = [1.5 + 1 - 2, 1.5 + 2 - math.sqrt(2), 1.5 + 1 - 2]
    torch.testing.assert_close(loss(A, B), torch.tensor(sum(terms) / 3))


def test_semi_hard_negative_hand_computed() -> None:
    loss = TripletMarginLoss(margin=1.5, distance="euclidean", mining="semi_hard",
                             symmetric=False)
    # anchor 1: the closest negative farther than the positive (2) is √5, not √2
    terms = [1.5 + 1 - 2, 1.5 + 2 - math.sqrt(5), 1.5 + 1 - 2]
    torch.testing.assert_close(loss(A, B), torch.tensor(sum(terms) / 3))


def test_semi_hard_falls_back_to_the_farthest_negative() -> None:
    a = torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    b = torch.tensor([[5.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    # anchor 0: pos 5, negatives 1, 2 both closer -> farthest, 2:  1 + 5 - 2 = 4
    # anchor 1: pos 9, negatives 5, 8 both closer -> farthest, 8:  1 + 9 - 8 = 2
    # anchor 2: pos 18, negatives 15, 19 -> the closest farther one, 19: max(0, 1 + 18 - 19) = 0
    semi = TripletMarginLoss(margin=1.0, distance="euclidean", mining="semi_hard",
                             symmetric=False)
    torch.testing.assert_close(semi(a, b), torch.tensor((4 + 2 + 0) / 3))
    hardest = TripletMarginLoss(margin=1.0, distance="euclidean", symmetric=False)
    torch.testing.assert_close(hardest(a, b), torch.tensor((5 + 5 + 4) / 3))


def test_zero_when_margins_are_met() -> None:
    z = torch.eye(4)
    for mining in ("hardest", "semi_hard"):
        loss = TripletMarginLoss(margin=0.5, mining=mining)  # type: ignore[arg-type]
        assert loss(z, 2 * z).item() == 0.0  # cosine: pos 0, negatives 1 > 0 + 0.5
    assert TripletMarginLoss(margin=1.5)(z, 2 * z).item() == pytest.approx(0.5)


def test_cosine_distance_hand_computed() -> None:
    loss = TripletMarginLoss(margin=0.2, distance="cosine", symmetric=False)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    r = 1 / math.sqrt(2)
    # anchor 0: pos 1-r, neg 1;  anchor 1: pos 0, neg 1-r
    expected = (max(0.0, 0.2 + (1 - r) - 1) + max(0.0, 0.2 + 0 - (1 - r))) / 2
    torch.testing.assert_close(loss(a, b), torch.tensor(expected))


def test_symmetric_is_the_mean_of_both_directions() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    for distance in ("cosine", "euclidean"):
        sym = TripletMarginLoss(margin=0.3, distance=distance)  # type: ignore[arg-type]
        one = TripletMarginLoss(margin=0.3, distance=distance,  # type: ignore[arg-type]
                                symmetric=False)
        torch.testing.assert_close(sym(a, b), 0.5 * (one(a, b) + one(b, a)))


def test_targets_exclude_duplicates_from_the_negatives() -> None:
    loss = TripletMarginLoss(margin=0.5, symmetric=False)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert loss(a, b).item() == pytest.approx(2 * 0.5 / 3)  # the twins are "negatives"
    assert loss(a, b, torch.tensor([0, 0, 1])).item() == 0.0
    # no negatives at all: zero, and still differentiable
    a.requires_grad_(True)
    out = loss(a, b, torch.tensor([3, 3, 3]))
    out.backward()
    assert out.item() == 0.0 and a.grad is not None


def test_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="mining"):
        TripletMarginLoss(mining="easy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distance"):
        TripletMarginLoss(distance="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="paired"):
        TripletMarginLoss()(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="targets must be"):
        TripletMarginLoss()(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1))


@pytest.mark.parametrize(("distance", "mining", "margin"), [
    ("cosine", "hardest", 0.2), ("cosine", "semi_hard", 0.2), ("euclidean", "hardest", 1.0)])
def test_training_aligns_rotated_views(distance: str, mining: str, margin: float) -> None:
    torch.manual_seed(0)
    loss = TripletMarginLoss(margin=margin, distance=distance,  # type: ignore[arg-type]
                             mining=mining)  # type: ignore[arg-type]
    assert_aligns(*train_alignment(loss, []))
