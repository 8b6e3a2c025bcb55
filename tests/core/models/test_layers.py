import pytest
import torch

from core.models.layers import attend
from core.models.masks import attention_bias


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_repeating_the_key_value_heads_as_a_gpu_does_equals_the_grouped_call(dtype):
    """On a GPU a masked grouped call repeats the key/value heads (its grouped kernel takes no mask);
    the CPU runs the grouped call. Both must give the same attention, values and gradients, with a
    left-padded batch after a shared prefix."""
    generator = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, prefix, time, size = 3, 6, 2, 2, 5, 4
    q = torch.randn(batch, heads, time, size, generator=generator).to(dtype)
    k, v = (torch.randn(batch, kv_heads, prefix + time, size, generator=generator).to(dtype) for _ in range(2))
    mask = attention_bias(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]), prefix, dtype)
    results = []
    for repeat_heads in (False, True):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attend(*inputs, mask, repeat_heads=repeat_heads)
        out.float().square().sum().backward()
        results.append((out, *(t.grad for t in inputs)))
    tolerance = 1e-6 if dtype == torch.float32 else 2e-2
    for grouped, repeated in zip(*results):
        assert torch.allclose(grouped.float(), repeated.float(), atol=tolerance, rtol=tolerance)
    assert attend(q, k[..., prefix:, :], v[..., prefix:, :], None).shape == q.shape  # no mask: causal, grouped
