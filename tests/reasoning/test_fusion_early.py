import torch
import torch.nn.functional as F

from kgmm.reasoning.fusion import EarlyFusion, FusionInputs

from .test_fusion_common import (
    D_IMG,
    D_TXT,
    assert_learns_interaction,
    check_all_parameters_get_gradients,
    check_reset_parameters,
    make_inputs,
    repad,
)


def test_shapes_and_no_attention() -> None:
    torch.manual_seed(0)
    out = EarlyFusion(D_IMG, D_TXT, 16, hidden=12)(make_inputs(globals_=True))
    assert out.q.shape == (3, 16)
    assert out.attention == {} and out.per_modality == {}


def test_formula() -> None:
    torch.manual_seed(0)
    m = EarlyFusion(D_IMG, D_TXT, 5, hidden=7).eval()
    inputs = make_inputs(globals_=True)
    assert inputs.img_global is not None and inputs.txt_global is not None
    x = torch.cat([inputs.img_global, inputs.txt_global], dim=-1)
    h = F.gelu(x @ m.mlp.lin1.weight.T + m.mlp.lin1.bias) @ m.mlp.lin2.weight.T + m.mlp.lin2.bias
    expected = F.layer_norm(h, (5,))  # weight 1, bias 0 after reset
    torch.testing.assert_close(m(inputs).q, expected)


def test_mean_pools_tokens_when_globals_missing_and_honours_masks() -> None:
    torch.manual_seed(0)
    m = EarlyFusion(D_IMG, D_TXT, 16).eval()
    inputs = make_inputs()
    q = m(inputs).q
    torch.testing.assert_close(m(repad(inputs)).q, q)
    pooled = FusionInputs(img_global=inputs.image_vector(), txt_global=inputs.text_vector())
    torch.testing.assert_close(m(pooled).q, q)
    # without the mask the padding would leak in
    unmasked = FusionInputs(img_tokens=repad(inputs).img_tokens,
                            txt_tokens=repad(inputs).txt_tokens)
    assert not torch.allclose(m(unmasked).q, q)


def test_globals_take_precedence_over_tokens() -> None:
    torch.manual_seed(0)
    m = EarlyFusion(D_IMG, D_TXT, 16).eval()
    inputs = make_inputs(globals_=True)
    only_globals = FusionInputs(img_global=inputs.img_global, txt_global=inputs.txt_global)
    torch.testing.assert_close(m(inputs).q, m(only_globals).q)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    check_all_parameters_get_gradients(EarlyFusion(D_IMG, D_TXT, 16, dropout=0.0), make_inputs())


def test_reset_parameters() -> None:
    check_reset_parameters(EarlyFusion(D_IMG, D_TXT, 16))


def test_learns_a_task_that_needs_both_modalities() -> None:
    torch.manual_seed(0)
    assert_learns_interaction(EarlyFusion(D_IMG, D_TXT, 32, dropout=0.0), 32)
