"""A tiny random-weight LLaMA and a byte-level tokenizer, built in memory without any download.

`backbone.base = "tiny"` uses these for tests and demos: 8 decoder layers, hidden 64, 4 heads with
2 key/value heads (so grouped-query attention is exercised as in SmolLM2), vocabulary 512. The
weights are drawn from a fixed seed inside a forked RNG, so the model is the same on every call
and building it does not disturb the caller's random state. The tokenizer maps every UTF-8 byte to
one token (ids 4..259) after four special tokens, so any text encodes and nothing is unknown.
"""

from __future__ import annotations

import torch

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")  # ids 0..3


def tiny_llama_config(num_layers: int = 8, **overrides):
    """The LlamaConfig of the tiny test model; `overrides` replace any field."""
    from transformers import LlamaConfig

    settings = dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        initializer_range=0.1,  # larger than LLaMA's 0.02 so attention is far from uniform in tests
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def tiny_tokenizer():
    """A byte-level tokenizer (PreTrainedTokenizerFast) built from an in-memory `tokenizers` model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # 256 printable stand-ins for bytes
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({char: len(SPECIAL_TOKENS) + i for i, char in enumerate(alphabet)})
    # BPE without merges over the byte alphabet: exactly one token per byte.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
    )


def build_tiny_llama(seed: int = 0, num_layers: int = 8, dtype: torch.dtype = torch.float32, **overrides):
    """A LlamaModel (no LM head) with seeded random weights, using SDPA attention."""
    from transformers import LlamaModel

    config = tiny_llama_config(num_layers=num_layers, **overrides)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaModel(config)
    return model.to(dtype).eval()
