"""Prepared examples round-trip through a pack (shared rows, float16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kgmm.reasoning.example_pack import read_pack, write_pack
from kgmm.reasoning.scene_graph import ReasoningGraph
from kgmm.reasoning.vqa_data import Example


def _example(i: int, table: torch.Tensor, images: torch.Tensor, g: torch.Generator,
             tokens: bool) -> Example:
    n, e = 4 + i % 3, 5 + i % 4
    rows = torch.randint(0, table.shape[0], (n,), generator=g)
    graph = ReasoningGraph(
        x=table[rows], node_extra=torch.rand(n, 19, generator=g),
        edge_index=torch.randint(0, n, (2, e), generator=g),
        edge_type=torch.randint(0, 30, (e,), generator=g), seed_score=torch.rand(n, generator=g),
        kg_index=torch.tensor([10 * i + k for k in range(n - 1)] + [-1]),
        object_slot=torch.tensor([-1] * (n - 1) + [0]))
    return Example(question_id=1000 + i, image_vec=images[i % 2],
                   text_vec=torch.randn(8, generator=g), graph=graph, answer=f"a{i}",
                   answers=(f"a{i}", "b"), answer_entities=(i,),
                   family="count" if i % 2 else None,
                   text_tokens=torch.randn(3, 8, generator=g) if tokens else None)


def test_examples_round_trip_with_shared_rows(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    table = torch.randn(6, 8, generator=g)  # every graph's rows come from these six
    images = torch.randn(2, 16, generator=g)
    splits = {"train": [_example(i, table, images, g, tokens=True) for i in range(5)],
              "val": [_example(i, table, images, g, tokens=False) for i in range(5, 7)]}
    write_pack(tmp_path / "pack", splits, meta={"labels": {"10": "dog"}})
    back, meta = read_pack(tmp_path / "pack")
    assert meta == {"labels": {"10": "dog"}} and list(back) == ["train", "val"]
    for split, examples in splits.items():
        assert len(back[split]) == len(examples)
        for a, b in zip(examples, back[split], strict=True):
            assert (b.question_id, b.answer, b.answers, b.answer_entities, b.family) == \
                (a.question_id, a.answer, a.answers, a.answer_entities, a.family)
            for name in ("x", "node_extra", "seed_score"):
                torch.testing.assert_close(getattr(b.graph, name), getattr(a.graph, name),
                                           atol=2e-3, rtol=2e-3)
                assert getattr(b.graph, name).dtype == torch.float32
            for name in ("edge_index", "edge_type", "kg_index", "object_slot"):
                assert torch.equal(getattr(b.graph, name), getattr(a.graph, name)), name
            torch.testing.assert_close(b.image_vec, a.image_vec, atol=2e-3, rtol=2e-3)
            torch.testing.assert_close(b.text_vec, a.text_vec, atol=2e-3, rtol=2e-3)
            if a.text_tokens is None:
                assert b.text_tokens is None
            else:
                torch.testing.assert_close(b.text_tokens, a.text_tokens, atol=2e-3, rtol=2e-3)
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "pack" / "pack.safetensors"))
    assert stored["node_table"].shape[0] <= 6  # each distinct row once
    assert stored["image_vec"].shape[0] == 2  # each distinct image once


def test_refuses_other_versions_and_graphless_examples(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    example = _example(0, torch.randn(3, 8, generator=g), torch.randn(2, 16, generator=g), g,
                       tokens=False)
    path = write_pack(tmp_path / "p", {"train": [example]})
    info = json.loads((path / "pack.json").read_text())
    (path / "pack.json").write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(ValueError, match="pack format 99"):
        read_pack(path)
    with pytest.raises(ValueError, match="not a readable example pack"):
        read_pack(tmp_path / "missing")
    example.graph = None
    with pytest.raises(ValueError, match="has no graph"):
        write_pack(tmp_path / "q", {"train": [example]})
