"""core.models.decoder against Hugging Face's LlamaModel, Qwen2Model and MistralModel (with peft's LoRA):
every layer's state, padding, the shared prefix, the last position and the LoRA gradients."""

import copy

import pytest
import torch

from core.config import BackboneConfig
from core.models.backbone import decoder_from_model
from core.models.masks import positions_from_mask
from core.models.weights import upgrade_trainable

ATOL = 1e-5
SIZES = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.1)
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def reference(family: str, seed: int = 0):
    """A random-weight Hugging Face decoder of `family`; Qwen2's q/k/v biases random too (not zero)."""
    import transformers

    config_class, model_class = {"llama": ("LlamaConfig", "LlamaModel"), "qwen2": ("Qwen2Config", "Qwen2Model"),
                                 "mistral": ("MistralConfig", "MistralModel")}[family]
    config = getattr(transformers, config_class)(**SIZES)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, model_class)(config)
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:  # not their initial zeros and ones
                param.data.normal_(0, 0.1).add_(1.0 if "norm" in name else 0.0)
    return model.eval()


def ours(model, training="frozen", targets=ALL_PROJECTIONS, depth=3):
    cfg = BackboneConfig(base="reference", depth=depth, training=training, lora_targets=targets, lora_dropout=0.0,
                         lora_r=4, lora_alpha=8)
    return decoder_from_model(model, None, "reference", cfg, "cpu", torch.float32)


def hf_states(model, x, mask=None, depth=3):
    """(input, each layer's output before the final norm, final-norm output) of the reference, read with
    forward hooks (what `hidden_states[-1]` holds differs between transformers releases)."""
    captured = []
    def hook(module, args, out):
        captured.append(out[0] if isinstance(out, tuple) else out)
    hooks = [layer.register_forward_hook(hook) for layer in model.layers[:depth]]
    kwargs = {} if mask is None else {"attention_mask": mask, "position_ids": positions_from_mask(mask)}
    out = model(inputs_embeds=x, **kwargs)
    for hook in hooks:
        hook.remove()
    return [x, *captured[:depth], out.last_hidden_state]


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_every_layer_state_equals_the_reference_with_left_padding(family):
    model = reference(family)
    decoder = ours(model)
    x = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7, [0] * 6 + [1]])
    with torch.no_grad():
        expected = hf_states(model, x, mask)
        got = decoder(x, mask, range(5))
    real = mask.bool()
    for index, (a, b) in enumerate(zip(got, expected)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a[real], b[real], atol=ATOL, rtol=0, msg=f"state {index}")


def test_a_padded_row_equals_the_same_row_alone():
    decoder = ours(reference("llama"))
    generator = torch.Generator().manual_seed(1)
    short, long = torch.randn(1, 4, 64, generator=generator), torch.randn(1, 7, 64, generator=generator)
    batch = torch.cat([torch.cat([torch.zeros(1, 3, 64), short], 1), long])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    with torch.no_grad():
        for padded, alone in zip(decoder(batch, mask, range(5)), decoder(short, torch.ones(1, 4), range(5))):
            torch.testing.assert_close(padded[0, 3:], alone[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_the_shared_prefix_equals_the_prefix_written_into_every_row(family):
    model = reference(family)
    decoder = ours(model)
    generator = torch.Generator().manual_seed(2)
    x, prefix = torch.randn(2, 5, 64, generator=generator), torch.randn(3, 64, generator=generator)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1] * 5])
    whole = torch.cat([prefix.expand(2, -1, -1), x], 1)
    whole_mask = torch.cat([torch.ones(2, 3, dtype=torch.long), mask], 1)
    with torch.no_grad():
        expected = hf_states(model, whole, whole_mask)
        got = decoder(x, mask, range(5), shared_prefix=prefix)
    for a, b in zip(got[1:], expected[1:]):
        torch.testing.assert_close(a[mask.bool()], b[:, 3:][mask.bool()], atol=ATOL, rtol=0)


