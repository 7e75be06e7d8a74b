"""ImageNet-1k class list (WordNet 3.0 wnids in classifier order) and top_synsets."""

from __future__ import annotations

import re

import pytest
import torch

from kgmm.reasoning.encoders import imagenet_classes, imagenet_names, imagenet_wnids, top_synsets


def test_class_list() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    names = imagenet_names()
    known = {0: ("n01440764", "tench"), 281: ("n02123045", "tabby"),
             282: ("n02123159", "tiger cat"), 285: ("n02124075", "Egyptian cat"),
             504: ("n03063599", "coffee mug"), 967: ("n07920052", "espresso"),
             999: ("n15075141", "toilet tissue")}
    for index, (wnid, name) in known.items():
        assert (wnids[index], names[index]) == (wnid, name)
    tabby = imagenet_classes()[281]
    assert tabby.index == 281 and tabby.lemmas == ("tabby", "tabby cat")


def test_top_synsets() -> None:
    logits = torch.full((2, 1000), -10.0)
    logits[0, 285], logits[0, 281] = 5.0, 4.0
    logits[1, 967] = 3.0
    top = top_synsets(logits, k=2)
    assert [w for w, _, _ in top[0]] == ["n02124075", "n02123045"]
    assert top[1][0][:2] == ("n07920052", "espresso")
    assert top[0][0][2] > top[0][1][2] > 0 and top[0][0][2] + top[0][1][2] <= 1
    assert len(top_synsets(logits[0], k=5)) == 1
    with pytest.raises(ValueError):
        top_synsets(torch.zeros(1, 10))
