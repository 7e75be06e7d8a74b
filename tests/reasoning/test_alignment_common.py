"""Test helpers shared by the ``test_alignment_*`` files, and tests of ``pairwise_distance``.

Helpers (not collected): two randomly rotated views of the same clustered points, a
retrieval-accuracy metric, and a tiny training loop with one linear encoder per view.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgmm.reasoning.alignment import pairwise_distance
from kgmm.reasoning.threads import torch_threads

DIM = 16


def one_thread() -> contextlib.AbstractContextManager[None]:
    """One intra-op thread for the block (see :func:`torch_threads`)."""
    return torch_threads(1)


def rotated_views(seed: int, n: int = 128,
                  n_clusters: int = 8) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """((train_a, train_b), (test_a, test_b)): x·R_a and x·R_b (+ tiny noise), x clustered."""
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(n_clusters, DIM, generator=g)
    r_a = torch.linalg.qr(torch.randn(DIM, DIM, generator=g))[0]
    r_b = torch.linalg.qr(torch.randn(DIM, DIM, generator=g))[0]

    def draw() -> tuple[Tensor, Tensor]:
        x = centers[torch.randint(0, n_clusters, (n,), generator=g)]
        x = x + 0.5 * torch.randn(n, DIM, generator=g)
        return x @ r_a, x @ r_b + 0.01 * torch.randn(n, DIM, generator=g)

    return draw(), draw()


def retrieval_accuracy(z_a: Tensor, z_b: Tensor) -> float:
    """Fraction of ``z_a[i]`` whose nearest ``z_b`` (cosine) is ``z_b[i]``; chance = 1/n."""
    sim = F.normalize(z_a, dim=-1) @ F.normalize(z_b, dim=-1).T
    return (sim.argmax(dim=1) == torch.arange(len(z_a))).float().mean().item()


def train_alignment(loss_fn: Callable[[Tensor, Tensor], object], extra: list[nn.Parameter],
                    seed: int = 0, steps: int = 150, lr: float = 0.05,
                    freeze_a: bool = False) -> tuple[float, float]:
    """Train one linear encoder per view with ``loss_fn``; (test retrieval before, after)."""
    torch.manual_seed(seed)
    (xa, xb), (ta, tb) = rotated_views(seed)
    enc_a, enc_b = nn.Linear(DIM, DIM, bias=False), nn.Linear(DIM, DIM, bias=False)
    params = [*([] if freeze_a else enc_a.parameters()), *enc_b.parameters(), *extra]
    opt = torch.optim.Adam(params, lr=lr)
    with torch.no_grad():
        before = retrieval_accuracy(enc_a(ta), enc_b(tb))
    with one_thread():
        for _ in range(steps):
            out = loss_fn(enc_a(xa), enc_b(xb))
            loss = out[0] if isinstance(out, tuple) else out
            assert isinstance(loss, Tensor)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        after = retrieval_accuracy(enc_a(ta), enc_b(tb))
    return before, after


def assert_aligns(before: float, after: float) -> None:
    assert before < 0.1, before  # chance is 1/128
    assert after > 0.9, after


def test_pairwise_distance_values() -> None:
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    torch.testing.assert_close(pairwise_distance(a, b, "euclidean"), torch.tensor(
        [[5.0, math.sqrt(13.0), math.sqrt(32.0)], [1.0, math.sqrt(5.0), 2.0]]), atol=1e-5,
        rtol=0)
    cos = pairwise_distance(a, b[1:], "cosine")
    torch.testing.assert_close(cos, torch.tensor([[1 - 0.8, 1 + 0.6], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="distance"):
        pairwise_distance(a, b, "manhattan")  # type: ignore[arg-type]


def test_euclidean_distance_has_finite_gradient_at_zero() -> None:
    a = torch.zeros(1, 3, requires_grad=True)
    pairwise_distance(a, torch.zeros(1, 3), "euclidean").sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_random_encoders_retrieve_at_chance() -> None:
    torch.manual_seed(0)
    _, (ta, tb) = rotated_views(0)
    assert retrieval_accuracy(ta, ta) == 1.0
    enc = nn.Linear(DIM, DIM, bias=False)
    with torch.no_grad():
        assert retrieval_accuracy(enc(ta), enc(tb)) < 0.1
