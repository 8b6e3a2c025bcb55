"""core.models.backbone: loading the lean decoder from Hugging Face weights (the tiny random LLaMA, a local
folder), layer selection, training modes, refusals, and runs saved before the lean decoder."""

import copy

import pytest
import torch

from core.config import BackboneConfig
from core.models.backbone import BackboneError, decoder_from_model, load_backbone, select_layers
from core.models.tiny import build_tiny_llama, tiny_tokenizer
from core.stages.common import load_trainable_weights, trainable_weights

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


def test_returns_what_was_asked_and_stops_early(tmp_path):
    backbone = tiny(tmp_path, depth=6)
    calls = []
    for layer in backbone.layers:
        layer.register_forward_hook(lambda module, args, output: calls.append(module))  # noqa: B023
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
    assert {n.split(".", 2)[2] for n in names} == {
        "mlp.gate_up_proj.lora_A.gate_proj", "mlp.gate_up_proj.lora_B.gate_proj", "mlp.gate_up_proj.lora_A.up_proj",
        "mlp.gate_up_proj.lora_B.up_proj", "mlp.down_proj.lora_A.down_proj", "mlp.down_proj.lora_B.down_proj"}
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
    with pytest.raises(BackboneError, match=r"model_type 'gpt2' is not supported; the decoder implements "
                                            r"llama, qwen2, mistral"):
        load_backbone(BackboneConfig(base=str(folder), depth=1), tmp_path, "cpu")


def test_missing_default_model_and_a_hub_id_are_refused_without_a_download(tmp_path, monkeypatch):
    with pytest.raises(BackboneError, match="slmrec fetch"):
        load_backbone(BackboneConfig(base="smollm2"), tmp_path, "cpu")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even where the hub would be reachable
    with pytest.raises(BackboneError, match="not 'smollm2', 'tiny' or an existing folder"):
        load_backbone(BackboneConfig(base="someone/some-model"), tmp_path, "cpu")




def test_trainable_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    trained = tiny(tmp_path, depth=3)
    dummy_step(trained, torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-2))
    state = {name: w.clone() for name, w in trainable_weights(trained).items()}
    assert set(state) == trainable_names(trained)
    torch.manual_seed(1)
    fresh = tiny(tmp_path, depth=3)
    load_trainable_weights(fresh, state)
    x = torch.randn(1, 4, 64)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x, torch.ones(1, 4), [4])[0], trained.eval()(x, torch.ones(1, 4), [4])[0])
    with pytest.raises(ValueError, match="missing"):
        load_trainable_weights(fresh, {k: v for k, v in state.items() if "down_proj" not in k})
    with pytest.raises(ValueError, match="shapes differ.*lora_r"):
        load_trainable_weights(tiny(tmp_path, depth=3, lora_r=4), state)


def test_a_full_fine_tuning_run_saved_with_hugging_face_names_loads_fused():
    """`training: full` runs before the lean decoder saved every layer matrix under transformers' names
    (`layers.0.self_attn.q_proj.weight`); they load into the fused projections and give the same states."""
    reference = build_tiny_llama(num_layers=2)
    with torch.no_grad():
        for param in reference.layers.parameters():
            param.add_(0.01 * torch.randn_like(param))  # "trained": not the base weights any more
    saved = {f"backbone.{name}": p.detach().clone() for name, p in reference.named_parameters()
             if name.startswith(("layers.", "norm."))}
    cfg = BackboneConfig(base="tiny", depth=2, training="full")

    class Holder(torch.nn.Module):  # names as a stage saves them: backbone.<decoder parameter>
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

    fresh = decoder_from_model(build_tiny_llama(num_layers=2), tiny_tokenizer(), "tiny", cfg, "cpu", torch.float32)
    loaded = Holder(fresh)
    load_trainable_weights(loaded, saved)
    expected = decoder_from_model(reference, tiny_tokenizer(), "tiny", cfg, "cpu", torch.float32)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        for a, b in zip(loaded.backbone(x, torch.ones(2, 5), range(4)), expected(x, torch.ones(2, 5), range(4))):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
