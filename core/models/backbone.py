"""Loading the LLM backbone: a pretrained LLaMA-family decoder cut to a few layers, optionally with LoRA.

Step 3 of the E4SRec-style model (docs/method.md: "run a decoder-only LLM with only its first N
decoder layers kept") and the student's layer choice (the first `depth` layers, or `depth` evenly
spaced ones). The model is core.models.decoder's lean Decoder; its weights are read from the
base's safetensors through the name map of core.models.weights (only the kept layers are read),
and transformers only reads the config and the tokenizer. The LM head is never loaded: the
recommender reads hidden states. The token embedding table serves to embed prompt text once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from core.config import BackboneConfig
from core.models.decoder import Decoder
from core.models.layers import DecoderShape
from core.models.projection import PROJECTIONS, LoRASettings, Projection
from core.models.weights import layer_weights
from core.store.atomic import read_json
from core.store.checkpoints import open_safetensors
from core.store.paths import DEFAULT_MODEL_DIR

SUPPORTED = ("llama", "qwen2", "mistral")  # model_type values of the LLaMA family the decoder implements
STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # rope types whose frequencies do not move at run time
REFETCH_ADVICE = "copy the model folder again (for the default model: `slmrec fetch`)"


class BackboneError(ValueError):
    """The backbone cannot be loaded as asked; the message says what to change."""


def select_layers(num_layers: int, depth: int, selection: str = "first") -> list[int]:
    """Original (0-based) indices of the decoder layers to keep.

    "first": 0..depth-1. "even": round-half-up of linspace(0, num_layers - 1, depth), so the first
    and the last layer are always kept (depth 1 keeps layer 0); e.g. 30 layers, depth 8 ->
    [0, 4, 8, 12, 17, 21, 25, 29]. Integer arithmetic, so no float rounding surprises.
    """
    if not 1 <= depth <= num_layers:
        raise BackboneError(f"backbone.depth: {depth} is not possible; this model has {num_layers} decoder "
                            f"layers, so depth must be between 1 and {num_layers}")
    if selection == "first":
        return list(range(depth))
    if selection == "even":
        if depth == 1:
            return [0]
        span, gaps = num_layers - 1, depth - 1
        return [(2 * i * span + gaps) // (2 * gaps) for i in range(depth)]
    raise BackboneError(f"backbone.layer_selection: expected 'first' or 'even', got '{selection}'")


def decoder_shape(config, source: str) -> DecoderShape:
    """The decoder's sizes from a Hugging Face config, or a BackboneError naming what is unsupported."""
    model_type = getattr(config, "model_type", "?")
    if model_type not in SUPPORTED:
        raise BackboneError(f"{source}: model_type '{model_type}' is not supported; the decoder implements "
                            f"{', '.join(SUPPORTED)} (LLaMA / SmolLM, Qwen2, Mistral)")
    act = getattr(config, "hidden_act", "silu")
    unsupported = [what for what, bad in (
        (f"hidden_act '{act}' (expected silu)", act != "silu"),
        ("mlp_bias", getattr(config, "mlp_bias", False)),
        ("attention_bias on o_proj", model_type == "llama" and getattr(config, "attention_bias", False)),
        ("use_sliding_window", getattr(config, "use_sliding_window", False))) if bad]
    if unsupported:
        raise BackboneError(f"{source}: {', '.join(unsupported)} is not supported by the decoder")
    heads = config.num_attention_heads
    return DecoderShape(hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                        num_heads=heads, num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                        rms_norm_eps=config.rms_norm_eps, qkv_bias=model_type == "qwen2",
                        max_positions=getattr(config, "max_position_embeddings", None) or 8192)


