"""Shared pieces of the fusion modules (FusionInputs, masked helpers) and test helpers.

The helpers below (not collected: their names do not start with ``test``) are imported by
the other ``test_fusion_*`` files.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgmm.reasoning.fusion import FusionInputs, masked_mean, masked_softmax
from kgmm.reasoning.threads import torch_threads

D_IMG, D_TXT, P, T = 8, 6, 4, 5


def one_thread() -> contextlib.AbstractContextManager[None]:
    """Tiny training loops run faster (and steadier on a busy 2-core box) on one thread."""
    return torch_threads(1)


def make_inputs(seed: int = 0, batch: int = 3, globals_: bool = False,
                lengths: tuple[list[int], list[int]] | None = None) -> FusionInputs:
    """Random tokens with padding (patch lengths and token lengths per sample)."""
    g = torch.Generator().manual_seed(seed)
    img_len, txt_len = lengths or ([P, 2, 3][:batch], [T, 1, 3][:batch])
    img_mask = torch.arange(P)[None] < torch.tensor(img_len)[:, None]
    txt_mask = torch.arange(T)[None] < torch.tensor(txt_len)[:, None]
    return FusionInputs(
        img_tokens=torch.randn(batch, P, D_IMG, generator=g), img_mask=img_mask,
        txt_tokens=torch.randn(batch, T, D_TXT, generator=g), txt_mask=txt_mask,
        img_global=torch.randn(batch, D_IMG, generator=g) if globals_ else None,
        txt_global=torch.randn(batch, D_TXT, generator=g) if globals_ else None,
    )


def repad(inputs: FusionInputs, seed: int = 1, scale: float = 100.0) -> FusionInputs:
    """The same inputs with different (huge) values in every masked-out position."""
    g = torch.Generator().manual_seed(seed)
    assert inputs.img_tokens is not None and inputs.txt_tokens is not None
    assert inputs.img_mask is not None and inputs.txt_mask is not None
    img = torch.where(inputs.img_mask[..., None], inputs.img_tokens,
                      scale * torch.randn(inputs.img_tokens.shape, generator=g))
    txt = torch.where(inputs.txt_mask[..., None], inputs.txt_tokens,
                      scale * torch.randn(inputs.txt_tokens.shape, generator=g))
    return FusionInputs(img_tokens=img, img_mask=inputs.img_mask, txt_tokens=txt,
                        txt_mask=inputs.txt_mask, img_global=inputs.img_global,
                        txt_global=inputs.txt_global)


def check_all_parameters_get_gradients(module: nn.Module, inputs: FusionInputs) -> None:
    torch.manual_seed(0)
    module.zero_grad()
    q = module(inputs).q
    (q * torch.randn_like(q)).sum().backward()  # random weights: sum(LayerNorm(x)) is flat
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def check_reset_parameters(module: nn.Module) -> None:
    """reset_parameters() restores the same weights under the same seed, others otherwise."""
    torch.manual_seed(0)
    module.reset_parameters()
    first = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    assert all(not torch.equal(p, first[n]) for n, p in module.named_parameters())
    torch.manual_seed(1)
    module.reset_parameters()
    changed = [n for n, p in module.named_parameters() if not torch.equal(p, first[n])]
    assert changed, "a different seed should give different random weights"
    torch.manual_seed(0)
    module.reset_parameters()
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, first[name], rtol=0, atol=0, msg=name)


# --- a task that needs both modalities --------------------------------------------------

K = 3  # clusters per modality; label = (image cluster + text cluster) mod K


def interaction_task(n: int, g: torch.Generator, c_img: Tensor,
                     c_txt: Tensor) -> tuple[FusionInputs, Tensor, Tensor, Tensor]:
    """Tokens = cluster centre + noise, padded with loud noise; label needs both clusters."""
    a = torch.randint(0, K, (n,), generator=g)
    b = torch.randint(0, K, (n,), generator=g)
    img = c_img[a][:, None, :] + 0.3 * torch.randn(n, P, D_IMG, generator=g)
    txt = c_txt[b][:, None, :] + 0.3 * torch.randn(n, T, D_TXT, generator=g)
    img_mask = torch.arange(P)[None] < torch.randint(1, P + 1, (n, 1), generator=g)
    txt_mask = torch.arange(T)[None] < torch.randint(1, T + 1, (n, 1), generator=g)
    img = torch.where(img_mask[..., None], img, 5 * torch.randn(img.shape, generator=g))
    txt = torch.where(txt_mask[..., None], txt, 5 * torch.randn(txt.shape, generator=g))
    inputs = FusionInputs(img_tokens=img, img_mask=img_mask, txt_tokens=txt, txt_mask=txt_mask)
    return inputs, (a + b) % K, a, b


def best_single_modality_accuracy(cluster: Tensor, label: Tensor) -> float:
    """Accuracy of the best classifier that knows one modality's cluster (an upper bound
    for anything that sees one modality: the other one's noise carries no label signal)."""
    counts = torch.zeros(K, K)
    counts.index_put_((cluster, label), torch.ones(len(label)), accumulate=True)
    return counts.max(dim=1).values.sum().item() / len(label)


