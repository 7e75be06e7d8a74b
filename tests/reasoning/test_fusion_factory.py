import json

import pytest
import torch

from kgmm.reasoning.fusion import (
    FUSION_MODULES,
    AttentionFusion,
    CoAttentionFusion,
    EarlyFusion,
    FusionConfig,
    LateFusion,
    build_fusion,
)

from .test_fusion_common import D_IMG, D_TXT, make_inputs


@pytest.mark.parametrize(("name", "cls"), [("early", EarlyFusion), ("late", LateFusion),
                                           ("attention", AttentionFusion),
                                           ("co_attention", CoAttentionFusion)])
def test_build_fusion_by_name(name: str, cls: type) -> None:
    torch.manual_seed(0)
    m = build_fusion(name, D_IMG, D_TXT, 16)
    assert type(m) is cls
    assert m(make_inputs()).q.shape == (3, 16)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="'early', 'late', 'attention', 'co_attention'"):
        build_fusion("bilinear", D_IMG, D_TXT, 16)
    assert set(FUSION_MODULES) == {"early", "late", "attention", "co_attention"}


def test_kwargs_are_passed_through() -> None:
    m = build_fusion("co_attention", D_IMG, D_TXT, 16, heads=2, n_layers=3, hidden=8)
    assert isinstance(m, CoAttentionFusion)
    assert (m.heads, m.n_layers, m.hidden) == (2, 3, 8)
    with pytest.raises(TypeError):
        build_fusion("early", D_IMG, D_TXT, 16, heads=2)


def test_config_round_trips_through_json() -> None:
    cfg = FusionConfig(name="attention", d_out=64, hidden=32, dropout=0.2, heads=8, layers=2,
                       use_tokens=True)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert FusionConfig.from_dict(data) == cfg
    assert FusionConfig.from_dict(FusionConfig().to_dict()) == FusionConfig()


def test_config_rejects_unknown_keys_and_names() -> None:
    with pytest.raises(ValueError, match="unknown FusionConfig keys"):
        FusionConfig.from_dict({"name": "early", "n_heads": 3})
    with pytest.raises(ValueError, match="valid names"):
        FusionConfig(name="nope")


def test_config_build_passes_the_relevant_options() -> None:
    co = FusionConfig(name="co_attention", d_out=12, hidden=8, heads=2, layers=2).build(5, 7)
    assert isinstance(co, CoAttentionFusion)
    assert (co.d_img, co.d_txt, co.d_out, co.hidden, co.heads, co.n_layers) == (5, 7, 12, 8, 2, 2)
    att = FusionConfig(name="attention", d_out=12, use_tokens=True, heads=3).build(5, 7)
    assert isinstance(att, AttentionFusion) and att.use_tokens
    early = FusionConfig(name="early", d_out=12, hidden=20, dropout=0.3).build(5, 7)
    assert isinstance(early, EarlyFusion)
    assert early.mlp.lin1.out_features == 20 and early.mlp.dropout.p == 0.3
