import torch

from core.models.masks import attention_bias, causal_layout, positions_from_mask


def test_positions_and_mask_for_left_padding():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    allowed = attention_bias(mask, 0, torch.float32) == 0  # (B, 1, query, key)
    assert allowed.shape == (2, 1, 4, 4)
    # padding queries see only themselves (no empty softmax row); real queries never see padding
    assert allowed[0, 0].int().tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    assert torch.equal(allowed[1, 0], torch.ones(4, 4, dtype=torch.bool).tril())
    with_prefix = attention_bias(mask, 2, torch.float32) == 0
    assert with_prefix.shape == (2, 1, 4, 6) and with_prefix[..., :2].all()  # everyone reads the prefix
    assert torch.equal(with_prefix[..., 2:], allowed)
    kept = causal_layout(4, 2, mask.device, torch.bfloat16)  # as the decoder keeps it between batches
    bias = attention_bias(mask, 2, torch.bfloat16, kept)
    assert bias.dtype == torch.bfloat16 and torch.equal(bias == 0, with_prefix)
    assert bias.min() == torch.finfo(torch.bfloat16).min