def train_on_interaction_task(fusion: nn.Module, d_out: int, steps: int = 150,
                              seed: int = 0, lr: float = 1e-2,
                              n: int = 256) -> tuple[float, float, float, float]:
    """Train fusion + MLP head; return (first loss, last loss, test acc, best single acc)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    c_img, c_txt = torch.randn(K, D_IMG, generator=g), torch.randn(K, D_TXT, generator=g)
    train, y_train, _, _ = interaction_task(n, g, c_img, c_txt)
    test, y_test, a_test, b_test = interaction_task(n, g, c_img, c_txt)
    head = nn.Sequential(nn.Linear(d_out, 32), nn.GELU(), nn.Linear(32, K))
    opt = torch.optim.Adam([*fusion.parameters(), *head.parameters()], lr=lr)
    losses = []
    with one_thread():
        fusion.train()
        for _ in range(steps):
            loss = F.cross_entropy(head(fusion(train).q), y_train)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        fusion.eval()
        with torch.no_grad():
            acc = (head(fusion(test).q).argmax(-1) == y_test).float().mean().item()
    best_single = max(best_single_modality_accuracy(a_test, y_test),
                      best_single_modality_accuracy(b_test, y_test))
    return losses[0], losses[-1], acc, best_single


def assert_learns_interaction(fusion: nn.Module, d_out: int, **kwargs: int | float) -> None:
    first, last, acc, best_single = train_on_interaction_task(fusion, d_out, **kwargs)
    assert last < 0.1 * first, (first, last)
    assert best_single < 0.5  # chance is 1/3: one modality alone says next to nothing
    assert acc > 0.9 and acc > best_single + 0.4, (acc, best_single)


# --- tests of the shared pieces ---------------------------------------------------------


def test_masked_mean_ignores_padding_even_nan() -> None:
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [float("nan"), 0.0]],
                      [[5.0, 6.0], [float("inf"), 1.0], [7.0, 8.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
    torch.testing.assert_close(masked_mean(x[:1, :2], None), torch.tensor([[2.0, 3.0]]))


def test_masked_mean_of_empty_row_is_zero() -> None:
    x = torch.ones(1, 3, 2)
    assert masked_mean(x, torch.zeros(1, 3, dtype=torch.bool)).tolist() == [[0.0, 0.0]]


def test_masked_softmax_zero_on_masked_and_sums_to_one() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 9.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, True], [True, True, False], [False, False, False]])
    a = masked_softmax(scores, mask)
    e = torch.exp(torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(a[0], torch.stack([e[0], torch.tensor(0.0), e[1]]) / e.sum())
    assert a[1, 2] == 0 and torch.isclose(a[1].sum(), torch.tensor(1.0))
    assert a[2].tolist() == [0.0, 0.0, 0.0]  # no real entry: zeros, not NaN


def test_inputs_validation() -> None:
    with pytest.raises(ValueError, match="both None"):
        FusionInputs(txt_global=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="img_mask must be"):
        FusionInputs(img_tokens=torch.zeros(2, 4, 3), img_mask=torch.ones(2, 5, dtype=torch.bool),
                     txt_global=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="batch sizes"):
        FusionInputs(img_global=torch.zeros(2, 3), txt_global=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="txt_tokens must be"):
        FusionInputs(img_global=torch.zeros(2, 3), txt_tokens=torch.zeros(2, 3))


def test_inputs_vectors_and_masks() -> None:
    inputs = make_inputs(batch=2)
    assert inputs.batch_size == 2
    assert inputs.txt_tokens is not None
    torch.testing.assert_close(inputs.text_vector()[1], inputs.txt_tokens[1, 0])  # length 1
    glob = make_inputs(batch=2, globals_=True)
    assert glob.img_global is not None
    assert torch.equal(glob.image_vector(), glob.img_global)
    as_int = FusionInputs(img_global=torch.zeros(1, 2), txt_tokens=torch.zeros(1, 3, 2),
                          txt_mask=torch.tensor([[1, 0, 1]]))
    assert as_int.txt_mask is not None and as_int.txt_mask.dtype == torch.bool
    img, img_mask, txt, txt_mask = repad(inputs).require_tokens()
    assert inputs.img_mask is not None and torch.equal(img_mask, inputs.img_mask)
    assert (txt[~txt_mask] == 0).all() and (img[~img_mask] == 0).all()
    with pytest.raises(ValueError, match="needs img_tokens"):
        FusionInputs(img_global=torch.zeros(1, 2), txt_global=torch.zeros(1, 2)).require_tokens()
