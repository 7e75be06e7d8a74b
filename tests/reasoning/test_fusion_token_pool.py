import pytest
import torch

from kgmm.reasoning.fusion import MultiHeadTokenPool


def test_shapes_masking_and_attention_rows() -> None:
    torch.manual_seed(0)
    pool = MultiHeadTokenPool(8, heads=3, d_out=5)
    tokens = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out = pool(tokens, mask)
    assert out.shape == (2, 5)
    a = pool.last_attention
    assert a.shape == (2, 3, 4)
    assert torch.allclose(a.sum(-1), torch.ones(2, 3))
    assert torch.all(a[0, :, 2:] == 0)  # padding gets no weight
    changed = tokens.clone()
    changed[0, 2:] = 100.0  # padding content cannot leak into the summary
    assert torch.allclose(pool(changed, mask)[0], out[0], atol=1e-6)
    with pytest.raises(ValueError):
        MultiHeadTokenPool(8, heads=0, d_out=5)


def test_learns_what_mean_pooling_cannot_the_key_word_among_distractors() -> None:
    """Label = which of two key tokens occurs, at a random place among 7 random tokens that
    outweigh it in a mean: attention pooling finds it, the mean cannot."""
    torch.manual_seed(0)
    d = 16
    keys = torch.randn(2, d)
    keys = 0.5 * keys / keys.norm(dim=-1, keepdim=True)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = 3.0 * torch.randn(n, 8, d)
        labels = torch.randint(0, 2, (n,))
        where = torch.randint(0, 8, (n,))
        tokens[torch.arange(n), where] = keys[labels] + torch.tensor([4.0] + [0.0] * (d - 1))
        return tokens, labels

    pool = MultiHeadTokenPool(d, heads=2, d_out=2)
    mean_head = torch.nn.Linear(d, 2)
    for model, summary in ((pool, pool), (mean_head, lambda t: mean_head(t.mean(1)))):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            tokens, labels = sample(64)
            loss = torch.nn.functional.cross_entropy(summary(tokens), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    tokens, labels = sample(500)
    with torch.no_grad():
        accuracy = (pool(tokens).argmax(-1) == labels).float().mean().item()
        mean_accuracy = (mean_head(tokens.mean(1)).argmax(-1) == labels).float().mean().item()
    assert accuracy > 0.9 and mean_accuracy < 0.8
    # the key token's attention weight: far above the uniform 1/8
    assert pool.last_attention.max(-1).values.mean() > 0.5
