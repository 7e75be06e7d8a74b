import math

import pytest
import torch

from kgmm.reasoning.fusion import AttentionFusion, FusionInputs

from .test_fusion_common import (
    D_IMG,
    D_TXT,
    P,
    T,
    assert_learns_interaction,
    check_all_parameters_get_gradients,
    check_reset_parameters,
    make_inputs,
    repad,
)


def test_shapes_globals_only() -> None:
    torch.manual_seed(0)
    out = AttentionFusion(D_IMG, D_TXT, 16)(make_inputs(globals_=True))
    assert out.q.shape == (3, 16)
    assert out.attention["weights"].shape == (3, 2)
    assert torch.equal(out.attention["global"], out.attention["weights"])
    torch.testing.assert_close(out.attention["weights"].sum(-1), torch.ones(3))


def test_shapes_with_tokens() -> None:
    torch.manual_seed(0)
    out = AttentionFusion(D_IMG, D_TXT, 16, use_tokens=True)(make_inputs())
    assert out.q.shape == (3, 16)
    assert out.attention["weights"].shape == (3, 2 + P + T)
    assert out.attention["img_tokens"].shape == (3, P)
    assert out.attention["txt_tokens"].shape == (3, T)


def test_hand_computed_attention() -> None:
    m = AttentionFusion(2, 2, 2, hidden=2)
    with torch.no_grad():
        m.proj_img.weight.copy_(torch.eye(2))
        m.proj_img.bias.zero_()
        m.proj_txt.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swap
        m.proj_txt.bias.zero_()
        m.score[0].weight.copy_(torch.eye(2))
        m.score[0].bias.zero_()
        m.score[1].weight.copy_(2 * torch.eye(2))
        m.score[1].bias.copy_(torch.tensor([0.5, 0.0]))
        m.w.copy_(torch.tensor([1.0, -1.0]))
    out = m(FusionInputs(img_global=torch.tensor([[1.0, 0.5]]),
                         txt_global=torch.tensor([[0.2, -1.0]])))
    x1, x2 = (1.0, 0.5), (-1.0, 0.2)  # projected image, projected (swapped) text
    e1 = math.tanh(1.0) - math.tanh(0.5)
    e2 = math.tanh(2 * -1.0 + 0.5) - math.tanh(2 * 0.2)
    a1 = math.exp(e1) / (math.exp(e1) + math.exp(e2))
    a2 = 1.0 - a1
    torch.testing.assert_close(out.attention["weights"], torch.tensor([[a1, a2]]))
    q = [a1 * x1[0] + a2 * x2[0], a1 * x1[1] + a2 * x2[1]]
    torch.testing.assert_close(out.q, torch.tensor([q]))


def test_masked_tokens_get_zero_weight_and_the_rest_sums_to_one() -> None:
    torch.manual_seed(0)
    m = AttentionFusion(D_IMG, D_TXT, 16, use_tokens=True).eval()
    inputs = make_inputs()
    assert inputs.img_mask is not None and inputs.txt_mask is not None
    att = m(inputs).attention
    assert (att["img_tokens"][~inputs.img_mask] == 0).all()
    assert (att["txt_tokens"][~inputs.txt_mask] == 0).all()
    assert (att["img_tokens"][inputs.img_mask] > 0).all()
    torch.testing.assert_close(att["weights"].sum(-1), torch.ones(3))


@pytest.mark.parametrize("use_tokens", [False, True])
def test_changing_padding_changes_nothing(use_tokens: bool) -> None:
    torch.manual_seed(0)
    m = AttentionFusion(D_IMG, D_TXT, 16, use_tokens=use_tokens).eval()
    inputs = make_inputs()
    a, b = m(inputs), m(repad(inputs))
    torch.testing.assert_close(a.q, b.q)
    torch.testing.assert_close(a.attention["weights"], b.attention["weights"])


def test_token_mode_needs_tokens() -> None:
    m = AttentionFusion(D_IMG, D_TXT, 16, use_tokens=True)
    with pytest.raises(ValueError, match="needs img_tokens"):
        m(FusionInputs(img_global=torch.zeros(1, D_IMG), txt_global=torch.zeros(1, D_TXT)))


def test_attention_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    m = AttentionFusion(D_IMG, D_TXT, 16, use_tokens=True, dropout=0.5)
    inputs = make_inputs()
    m.eval()
    torch.testing.assert_close(m(inputs).q, m(inputs).q)
    m.train()
    assert not torch.allclose(m(inputs).q, m(inputs).q)


@pytest.mark.parametrize("use_tokens", [False, True])
def test_gradients_reach_every_parameter(use_tokens: bool) -> None:
    torch.manual_seed(0)
    m = AttentionFusion(D_IMG, D_TXT, 16, use_tokens=use_tokens)
    check_all_parameters_get_gradients(m, make_inputs())


def test_reset_parameters() -> None:
    check_reset_parameters(AttentionFusion(D_IMG, D_TXT, 16, use_tokens=True))


@pytest.mark.parametrize("use_tokens", [False, True])
def test_learns_a_task_that_needs_both_modalities(use_tokens: bool) -> None:
    torch.manual_seed(0)
    assert_learns_interaction(AttentionFusion(D_IMG, D_TXT, 32, use_tokens=use_tokens), 32)
