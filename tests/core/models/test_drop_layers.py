"""core.models.drop: a decoder with layers removed equals the decoder built from the remaining layers."""

import pytest
import torch

from core.config import BackboneConfig
from core.models.backbone import decoder_from_model
from core.models.drop import drop_layers
from core.models.tiny import build_tiny_llama, tiny_tokenizer

CFG = BackboneConfig(base="tiny", depth=6, training="lora", lora_r=4, lora_dropout=0.0,
                     lora_targets=("q_proj", "v_proj", "gate_proj", "down_proj"))


def decoder(indices):
    return decoder_from_model(build_tiny_llama(), tiny_tokenizer(), "tiny", CFG, "cpu", torch.float32, indices).eval()


def randomise_adapters(model, seed=1):
    """Non-zero LoRA B (they start at zero) so the adapters change every state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.05)


def inputs():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 64, generator=generator)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0  # left padding
    return x, mask, torch.randn(4, 64, generator=generator)


@torch.no_grad()
def test_dropping_layers_equals_building_the_remaining_layers():
    full = decoder(range(6))
    randomise_adapters(full)
    x, mask, prefix = inputs()
    full(x, mask, [7], shared_prefix=prefix)  # fills the prefix memo of all six layers
    weights = {name: param.detach().clone() for name, param in full.named_parameters()}
    removed = drop_layers(full, [5, 2, 3])
    assert removed == [1, 2, 4] and full.layer_indices == (0, 3, 5) and full.num_layers == 3
    # the reference: the kept layers alone, with the adapters they had in the six-layer model
    reference = decoder([0, 3, 5])
    renamed = {f"layers.{new}.": f"layers.{old}." for new, old in enumerate([0, 3, 5])}
    for name, param in reference.named_parameters():
        source = next((name.replace(k, v, 1) for k, v in renamed.items() if name.startswith(k)), name)
        param.data.copy_(weights[source])
    layers = [0, 1, 2, 3, 4]
    for ours, theirs in zip(full(x, mask, layers, shared_prefix=prefix), reference(x, mask, layers, shared_prefix=prefix)):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    last_ours = full(x, mask, [4], shared_prefix=prefix, last_position=True)[0]
    last_theirs = reference(x, mask, [4], shared_prefix=prefix, last_position=True)[0]
    torch.testing.assert_close(last_ours, last_theirs, atol=0, rtol=0)


def test_bad_layer_numbers_are_refused():
    model = decoder(range(3))
    with pytest.raises(ValueError, match=r"out of range; the model has 3 layers, numbered 1..3"):
        drop_layers(model, [0])
    with pytest.raises(ValueError, match="leaves none"):
        drop_layers(model, [1, 2, 3])
    with pytest.raises(ValueError, match="listed twice"):
        drop_layers(model, [2, 2])
    assert model.num_layers == 3  # nothing was removed
