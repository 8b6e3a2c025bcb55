"""core.models.backbone on the tiny random LLaMA: parity with Hugging Face, padding, training modes."""

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.config import BackboneConfig
from core.models.backbone import BackboneError, causal_padding_mask, load_backbone, positions_from_mask, select_layers
from core.models.tiny import build_tiny_llama, tiny_tokenizer

ATOL = 1e-5


def tiny(tmp_path, **settings):
    return load_backbone(BackboneConfig(base="tiny", **settings), tmp_path, "cpu")


def hf_hidden_states(model, inputs_embeds, depth, **kwargs):
    """transformers' LlamaModel cut to `depth` layers: (states after embeddings and each layer
    before the final norm, final-norm output). The per-layer states are read with forward hooks:
    what `hidden_states[-1]` holds (normed or not) differs between transformers releases."""
    model = copy.deepcopy(model)
    model.layers = model.layers[:depth]
    model.config.num_hidden_layers = depth
    captured = []
    for layer in model.layers:
        layer.register_forward_hook(lambda module, args, output: captured.append(
            output[0] if isinstance(output, tuple) else output))
    with torch.no_grad():
        out = model(inputs_embeds=inputs_embeds, **kwargs)
    assert len(captured) == depth
    return [inputs_embeds, *captured], out.last_hidden_state


def test_select_layers():
    assert select_layers(30, 8, "first") == list(range(8))
    assert select_layers(30, 8, "even") == [0, 4, 8, 12, 17, 21, 25, 29]
    assert select_layers(8, 4, "even") == [0, 2, 5, 7]
    assert select_layers(8, 3, "even") == [0, 4, 7]
    assert select_layers(8, 8, "even") == list(range(8))
    assert select_layers(8, 1, "even") == [0]
    for depth in (0, 9):
        with pytest.raises(BackboneError, match="between 1 and 8"):
            select_layers(8, depth, "first")


@pytest.mark.parametrize("depth", [8, 4])
def test_parity_with_transformers_llama(tmp_path, depth):
    backbone = tiny(tmp_path, depth=depth, training="frozen")
    reference = build_tiny_llama()
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(0))
    expected, final = hf_hidden_states(reference, x, depth)
    with torch.no_grad():
        ours = backbone(x, torch.ones(2, 7), list(range(depth + 2)))
    for index in range(depth + 1):
        torch.testing.assert_close(ours[index], expected[index], atol=ATOL, rtol=0)
    torch.testing.assert_close(ours[depth + 1], final, atol=ATOL, rtol=0)


def test_left_padding_matches_unpadded_and_transformers(tmp_path):
    backbone = tiny(tmp_path, depth=8, training="frozen")
    generator = torch.Generator().manual_seed(1)
    short, long = torch.randn(1, 4, 64, generator=generator), torch.randn(1, 7, 64, generator=generator)
    batch = torch.cat([torch.cat([torch.zeros(1, 3, 64), short], 1), long])  # (2, 7, 64), row 0 left-padded
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    layers = list(range(10))
    with torch.no_grad():
        padded = backbone(batch, mask, layers)
        alone = backbone(short, torch.ones(1, 4), layers)
    for index in layers:
        assert torch.isfinite(padded[index]).all()
        torch.testing.assert_close(padded[index][0, 3:], alone[index][0], atol=ATOL, rtol=0)
    positions = torch.tensor([[0, 0, 0, 0, 1, 2, 3], list(range(7))])
    expected, final = hf_hidden_states(build_tiny_llama(), batch, 8, attention_mask=mask, position_ids=positions)
    for index in range(9):
        torch.testing.assert_close(padded[index][mask.bool()], expected[index][mask.bool()], atol=ATOL, rtol=0)
    torch.testing.assert_close(padded[9][mask.bool()], final[mask.bool()], atol=ATOL, rtol=0)


def test_positions_and_mask_for_left_padding():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    allowed = causal_padding_mask(mask)  # (B, 1, query, key)
    assert allowed.shape == (2, 1, 4, 4)
    # padding queries see only themselves (no empty softmax row); real queries never see padding
    assert allowed[0, 0].int().tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    assert torch.equal(allowed[1, 0], torch.ones(4, 4, dtype=torch.bool).tril())


def test_bfloat16_base_keeps_fp32_adapters(tmp_path):
    backbone = load_backbone(BackboneConfig(base="tiny", depth=2), tmp_path, "cpu", dtype=torch.bfloat16)
    dtypes = {name: p.dtype for name, p in backbone.named_parameters()}
    # the layers and the final norm in bf16; the adapters and the (prompt-only) vocabulary in fp32
    assert all(d == (torch.float32 if "lora_" in n or n.startswith("embed_tokens") else torch.bfloat16)
               for n, d in dtypes.items())
    (final,) = backbone(torch.randn(1, 3, 64, dtype=torch.bfloat16), torch.ones(1, 3), [3])
    assert final.dtype == torch.bfloat16 and torch.isfinite(final).all()


