import torch

from kgmm.reasoning.fusion import LateFusion

from .test_fusion_common import (
    D_IMG,
    D_TXT,
    assert_learns_interaction,
    check_all_parameters_get_gradients,
    check_reset_parameters,
    make_inputs,
    repad,
)


def test_shapes_weights_and_per_modality_predictions() -> None:
    torch.manual_seed(0)
    out = LateFusion(D_IMG, D_TXT, 16, hidden=10).eval()(make_inputs(globals_=True))
    assert out.q.shape == (3, 16)
    w = out.attention["modality"]
    assert w.shape == (3, 2) and (w > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    assert set(out.per_modality) == {"image", "text"}
    assert all(p.shape == (3, 16) for p in out.per_modality.values())


def test_q_is_the_weighted_sum_of_the_heads() -> None:
    torch.manual_seed(0)
    m = LateFusion(D_IMG, D_TXT, 16).eval()
    inputs = make_inputs(globals_=True)
    out = m(inputs)
    p_img = m.head_img(inputs.img_global)
    p_txt = m.head_txt(inputs.txt_global)
    torch.testing.assert_close(out.per_modality["image"], p_img)
    torch.testing.assert_close(out.per_modality["text"], p_txt)
    gate_in = torch.cat([inputs.img_global, inputs.txt_global], -1)  # type: ignore[list-item]
    w = torch.softmax(m.gate(gate_in), -1)
    torch.testing.assert_close(out.attention["modality"], w)
    torch.testing.assert_close(out.q, w[:, :1] * p_img + w[:, 1:] * p_txt)


def test_masks_honoured() -> None:
    torch.manual_seed(0)
    m = LateFusion(D_IMG, D_TXT, 16).eval()
    inputs = make_inputs()
    a, b = m(inputs), m(repad(inputs))
    torch.testing.assert_close(a.q, b.q)
    torch.testing.assert_close(a.attention["modality"], b.attention["modality"])


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    check_all_parameters_get_gradients(LateFusion(D_IMG, D_TXT, 16, dropout=0.0), make_inputs())


def test_reset_parameters() -> None:
    check_reset_parameters(LateFusion(D_IMG, D_TXT, 16))


def test_learns_a_task_that_needs_both_modalities() -> None:
    torch.manual_seed(0)
    assert_learns_interaction(LateFusion(D_IMG, D_TXT, 32, dropout=0.0), 32)


def test_training_starts_from_an_even_mix() -> None:
    torch.manual_seed(0)
    w = LateFusion(D_IMG, D_TXT, 16).eval()(make_inputs(globals_=True)).attention["modality"]
    torch.testing.assert_close(w, torch.full((3, 2), 0.5), atol=0.02, rtol=0)
