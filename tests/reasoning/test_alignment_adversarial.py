import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kgmm.reasoning.alignment import (
    AdversarialAlignment,
    AdversarialOutput,
    CombinedAlignment,
    GradientReversal,
    grad_reverse,
)

from .test_alignment_common import DIM, assert_aligns, one_thread, train_alignment


@pytest.mark.parametrize("lambd", [1.0, 0.3, 0.0])
def test_grl_is_identity_forward_and_flips_the_gradient(lambd: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, requires_grad=True)
    upstream = torch.randn(4, 3)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    (y * upstream).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, -lambd * upstream)


def test_grl_module_lambda_can_be_scheduled() -> None:
    grl = GradientReversal(2.0)
    x = torch.ones(3, requires_grad=True)
    grl(x).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [-2.0] * 3
    grl.lambd = 0.5
    x.grad = None
    grl(x).sum().backward()
    assert x.grad.tolist() == [-0.5] * 3


def test_loss_and_accuracy_formula() -> None:
    torch.manual_seed(0)
    adv = AdversarialAlignment(4, hidden=8)
    z_img, z_txt = torch.randn(5, 4), torch.randn(3, 4)  # unpaired sizes are fine
    out = adv(z_img, z_txt)
    assert isinstance(out, AdversarialOutput)
    s_img, s_txt = adv.logits(z_img), adv.logits(z_txt)
    expected = (-F.logsigmoid(s_img).mean() - torch.log1p(-torch.sigmoid(s_txt)).mean())
    torch.testing.assert_close(out.loss, expected)
    acc = ((s_img > 0).sum() + (s_txt <= 0).sum()).item() / 8
    assert out.accuracy.item() == pytest.approx(acc)
    assert not out.accuracy.requires_grad


def test_encoders_get_the_reversed_gradient_and_the_discriminator_the_true_one() -> None:
    torch.manual_seed(0)
    adv = AdversarialAlignment(4, grl_lambda=0.7)
    z_img = torch.randn(6, 4, requires_grad=True)
    z_txt = torch.randn(6, 4, requires_grad=True)
    adv(z_img, z_txt).loss.backward()
    reversed_grads = (z_img.grad.clone(), z_txt.grad.clone())  # type: ignore[union-attr]
    d_grads = [p.grad.clone() for p in adv.parameters()]  # type: ignore[union-attr]
    # the same loss without the GRL
    adv.zero_grad()
    z_img.grad = z_txt.grad = None
    s_img, s_txt = adv.logits(z_img), adv.logits(z_txt)
    plain = (F.binary_cross_entropy_with_logits(s_img, torch.ones(6))
             + F.binary_cross_entropy_with_logits(s_txt, torch.zeros(6)))
    plain.backward()
    torch.testing.assert_close(reversed_grads[0], -0.7 * z_img.grad)
    torch.testing.assert_close(reversed_grads[1], -0.7 * z_txt.grad)
    for got, want in zip(d_grads, [p.grad for p in adv.parameters()], strict=True):
        torch.testing.assert_close(got, want)


def test_reset_parameters_is_deterministic() -> None:
    adv = AdversarialAlignment(4)
    torch.manual_seed(0)
    adv.reset_parameters()
    first = [p.clone() for p in adv.parameters()]
    torch.manual_seed(1)
    adv.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(first, adv.parameters(), strict=True))
    torch.manual_seed(0)
    adv.reset_parameters()
    assert all(torch.equal(a, b) for a, b in zip(first, adv.parameters(), strict=True))


def _gap_task(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text embeddings from the same clustered distribution, text shifted."""
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(4, 8, generator=g)

    def draw() -> torch.Tensor:
        k = torch.randint(0, 4, (512,), generator=g)
        return centers[k] + 0.5 * torch.randn(512, 8, generator=g)

    return draw(), draw()


def test_discriminator_learns_to_tell_the_modalities_apart() -> None:
    torch.manual_seed(0)
    z_img, z_txt = _gap_task(0)
    z_txt = z_txt + 1.5
    adv = AdversarialAlignment(8, hidden=16)
    opt = torch.optim.Adam(adv.parameters(), lr=0.03)
    with one_thread():
        for _ in range(100):
            out = adv(z_img[:256], z_txt[:256])
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    held_out = adv(z_img[256:], z_txt[256:])
    assert held_out.accuracy.item() > 0.95
    assert held_out.loss.item() < 0.3


def test_grl_training_closes_the_modality_gap() -> None:
    torch.manual_seed(0)
    z_img, x_txt = _gap_task(1)
    shift = nn.Parameter(torch.full((8,), 1.5))  # the "text encoder": x + shift
    gap0 = shift.norm().item()
    adv = AdversarialAlignment(8, hidden=16)
    opt = torch.optim.Adam([shift, *adv.parameters()], lr=0.03, betas=(0.5, 0.999))
    accuracy = []
    with one_thread():
        for _ in range(200):
            i, j = torch.randint(0, 512, (128,)), torch.randint(0, 512, (128,))
            out = adv(z_img[i], x_txt[j] + shift)
            opt.zero_grad()
            out.loss.backward()  # one loss, one optimiser: the GRL makes it a min-max game
            opt.step()
            accuracy.append(out.accuracy.item())
    assert max(accuracy) > 0.9  # the discriminator did find the gap ...
    assert shift.norm().item() < 0.25 * gap0  # ... and the encoder closed it
    assert sum(accuracy[-20:]) / 20 < 0.65  # ending near chance
    assert abs(out.loss.item() - 2 * math.log(2)) < 0.1  # the equilibrium value


def test_adversarial_term_keeps_contrastive_alignment_working() -> None:
    # The adversarial loss has no pairing signal (it only matches distributions), so
    # retrieval is trained here with InfoNCE + a weighted adversarial term.
    torch.manual_seed(0)
    combined = CombinedAlignment.from_weights({"info_nce": 1.0, "adversarial": 0.1}, DIM)
    before, after = train_alignment(combined, list(combined.parameters()), lr=0.02, steps=200)
    assert_aligns(before, after)
