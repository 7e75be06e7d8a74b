import pytest
import torch

from kgmm.reasoning.alignment import (
    ALIGNMENT_LOSSES,
    AdversarialAlignment,
    CombinedAlignment,
    InfoNCELoss,
    L2Alignment,
    TripletMarginLoss,
    build_alignment,
)


@pytest.mark.parametrize(("name", "cls"), [("info_nce", InfoNCELoss),
                                           ("triplet", TripletMarginLoss),
                                           ("adversarial", AdversarialAlignment),
                                           ("l2", L2Alignment)])
def test_build_alignment_by_name(name: str, cls: type) -> None:
    torch.manual_seed(0)
    loss = build_alignment(name, 6)
    assert type(loss) is cls
    out = loss(torch.randn(4, 6), torch.randn(4, 6))
    value = out.loss if name == "adversarial" else out
    assert value.shape == () and torch.isfinite(value)


def test_options_and_dim_are_passed() -> None:
    adv = build_alignment("adversarial", 12, hidden=5, grl_lambda=0.25)
    assert isinstance(adv, AdversarialAlignment)
    assert adv.discriminator[0].in_features == 12 and adv.discriminator[0].out_features == 5
    assert adv.grl.lambd == 0.25
    trip = build_alignment("triplet", 12, margin=0.7, mining="semi_hard")
    assert isinstance(trip, TripletMarginLoss) and (trip.margin, trip.mining) == (0.7, "semi_hard")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="'info_nce', 'triplet', 'adversarial', 'l2'"):
        build_alignment("mmd", 4)
    assert set(ALIGNMENT_LOSSES) == {"info_nce", "triplet", "adversarial", "l2"}


def test_combined_is_the_weighted_sum_and_reports_every_term() -> None:
    torch.manual_seed(0)
    combined = CombinedAlignment.from_weights(
        {"info_nce": 1.0, "triplet": 0.5, "adversarial": 0.1, "l2": 2.0}, 6,
        options={"info_nce": {"temperature": 0.5}, "triplet": {"margin": 0.3}})
    z_a, z_b = torch.randn(5, 6), torch.randn(5, 6)
    targets = torch.tensor([0, 1, 1, 2, 3])
    total, terms = combined(z_a, z_b, targets)
    parts = combined.terms
    expected = (parts["info_nce"](z_a, z_b, targets) + 0.5 * parts["triplet"](z_a, z_b, targets)
                + 0.1 * parts["adversarial"](z_a, z_b).loss + 2.0 * parts["l2"](z_a, z_b))
    torch.testing.assert_close(total, expected)
    assert set(terms) == {"info_nce", "triplet", "adversarial", "adversarial_accuracy", "l2"}
    torch.testing.assert_close(terms["l2"], parts["l2"](z_a, z_b))
    assert all(not v.requires_grad for v in terms.values())
    names = {n for n, _ in combined.named_parameters()}
    assert "terms.info_nce.log_scale" in names
    assert any(n.startswith("terms.adversarial.discriminator") for n in names)


def test_weights_can_be_changed() -> None:
    torch.manual_seed(0)
    combined = CombinedAlignment({"l2": (L2Alignment(), 1.0), "again": (L2Alignment(), 0.0)})
    z_a, z_b = torch.randn(3, 4), torch.randn(3, 4)
    single = L2Alignment()(z_a, z_b)
    torch.testing.assert_close(combined(z_a, z_b)[0], single)
    combined.weights["again"] = 3.0
    torch.testing.assert_close(combined(z_a, z_b)[0], 4 * single)


def test_combined_reset_and_validation() -> None:
    combined = CombinedAlignment.from_weights({"info_nce": 1.0, "l2": 1.0}, 4)
    info = combined.terms["info_nce"]
    assert isinstance(info, InfoNCELoss)
    with torch.no_grad():
        info.log_scale.fill_(0.0)
    combined.reset_parameters()
    assert info.scale.item() == pytest.approx(1 / 0.07)
    with pytest.raises(ValueError, match="at least one"):
        CombinedAlignment({})
