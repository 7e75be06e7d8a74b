import math

import pytest
import torch
import torch.nn.functional as F

from kgmm.reasoning.alignment import InfoNCELoss

from .test_alignment_common import assert_aligns, train_alignment


def test_initial_scale_and_clamp() -> None:
    loss = InfoNCELoss()
    torch.testing.assert_close(loss.log_scale.detach(), torch.tensor(math.log(1 / 0.07)))
    torch.testing.assert_close(loss.scale.detach(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        loss.log_scale.fill_(10.0)
    torch.testing.assert_close(loss.scale.detach(), torch.tensor(100.0))
    z = torch.randn(4, 3)
    loss(z, z + 0.1 * torch.randn(4, 3)).backward()
    assert loss.log_scale.grad is not None and loss.log_scale.grad == 0  # clamped: no gradient


def test_hand_computed_two_by_two() -> None:
    loss = InfoNCELoss(temperature=0.5)  # scale 2
    z_a = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    z_b = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    r = 1 / math.sqrt(2)
    # logits = 2 * [[1, r], [0, r]]
    row0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(2 * r)))
    row1 = -math.log(math.exp(2 * r) / (math.exp(0) + math.exp(2 * r)))
    col0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0)))
    col1 = math.log(2.0)  # both entries of the column are 2r
    expected = 0.5 * ((row0 + row1) / 2 + (col0 + col1) / 2)
    torch.testing.assert_close(loss(z_a, z_b), torch.tensor(expected))


def test_random_features_at_temperature_one_give_log_batch() -> None:
    torch.manual_seed(0)
    loss = InfoNCELoss(temperature=1.0)
    b = 8
    value = loss(torch.randn(b, 512), torch.randn(b, 512)).item()
    assert abs(value - math.log(b)) < 0.05


def test_aligned_separated_pairs_at_high_scale_give_zero() -> None:
    loss = InfoNCELoss(temperature=0.01)  # scale 100
    z = torch.eye(6)
    assert loss(z, 3 * z).item() < 1e-12
    assert loss(z, z.roll(1, dims=0)).item() > 50  # every pair swapped: huge loss


def test_unique_targets_equal_the_plain_loss() -> None:
    torch.manual_seed(0)
    z_a, z_b = torch.randn(5, 4), torch.randn(5, 4)
    for mode in ("sum", "mean"):
        loss = InfoNCELoss(multi_positive=mode)  # type: ignore[arg-type]
        torch.testing.assert_close(loss(z_a, z_b, torch.tensor([7, 3, 1, 0, 9])), loss(z_a, z_b))


def _hand_multi_positive(logits: torch.Tensor, pos: torch.Tensor, mode: str) -> float:
    total = 0.0
    for mat in (logits, logits.T):
        for i in range(mat.shape[0]):
            denom = sum(math.exp(v) for v in mat[i].tolist())
            p = [math.exp(mat[i, j].item()) / denom for j in range(mat.shape[1]) if pos[i, j]]
            total += -math.log(sum(p)) if mode == "sum" else -sum(map(math.log, p)) / len(p)
    return total / (2 * logits.shape[0])


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_multi_positive_hand_computed(mode: str) -> None:
    torch.manual_seed(0)
    loss = InfoNCELoss(temperature=0.5, multi_positive=mode)  # type: ignore[arg-type]
    z_a, z_b = torch.randn(4, 3), torch.randn(4, 3)
    targets = torch.tensor([0, 1, 0, 2])  # items 0 and 2 show the same entity
    logits = 2 * F.normalize(z_a, dim=-1) @ F.normalize(z_b, dim=-1).T
    pos = targets[:, None] == targets[None, :]
    expected = _hand_multi_positive(logits, pos, mode)
    torch.testing.assert_close(loss(z_a, z_b, targets), torch.tensor(expected))


def test_duplicates_are_not_negatives() -> None:
    # two images of the same entity paired with two identical captions
    z_a = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    z_b = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    loss = InfoNCELoss(temperature=0.01)
    plain = loss(z_a, z_b).item()
    assert plain > 0.3  # the twin is punished as a negative
    assert loss(z_a, z_b, torch.tensor([4, 4, 5])).item() < 1e-6  # sum: nothing to fix
    mean = InfoNCELoss(temperature=0.01, multi_positive="mean")
    # mean: the optimum spreads probability evenly over the positives (log 2 per such row)
    assert mean(z_a, z_b, torch.tensor([4, 4, 5])).item() < math.log(2) * 2 / 3 + 0.05


def test_fixed_temperature_is_a_buffer() -> None:
    loss = InfoNCELoss(temperature=0.2, learnable=False)
    assert list(loss.parameters()) == []
    assert "log_scale" in dict(loss.named_buffers())


def test_reset_parameters_restores_the_initial_scale() -> None:
    loss = InfoNCELoss(temperature=0.1)
    with torch.no_grad():
        loss.log_scale.add_(1.0)
    loss.reset_parameters()
    torch.testing.assert_close(loss.log_scale.detach(), torch.tensor(math.log(10.0)))


def test_rejects_unpaired_batches_and_bad_options() -> None:
    with pytest.raises(ValueError, match="paired"):
        InfoNCELoss()(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="targets must be"):
        InfoNCELoss()(torch.zeros(3, 2), torch.zeros(3, 2), torch.arange(4))
    with pytest.raises(ValueError, match="multi_positive"):
        InfoNCELoss(multi_positive="max")  # type: ignore[arg-type]


def test_training_aligns_rotated_views() -> None:
    torch.manual_seed(0)
    loss = InfoNCELoss()
    before, after = train_alignment(loss, list(loss.parameters()))
    assert_aligns(before, after)
    assert loss.scale.item() > 1 / 0.07  # the learnable scale sharpened