def test_returns_what_was_asked_and_stops_early(tmp_path):
    backbone = tiny(tmp_path, depth=6)
    calls = []
    for layer in backbone.layers:
        layer.register_forward_hook(lambda module, args, output: calls.append(module))
    x = torch.randn(2, 5, 64)
    states = backbone(x, torch.ones(2, 5), [2, 0, 2])
    assert len(states) == 3 and states[1] is x and torch.equal(states[0], states[2])
    assert len(calls) == 2  # layers 3..6 never ran
    for bad in ([], [-1], [8]):
        with pytest.raises(ValueError, match="0..7"):
            backbone(x, torch.ones(2, 5), bad)


def test_even_selection_keeps_first_and_last(tmp_path):
    backbone = tiny(tmp_path, depth=3, layer_selection="even")
    assert backbone.layer_indices == (0, 4, 7) and backbone.num_layers == 3 and backbone.base_num_layers == 8


def test_depth_errors_name_the_maximum(tmp_path):
    for depth in (0, 9):
        with pytest.raises(BackboneError, match="between 1 and 8"):
            tiny(tmp_path, depth=depth)


def trainable_names(backbone):
    return {name for name, param in backbone.named_parameters() if param.requires_grad}


def test_training_modes(tmp_path):
    assert trainable_names(tiny(tmp_path, depth=2, training="frozen")) == set()
    full = tiny(tmp_path, depth=2, training="full")
    assert trainable_names(full) == {n for n, _ in full.named_parameters() if not n.startswith("embed_tokens")}
    lora = tiny(tmp_path, depth=2, lora_targets=("gate_proj", "up_proj", "down_proj"))
    names = trainable_names(lora)
    assert names and all("lora_" in n and ".mlp." in n for n in names)
    assert len(names) == 2 * 3 * 2  # layers x targets x (A, B)
    with pytest.raises(BackboneError, match="q_proj"):
        tiny(tmp_path, depth=2, lora_targets=("gate_proj", "wq"))


def dummy_step(backbone, optimizer, steps=2):
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(2))
    for _ in range(steps):
        (last,) = backbone(x, torch.ones(2, 5), [backbone.num_layers + 1])
        loss = last[:, -1].pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_lora_step_changes_only_lora_weights(tmp_path):
    torch.manual_seed(0)
    backbone = tiny(tmp_path, depth=3).train()
    before = {name: p.detach().clone() for name, p in backbone.named_parameters()}
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    dummy_step(backbone, torch.optim.AdamW(trainable, lr=1e-2))
    for name, param in backbone.named_parameters():
        if "lora_" in name:
            assert not torch.equal(param, before[name]), name  # A and B both moved after two steps
        else:
            assert torch.equal(param, before[name]), name  # bit-identical base weights


def test_trainable_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    trained = tiny(tmp_path, depth=3)
    dummy_step(trained, torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-2))
    state = trained.trainable_state_dict()
    assert set(state) == trainable_names(trained) and all(isinstance(t, torch.Tensor) for t in state.values())
    save_file(state, tmp_path / "lora.safetensors")

    torch.manual_seed(1)
    fresh = tiny(tmp_path, depth=3)
    assert fresh.trainable_state_dict().keys() == state.keys()
    fresh.load_trainable_state_dict(load_file(tmp_path / "lora.safetensors"))
    for name, tensor in fresh.trainable_state_dict().items():
        assert torch.equal(tensor, state[name])
    x = torch.randn(1, 4, 64)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x, torch.ones(1, 4), [4])[0], trained.eval()(x, torch.ones(1, 4), [4])[0])
    with pytest.raises(ValueError, match="missing"):
        fresh.load_trainable_state_dict({k: v for k, v in state.items() if "down_proj" not in k})


def test_embed_text_and_drop_vocabulary(tmp_path):
    backbone = tiny(tmp_path, depth=1)
    tokenizer = backbone.tokenizer
    ids = tokenizer("hi there", add_special_tokens=False)["input_ids"]
    assert torch.equal(backbone.embed_text("hi there"), backbone.embed_tokens.weight[ids])
    with_bos = backbone.embed_text("hi there", bos=True)
    assert torch.equal(with_bos[0], backbone.embed_tokens.weight[tokenizer.bos_token_id])
    assert with_bos.shape == (len(ids) + 1, 64) and not with_bos.requires_grad
    backbone.drop_vocabulary()
    assert backbone.embed_tokens is None and "embed_tokens.weight" not in backbone.state_dict()
    with pytest.raises(RuntimeError, match="drop_vocabulary"):
        backbone.embed_text("hi")


