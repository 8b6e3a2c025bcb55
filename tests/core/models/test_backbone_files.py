"""A base model folder whose safetensors are cut or corrupt is refused by path, with what to do."""

import pytest

from core.config import BackboneConfig
from core.models.backbone import load_backbone
from core.models.tiny import build_tiny_llama, tiny_tokenizer


def _tiny_folder(tmp_path, shards: bool = False):
    folder = tmp_path / "tiny-llama"
    build_tiny_llama().save_pretrained(folder, max_shard_size="200KB" if shards else "10GB")
    tiny_tokenizer().save_pretrained(folder)
    return folder


def _load(folder, tmp_path):
    return load_backbone(BackboneConfig(base=str(folder), depth=2, training="frozen"), tmp_path, "cpu")


@pytest.mark.parametrize("shards", [False, True])
def test_a_cut_base_model_file_is_named_with_what_to_do(tmp_path, shards):
    folder = _tiny_folder(tmp_path, shards)
    weights = sorted(folder.glob("*.safetensors"))
    assert len(weights) > 1 if shards else len(weights) == 1
    cut = weights[-1]
    cut.write_bytes(cut.read_bytes()[:-1000])
    with pytest.raises(ValueError) as caught:
        _load(folder, tmp_path)
    message = str(caught.value)
    assert str(cut) in message and "truncated or corrupt" in message and "copy the model folder again" in message


def test_a_corrupt_shard_index_is_named(tmp_path):
    folder = _tiny_folder(tmp_path, shards=True)
    index = folder / "model.safetensors.index.json"
    index.write_text(index.read_text()[:50])
    with pytest.raises(ValueError, match=f"{index}: not valid JSON"):
        _load(folder, tmp_path)
