"""The lean decoder on the real SmolLM2-135M weights: its first layers equal transformers' LlamaModel
on the same safetensors, with left padding and with the shared prompt prefix (fp32, CPU)."""

from pathlib import Path

import pytest
import torch

from core.data import assets
from core.config import BackboneConfig
from core.models.backbone import DEFAULT_MODEL_DIR, load_backbone
from core.models.masks import positions_from_mask

REPO = Path(__file__).resolve().parents[3]
DEPTH = 2


@pytest.fixture(scope="module")
def smollm2():
    base_root = REPO / "checkpoints" / "base"
    assets.fetch_model(base_root)  # idempotent: converts once per machine
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(base_root / DEFAULT_MODEL_DIR)
    config.num_hidden_layers = DEPTH  # the first layers only, as the decoder reads them
    reference = AutoModel.from_pretrained(base_root / DEFAULT_MODEL_DIR, config=config, dtype=torch.float32,
                                          attn_implementation="sdpa").eval()
    ours = load_backbone(BackboneConfig(base="smollm2", depth=DEPTH, training="frozen"), base_root, "cpu")
    return reference, ours


def reference_states(model, x, mask):
    captured = []
    hooks = [layer.register_forward_hook(lambda m, a, out: captured.append(out[0] if isinstance(out, tuple) else out))
             for layer in model.layers]
    with torch.no_grad():
        out = model(inputs_embeds=x, attention_mask=mask, position_ids=positions_from_mask(mask))
    for hook in hooks:
        hook.remove()
    return [x, *captured, out.last_hidden_state]


@pytest.mark.slow
def test_the_first_smollm2_layers_equal_transformers_with_padding_and_the_shared_prefix(smollm2):
    reference, ours = smollm2
    prompt = ours.embed_text("What is the top recommended item for user who interacted with", bos=True)
    generator = torch.Generator().manual_seed(0)
    items = torch.randn(3, 6, 576, generator=generator) * prompt.std()  # item vectors at the prompt's scale
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6, [0, 0, 0, 0, 0, 1]])
    real = mask.bool()
    with torch.no_grad():
        alone = ours(items, mask, range(DEPTH + 2))
        shared = ours(items, mask, range(DEPTH + 2), shared_prefix=prompt)
    expected = reference_states(reference, items, mask)
    whole = torch.cat([prompt.expand(3, -1, -1), items], 1)
    whole_mask = torch.cat([torch.ones(3, len(prompt), dtype=torch.long), mask], 1)
    expected_shared = [state[:, len(prompt):] for state in reference_states(reference, whole, whole_mask)]
    for got, want in ((alone, expected), (shared, expected_shared)):
        for index, (a, b) in enumerate(zip(got, want)):
            scale = b[real].abs().max()
            torch.testing.assert_close(a[real], b[real], atol=1e-5 * scale, rtol=1e-5, msg=f"state {index}")