def with_peft_lora(model, targets=ALL_PROJECTIONS, seed=3):
    """A copy of `model` with peft's LoRA on `targets`, B random (not zero) so every adapter matters."""
    from peft import LoraConfig, inject_adapter_in_model

    model = copy.deepcopy(model)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(targets)), model)
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
        if "lora_" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.2
    return model


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_lora_states_and_gradients_equal_peft(family):
    base = reference(family)
    peft_model = with_peft_lora(base)
    decoder = ours(base, training="lora")
    lora = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    from core.stages.common import load_trainable_weights
    load_trainable_weights(decoder, lora)  # saved under peft's names, as runs before the lean decoder were
    x = torch.randn(2, 6, 64, generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1] * 6])
    expected = hf_states(peft_model, x, mask)
    got = decoder(x, mask, range(5))
    for a, b in zip(got, expected):  # the adapters make the states large: a relative tolerance too
        torch.testing.assert_close(a[mask.bool()], b[mask.bool()], atol=3e-5, rtol=1e-5)
    loss_theirs = expected[-1][mask.bool()].square().mean()
    loss_ours = got[-1][mask.bool()].square().mean()
    theirs = dict(zip(lora, torch.autograd.grad(loss_theirs, list(lora.values()))))
    params = dict(decoder.named_parameters())
    names = [name for name, p in params.items() if p.requires_grad]
    mine = dict(zip(names, torch.autograd.grad(loss_ours, [params[n] for n in names])))
    theirs = upgrade_trainable(theirs)
    assert set(theirs) == set(mine) and len(mine) == 3 * 7 * 2  # layers x projections x (A, B)
    for name, grad in mine.items():
        torch.testing.assert_close(grad, theirs[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("prefix_len", [3, 8])  # shorter than the rows, and longer
def test_the_shared_prefix_while_training_equals_it_written_into_every_row_in_states_and_gradients(family, prefix_len):
    from core.stages.common import load_trainable_weights

    base = reference(family)
    peft_model = with_peft_lora(base)
    decoder = ours(base, training="lora")
    lora = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    load_trainable_weights(decoder, lora)
    generator = torch.Generator().manual_seed(5)
    x, prefix = torch.randn(3, 5, 64, generator=generator), torch.randn(prefix_len, 64, generator=generator)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1] * 5, [0, 0, 0, 0, 1]])
    whole = torch.cat([prefix.expand(3, -1, -1), x], 1)
    whole_mask = torch.cat([torch.ones(3, prefix_len, dtype=torch.long), mask], 1)
    expected = [h[:, prefix_len:] for h in hf_states(peft_model, whole, whole_mask)]
    got = decoder(x, mask, range(5), shared_prefix=prefix)
    real = mask.bool()
    for a, b in zip(got, expected):
        assert a.shape == b.shape == (3, 5, 64)
        torch.testing.assert_close(a[real], b[real], atol=3e-5, rtol=1e-5)
    # gradients reach the adapters through the prefix's keys and values too, once per row there
    theirs = dict(zip(lora, torch.autograd.grad(sum(h[real].square().mean() for h in expected[1:]), list(lora.values()))))
    params = {name: p for name, p in decoder.named_parameters() if p.requires_grad}
    mine = dict(zip(params, torch.autograd.grad(sum(h[real].square().mean() for h in got[1:]), list(params.values()))))
    theirs = upgrade_trainable(theirs)
    assert set(theirs) == set(mine)
    for name, grad in mine.items():  # the gradients reach about 100 here: a tolerance to their scale
        torch.testing.assert_close(grad, theirs[name], atol=2e-5 * theirs[name].abs().max().item(), rtol=1e-4)


def test_merged_adapters_without_gradients_equal_the_adapter_products():
    base = reference("llama")
    decoder = ours(base, training="lora")
    from core.stages.common import load_trainable_weights
    load_trainable_weights(decoder, {n: p for n, p in with_peft_lora(base).named_parameters() if p.requires_grad})
    x, mask = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(6)), torch.ones(2, 5)
    with_grad = decoder(x, mask, [4])[0]
    with torch.no_grad():
        merged = decoder(x, mask, [4])[0]
        torch.testing.assert_close(merged, with_grad.detach(), atol=ATOL, rtol=0)
        decoder.layers[0].mlp.down_proj.lora_B["down_proj"].mul_(2)  # an in-place change: merged anew
        changed = decoder(x, mask, [4])[0]
    assert not torch.allclose(changed, merged)
    torch.testing.assert_close(changed, decoder(x, mask, [4])[0].detach(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("with_prefix", [False, True])
def test_last_position_equals_the_full_states_there_in_values_and_gradients(with_prefix):
    decoder = ours(reference("qwen2"), training="full")  # q, k, v (with bias), o and the MLP all train
    mlp_rows = []
    decoder.layers[-1].mlp.register_forward_hook(lambda module, args, output: mlp_rows.append(args[0].shape[0]))
    torch.manual_seed(0)
    x, prefix = torch.randn(3, 6, 64), torch.randn(4, 64) if with_prefix else None
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]])
    layers = [0, 2, 3, 4]
    full = [h[:, -1] for h in decoder(x, mask, layers, shared_prefix=prefix)]
    last = decoder(x, mask, layers, shared_prefix=prefix, last_position=True)
    assert mlp_rows[-1] == 3  # the top layer's MLP ran at each row's last position only
    for a, b in zip(full, last):
        assert a.shape == b.shape == (3, 64)
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    params = [p for p in decoder.parameters() if p.requires_grad]
    grads_full = torch.autograd.grad(sum(h.square().sum() for h in full), params, allow_unused=True)
    grads_last = torch.autograd.grad(sum(h.square().sum() for h in last), params, allow_unused=True)
    for a, b in zip(grads_full, grads_last):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_bf16_layers_keep_float32_adapters_and_rotary_and_run_with_or_without_autocast():
    base = reference("llama")
    exact = ours(base, training="lora", targets=("gate_proj", "up_proj", "down_proj"))
    cfg = BackboneConfig(base="reference", depth=3, training="lora")
    low = decoder_from_model(base, None, "reference", cfg, "cpu", torch.bfloat16)
    assert low.layers[0].mlp.gate_up_proj.weight.dtype == torch.bfloat16
    assert low.layers[0].mlp.gate_up_proj.lora_A["up_proj"].dtype == torch.float32  # adapters train in fp32
    assert low.inv_freq.dtype == torch.float32
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 7)
    expected = exact(x, mask, [4])[0].detach()
    plain = low(x, mask, [4])[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = low(x, mask, [4])[0]
    assert plain.dtype == autocast.dtype == torch.bfloat16
    for got in (plain, autocast):
        assert (got.float() - expected).norm() / expected.norm() < 2e-2  # bf16 rounding, nothing worse
    autocast.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in low.parameters() if p.requires_grad)
