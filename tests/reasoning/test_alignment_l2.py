import pytest
import torch
import torch.nn.functional as F

from kgmm.reasoning.alignment import CombinedAlignment, L2Alignment

from .test_alignment_common import DIM, assert_aligns, train_alignment


def test_hand_computed_values() -> None:
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert L2Alignment(normalize=False)(a, b).item() == pytest.approx((25 + 5) / 2)
    a2 = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    b2 = torch.tensor([[0.0, 5.0], [3.0, 0.0]])
    assert L2Alignment()(a2, b2).item() == pytest.approx((2 + 0) / 2)


def test_normalised_equals_two_minus_two_cosine() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(7, 5), torch.randn(7, 5)
    expected = (2 - 2 * F.cosine_similarity(a, b)).mean()
    torch.testing.assert_close(L2Alignment()(a, b), expected)


def test_zero_for_identical_and_targets_ignored() -> None:
    torch.manual_seed(0)
    a = torch.randn(4, 3)
    assert L2Alignment()(a, 2 * a).item() == pytest.approx(0.0, abs=1e-6)
    assert L2Alignment(normalize=False)(a, a, torch.arange(4)).item() == 0.0


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="paired"):
        L2Alignment()(torch.zeros(3, 2), torch.zeros(2, 2))


def test_gradient() -> None:
    a = torch.tensor([[1.0, 2.0]], requires_grad=True)
    L2Alignment(normalize=False)(a, torch.zeros(1, 2)).backward()
    assert a.grad is not None and a.grad.tolist() == [[2.0, 4.0]]


@pytest.mark.parametrize("normalize", [True, False])
def test_pulls_a_tower_onto_a_frozen_one(normalize: bool) -> None:
    # alone, L2 has no negatives (both towers could collapse), so one tower is frozen
    torch.manual_seed(0)
    before, after = train_alignment(L2Alignment(normalize=normalize), [], freeze_a=True)
    assert_aligns(before, after)


def test_as_a_regulariser_next_to_info_nce() -> None:
    torch.manual_seed(0)
    combined = CombinedAlignment.from_weights({"info_nce": 1.0, "l2": 1.0}, DIM)
    assert_aligns(*train_alignment(combined, list(combined.parameters())))