def rope_frequencies(config, shape: DecoderShape, source: str) -> tuple[torch.Tensor, float]:
    """(inverse frequencies (D / 2,), scale of cos and sin) for the config's rope settings."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in STATIC_ROPE:
        raise BackboneError(f"{source}: rope type '{rope_type}' is not supported; supported: {', '.join(STATIC_ROPE)}")
    if rope_type == "default":
        theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        dims = torch.arange(0, shape.head_dim, 2, dtype=torch.float32) / shape.head_dim
        return 1.0 / theta ** dims, 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # the reference formulas  # noqa: PLC0415

    inv_freq, scale = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"))
    return inv_freq.float(), float(scale)


def lora_settings(cfg: BackboneConfig) -> LoRASettings:
    if cfg.training != "lora":
        return LoRASettings()
    unknown = sorted(set(cfg.lora_targets) - set(PROJECTIONS))
    if unknown:
        raise BackboneError(f"backbone.lora_targets: {', '.join(unknown)} not found in the decoder layers; "
                            f"their linear layers are {', '.join(PROJECTIONS)}")
    return LoRASettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, targets=tuple(cfg.lora_targets))


def load_backbone(cfg: BackboneConfig, base_root: Path | None, device: torch.device | str,
                  dtype: torch.dtype = torch.float32) -> Decoder:
    """Load the LLM named by cfg.base, keep cfg.depth layers, and set up cfg.training.

    cfg.base: "smollm2" (base_root/smollm2-135m-instruct, written by `slmrec fetch`), "tiny" (the
    random test model of core.models.tiny) or a local Hugging Face folder; nothing is fetched from a
    model hub. Weights are read from safetensors only. `dtype` is that of the kept
    decoder layers and final norm (see `Decoder.cast_layers`).
    """
    if cfg.base == "tiny":
        from core.models.tiny import build_tiny_llama, tiny_tokenizer  # noqa: PLC0415

        model = build_tiny_llama()
        return decoder_from_model(model, tiny_tokenizer(), "tiny", cfg, device, dtype)
    folder = _resolve_source(cfg.base, Path(base_root or "."))
    from transformers import AutoConfig, AutoTokenizer  # noqa: PLC0415

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise BackboneError(f"could not read a model config and tokenizer from {folder}: {error}") from error
    with _safetensors_reader(Path(folder)) as (read, names):
        return build_decoder(config, tokenizer, read, names, str(folder), cfg, device, dtype)


def decoder_from_model(model: nn.Module, tokenizer, source: str, cfg: BackboneConfig, device, dtype,
                       indices: Sequence[int] | None = None) -> Decoder:
    """The Decoder over the weights of an already built Hugging Face decoder (the tiny model, tests, bench)."""
    state = model.state_dict()
    return build_decoder(model.config, tokenizer, state.__getitem__, set(state), source, cfg, device, dtype, indices)


def build_decoder(config, tokenizer, read, names: set[str], source: str, cfg: BackboneConfig, device, dtype,
                  indices: Sequence[int] | None = None) -> Decoder:
    """Kept layers (cfg.depth by cfg.layer_selection, or `indices`) read through `read(name)`, in
    `dtype`, set up for cfg.training, on `device`."""
    shape = decoder_shape(config, source)
    prefix = "model." if "model.embed_tokens.weight" in names else ""
    total = config.num_hidden_layers
    indices = list(indices) if indices is not None else select_layers(total, cfg.depth, cfg.layer_selection)
    inv_freq, rope_scale = rope_frequencies(config, shape, source)
    try:
        state = {"norm.weight": read(prefix + "norm.weight")}
        for kept, original in enumerate(indices):
            state.update(layer_weights(read, f"{prefix}layers.{original}.", f"layers.{kept}.", names))
        embed = nn.Embedding.from_pretrained(read(prefix + "embed_tokens.weight").float(), freeze=True)
    except KeyError as error:  # these would otherwise silently be random
        raise BackboneError(f"{source}: the weights lack the tensor {error}, which the decoder needs") from error
    with torch.device("meta"):  # the structure only; the weights come next
        decoder = Decoder(shape, inv_freq, rope_scale, lora_settings(cfg), indices, total)
    decoder.to_empty(device="cpu")
    decoder.inv_freq.copy_(inv_freq)
    missing = [name for name in decoder.load_state_dict(state, strict=False).missing_keys if ".lora_" not in name]
    if missing:
        raise BackboneError(f"{source}: no weights were read for {', '.join(missing[:3])}")
    for module in decoder.modules():
        if isinstance(module, Projection):
            module.reset_adapters()  # to_empty left them unset
    decoder.embed_tokens, decoder.tokenizer = embed, tokenizer
    decoder.cast_layers(dtype)
    _set_training(decoder, cfg)
    return decoder.to(device)


def _set_training(decoder: Decoder, cfg: BackboneConfig) -> None:
    """lora: only LoRA weights train; full: every decoder layer and the final norm; frozen: nothing.
    The token embedding table never trains: prompt text is embedded once, before training."""
    if cfg.training not in ("lora", "full", "frozen"):
        raise BackboneError(f"backbone.training: expected lora, full or frozen, got '{cfg.training}'")
    for name, param in decoder.named_parameters():
        lora = ".lora_" in name
        param.requires_grad_(lora if cfg.training == "lora" else cfg.training == "full" and not lora)
    if decoder.embed_tokens is not None:
        decoder.embed_tokens.requires_grad_(False)


@contextlib.contextmanager
def _safetensors_reader(folder: Path) -> Iterator[tuple[Callable[[str], torch.Tensor], set[str]]]:
    """(read(name) -> float32 tensor, every tensor name) over a folder's model.safetensors or its
    shards, each file opened once for the whole load."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        where = {name: folder / shard for name, shard in read_json(index)["weight_map"].items()}
    elif (folder / "model.safetensors").is_file():
        with open_safetensors(folder / "model.safetensors", advice=REFETCH_ADVICE) as handle:
            where = {name: folder / "model.safetensors" for name in handle.keys()}  # noqa: SIM118 (not iterable)
    else:
        raise BackboneError(f"{folder}: no model.safetensors (or model.safetensors.index.json); weights are "
                            "read from safetensors only")
    with contextlib.ExitStack() as stack:
        handles = {path: stack.enter_context(open_safetensors(path, advice=REFETCH_ADVICE))
                   for path in set(where.values())}

        def read(name: str) -> torch.Tensor:
            if name not in where:
                raise KeyError(name)
            return handles[where[name]].get_tensor(name).float()
        yield read, set(where)


def _resolve_source(base: str, base_root: Path) -> str:
    """The local folder to load the base model from."""
    if base == "smollm2":
        folder = base_root / DEFAULT_MODEL_DIR
        if not (folder / "config.json").is_file():
            raise BackboneError(f"the default model is not at {folder}; run `slmrec fetch` to download and "
                                "convert SmolLM2-135M-Instruct (no model hub needed)")
        return str(folder)
    folder = Path(base).expanduser()
    if folder.is_dir():
        return str(folder)
    # Nothing is fetched from a model hub at run time: a model comes as a local folder.
    raise BackboneError(f"backbone.base '{base}' is not 'smollm2', 'tiny' or an existing folder; give the folder "
                        "of a LLaMA-family model in Hugging Face format (config.json, *.safetensors, tokenizer)")