def test_local_folder_loads_only_the_kept_layers(tmp_path):
    folder = tmp_path / "tiny-llama"
    build_tiny_llama().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    from_folder = load_backbone(BackboneConfig(base=str(folder), depth=3, layer_selection="even",
                                               training="frozen"), tmp_path, "cpu")
    in_memory = tiny(tmp_path, depth=3, layer_selection="even", training="frozen")
    assert from_folder.layer_indices == in_memory.layer_indices == (0, 4, 7)
    assert from_folder.base_num_layers == 8
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        for a, b in zip(from_folder(x, torch.ones(2, 5), range(5)), in_memory(x, torch.ones(2, 5), range(5))):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_refuses_a_model_without_decoder_layers(tmp_path):
    from transformers import GPT2Config, GPT2Model

    folder = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64)).save_pretrained(folder)
    with pytest.raises(BackboneError, match=r"GPT2Model.*gpt2.*`layers` list"):
        load_backbone(BackboneConfig(base=str(folder), depth=1), tmp_path, "cpu")


def test_missing_default_model_and_offline_hub_id(tmp_path, monkeypatch):
    with pytest.raises(BackboneError, match="slmrec fetch"):
        load_backbone(BackboneConfig(base="smollm2"), tmp_path, "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="HF_HUB_OFFLINE"):
        load_backbone(BackboneConfig(base="someone/some-model"), tmp_path, "cpu")


def test_bf16_layers_keep_float32_rotary_and_run_with_or_without_autocast(tmp_path):
    exact = tiny(tmp_path, depth=4, training="lora")
    low = load_backbone(BackboneConfig(base="tiny", depth=4, training="lora"), tmp_path, "cpu", torch.bfloat16)
    assert low.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.bfloat16
    assert low.layers[0].mlp.up_proj.lora_A["default"].weight.dtype == torch.float32  # adapters train in fp32
    assert all(buffer.dtype == torch.float32 for buffer in low.rotary_emb.buffers())
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 7)
    with torch.no_grad():
        expected = exact(x, mask, [5])[0]
        plain = low(x, mask, [5])[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = low(x, mask, [5])[0]
    assert plain.dtype == torch.bfloat16  # under autocast the residual stream stays fp32
    for got in (plain, autocast):
        assert (got.float() - expected).norm() / expected.norm() < 2e-2  # bf16 rounding, nothing worse


@pytest.mark.parametrize("with_prefix", [False, True])
def test_last_position_equals_the_full_states_there_in_values_and_gradients(tmp_path, with_prefix):
    backbone = tiny(tmp_path, depth=3, training="full")  # q, k, v, o and the MLP all train
    mlp_inputs = []
    backbone.layers[-1].mlp.register_forward_hook(lambda module, args, output: mlp_inputs.append(args[0].shape))
    torch.manual_seed(0)
    x, prefix = torch.randn(3, 6, 64), torch.randn(4, 64) if with_prefix else None
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]])
    layers = [0, 2, 3, 4]
    full = [h[:, -1] for h in backbone(x, mask, layers, shared_prefix=prefix)]
    last = backbone(x, mask, layers, shared_prefix=prefix, last_position=True)
    assert mlp_inputs[-1] == (3, 1, 64)  # the top layer's MLP ran at the last position only
    for a, b in zip(full, last):
        assert a.shape == b.shape == (3, 64) and torch.allclose(a, b, atol=ATOL)
    params = [p for p in backbone.parameters() if p.requires_grad]
    grads_full = torch.autograd.grad(sum(h.square().sum() for h in full), params, allow_unused=True)
    grads_last = torch.autograd.grad(sum(h.square().sum() for h in last), params, allow_unused=True)
    top_attention = {id(p) for p in backbone.layers[-1].self_attn.parameters()}
    for p, a, b in zip(params, grads_full, grads_last):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-4)
            assert id(p) not in top_attention or b.abs().sum() > 0  # keys and values of earlier positions train


def test_a_layer_without_a_cache_argument_is_refused_when_loaded():
    from core.models.backbone import backbone_of

    class Layer(torch.nn.Module):
        def forward(self, hidden_states, attention_mask=None):
            return hidden_states

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens, self.norm, self.rotary_emb = torch.nn.Embedding(4, 2), torch.nn.Identity(), torch.nn.Identity()
            self.layers = torch.nn.ModuleList([Layer()])
            self.config = None

    with pytest.raises(BackboneError, match="old-decoder: Layer.forward takes no key/value cache argument"):
        backbone_of(Decoder(), None, "old-decoder", [0], 1, BackboneConfig(base="x", depth=1, training="frozen"),
                    "cpu", torch.float32)
