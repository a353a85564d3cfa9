import pytest
import torch

from terse.nn.gpt import GPT, GPTConfig


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_incremental_steps_equal_full_forward(n_kv_heads):
    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, window=6)).eval()
    tokens = torch.randint(0, 257, (3, 20))
    full = model(tokens)
    cache = model.new_cache(3)
    steps = torch.stack([model.step(tokens[:, t], cache) for t in range(tokens.shape[1])], dim=1)
    assert torch.allclose(full, steps, atol=1e-5)


def test_window_limits_context():
    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=32, n_layers=1, n_heads=2, window=4)).eval()
    a = torch.randint(0, 256, (1, 12))
    b = a.clone()
    b[0, :5] = (b[0, :5] + 1) % 256  # outside the last-4 window of position 11 (one layer)
    assert torch.allclose(model(a)[0, -1], model(b)[0, -1], atol=1e-6)
    assert not torch.allclose(model(a)[0, 6], model(b)[0, 6], atol=1e-6)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        GPTConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match=">= 1"):
        GPTConfig(window=0)


def test_non_embedding_param_count_matches_module():
    config = GPTConfig(d_model=64, n_layers=3, n_heads=4, n_kv_heads=2)
    model = GPT(config)
    embedding = model.embed.weight.numel() + model.head.weight.numel()
    assert sum(p.numel() for p in model.parameters()) - embedding == config.non_embedding_params()
