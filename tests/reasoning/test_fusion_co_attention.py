import math

import pytest
import torch
from torch import Tensor

from kgmm.reasoning.fusion import CoAttentionFusion, CrossAttention, FusionInputs

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


def _model(**kwargs: int | float) -> CoAttentionFusion:
    torch.manual_seed(0)
    options: dict = {"hidden": 8, "heads": 2, "n_layers": 1, "dropout": 0.0, **kwargs}
    return CoAttentionFusion(D_IMG, D_TXT, 12, **options).eval()


def test_shapes() -> None:
    out = _model(n_layers=2)(make_inputs())
    assert out.q.shape == (3, 12)
    att = out.attention
    assert att["txt2img"].shape == (3, 2, T, P)
    assert att["img2txt"].shape == (3, 2, P, T)
    assert att["txt2img_0"].shape == (3, 2, T, P)  # the earlier layer
    assert att["txt_pool"].shape == (3, T) and att["img_pool"].shape == (3, P)
    assert set(att) == {"txt2img", "img2txt", "txt2img_0", "img2txt_0", "txt_pool", "img_pool"}


def test_attention_maps_respect_masks() -> None:
    inputs = make_inputs()
    assert inputs.img_mask is not None and inputs.txt_mask is not None
    img_mask, txt_mask = inputs.img_mask, inputs.txt_mask
    att = _model(n_layers=2)(inputs).attention
    for key in ("txt2img", "txt2img_0"):  # keys are patches
        a = att[key]
        assert (a.masked_select(~img_mask[:, None, None, :].expand_as(a)) == 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(3, 2, T))
    a = att["img2txt"]  # keys are tokens
    assert (a.masked_select(~txt_mask[:, None, None, :].expand_as(a)) == 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 2, P))
    assert (att["txt_pool"][~txt_mask] == 0).all() and (att["img_pool"][~img_mask] == 0).all()
    torch.testing.assert_close(att["txt_pool"].sum(-1), torch.ones(3))
    torch.testing.assert_close(att["img_pool"].sum(-1), torch.ones(3))


def test_changing_padding_changes_nothing() -> None:
    m = _model(n_layers=2)
    inputs = make_inputs()
    a, b = m(inputs), m(repad(inputs))
    torch.testing.assert_close(a.q, b.q)
    for key in ("txt_pool", "img_pool"):
        torch.testing.assert_close(a.attention[key], b.attention[key])
    valid = inputs.txt_mask[:, None, :, None]  # type: ignore[index]
    torch.testing.assert_close(a.attention["txt2img"] * valid, b.attention["txt2img"] * valid)


def test_padding_with_nan_is_harmless() -> None:
    m = _model()
    inputs = make_inputs()
    q = m(repad(inputs, scale=float("nan"))).q
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q, m(inputs).q)


def _hand_attention(att: CrossAttention, x: Tensor, y: Tensor, y_mask: Tensor) -> Tensor:
    """softmax(Q_h K_h^T / sqrt(d_h)) over real keys, head by head, with plain loops."""
    b, n, d = x.shape
    d_h = d // att.heads
    out = torch.zeros(b, att.heads, n, y.shape[1])
    for s in range(b):
        q = x[s] @ att.q.weight.T + att.q.bias
        k = y[s] @ att.k.weight.T + att.k.bias
        for h in range(att.heads):
            cols = slice(h * d_h, (h + 1) * d_h)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(d_h)
            scores[:, ~y_mask[s]] = float("-inf")
            out[s, h] = torch.softmax(scores, dim=-1)
    return out


def test_attention_maps_match_hand_computation() -> None:
    m = _model()
    inputs = make_inputs()
    att = m(inputs).attention
    img, img_mask, txt, txt_mask = inputs.require_tokens()
    t0, i0 = m.proj_txt(txt), m.proj_img(img)
    layer = m.layers[0]
    torch.testing.assert_close(att["txt2img"], _hand_attention(layer.t2i, t0, i0, img_mask))
    torch.testing.assert_close(att["img2txt"], _hand_attention(layer.i2t, i0, t0, txt_mask))


def test_cross_attention_output_formula() -> None:
    torch.manual_seed(0)
    att = CrossAttention(4, 2)
    x, y = torch.randn(1, 3, 4), torch.randn(1, 2, 4)
    mask = torch.tensor([[True, False]])  # a single real key: every query copies its value
    out, a = att(x, y, mask)
    assert torch.equal(a[..., 1], torch.zeros(1, 2, 3))
    v = y[0, 0] @ att.v.weight.T + att.v.bias
    expected = (v @ att.o.weight.T + att.o.bias).expand(3, 4)
    torch.testing.assert_close(out[0], expected)


def test_global_vectors_are_not_used() -> None:
    m = _model()
    inputs = make_inputs()
    with_globals = FusionInputs(**{**vars(inputs), "img_global": torch.randn(3, D_IMG),
                                   "txt_global": torch.randn(3, D_TXT)})
    torch.testing.assert_close(m(inputs).q, m(with_globals).q)


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="divisible"):
        CoAttentionFusion(D_IMG, D_TXT, 12, hidden=10, heads=4)
    with pytest.raises(ValueError, match="n_layers"):
        CoAttentionFusion(D_IMG, D_TXT, 12, n_layers=0)


def test_gradients_reach_every_parameter() -> None:
    check_all_parameters_get_gradients(_model(n_layers=2).train(), make_inputs())


def test_reset_parameters() -> None:
    check_reset_parameters(_model(n_layers=2))


def test_learns_a_task_that_needs_both_modalities() -> None:
    torch.manual_seed(0)
    m = CoAttentionFusion(D_IMG, D_TXT, 16, hidden=16, heads=2, n_layers=1, dropout=0.0)
    assert_learns_interaction(m, 16, steps=100)
