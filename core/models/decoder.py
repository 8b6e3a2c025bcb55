"""One lean decoder for the LLaMA family (LLaMA / SmolLM, Qwen2, Mistral), in plain PyTorch.

The recommender runs a pretrained decoder's first layers on item vectors and prompt tokens (the E4SRec-style
model of docs/method.md). Written here rather than borrowed from transformers, whose per-layer
path (library layers, peft wrappers, cache objects, casts) costs about 660 dispatched operators per
layer and step: on a GPU that host work, not the GPU, set the speed. In the spirit of nanoGPT's
model.py; one layer and its parts are in core/models/layers.py, positions and attention masks in
core/models/masks.py. transformers stays the parity reference (tests).

Hidden-state index convention, used everywhere in this project:
    0               the input embeddings (what was passed as `inputs_embeds`)
    l = 1..L        the residual stream after kept decoder layer l, BEFORE the final RMSNorm
    L + 1           the final RMSNorm applied to the output of layer L (what a head reads)
where L = `num_layers`. `layer_indices[l - 1]` is the original (0-based) index of kept layer l.

Two features the recommender needs are native here: a prompt prefix shared by every row, whose keys
and values are put before each row's own (without gradients they are computed once at batch 1 and
kept; with gradients the prefix runs as one more row of the batch), and `last_position`, which
runs the top layer's queries, attention output and MLP at the last position only (its earlier
positions only supply keys and values, which nothing else reads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.models.layers import Block, DecoderShape, RMSNorm, Rows
from core.models.masks import attention_bias, causal_layout, positions_from_mask
from core.models.projection import LoRASettings


class Decoder(nn.Module):
    """The kept decoder layers of a pretrained LLM. See the module docstring for the layer indices."""

    def __init__(self, shape: DecoderShape, inv_freq: Tensor, rope_scale: float, lora: LoRASettings,
                 layer_indices: Sequence[int], base_num_layers: int, embed_tokens: nn.Embedding | None = None,
                 tokenizer=None) -> None:
        super().__init__()
        self.shape = shape
        self.layers = nn.ModuleList(Block(shape, lora) for _ in layer_indices)
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)  # (D / 2,), float32 always
        self.rope_scale = rope_scale  # YaRN-style rope types scale cos and sin
        self.embed_tokens = embed_tokens
        self.tokenizer = tokenizer
        self.layer_indices = tuple(layer_indices)
        self.base_num_layers = base_num_layers  # decoder layers of the pretrained model
        self._stack = self._run_layers  # torch.compile replaces it (compile_stack)
        self._call_layer = call_layer  # compile_stack marks it a region compiled once for every layer
        self._static_batches: list[int] | None = None  # the batch sizes the compiled stack has seen
        self._prefix_memo: tuple[tuple, list[Tensor]] | None = None  # see _kept_prefix
        self._rope_tables = Kept()  # see _rope
        self._layouts = Kept()  # see _layout

    @property
    def hidden_size(self) -> int:
        return self.shape.hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed_text(self, text: str, bos: bool = False) -> Tensor:
        """Token embeddings (T, H) of `text`, no gradient; with `bos` the tokenizer's BOS token first
        (for SmolLM2 that is <|im_start|>, as in its chat format). No other special tokens are added."""
        if self.embed_tokens is None:
            raise RuntimeError("the vocabulary was dropped; call embed_text before drop_vocabulary()")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id] + ids
        weight = self.embed_tokens.weight
        with torch.no_grad():
            return F.embedding(torch.tensor(ids, dtype=torch.long, device=weight.device), weight)

    def drop_vocabulary(self) -> None:
        """Free the token embedding table (vocab x hidden); embed_text no longer works."""
        self.embed_tokens = None

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor, layers: Sequence[int],
                shared_prefix: Tensor | None = None, last_position: bool = False) -> list[Tensor]:
        """The hidden states (B, T, H) at the requested indices, in the order asked (with
        `last_position`, the last position's (B, H) only, and the top layer runs there alone).

        inputs_embeds: (B, T, H); attention_mask: (B, T), 1 = real token; positions come from the
        mask, so padding may sit anywhere before a row's last real token. `shared_prefix` (P, H):
        tokens before every row, whose keys and values every row reads. Layers above the highest
        index asked are not run. Under autocast the layers compute in autocast's dtype.
        """
        wanted = self._check(inputs_embeds, attention_mask, layers)
        real, asked_time = inputs_embeds.shape[:2]  # rows beyond `real` are padding (a compiled stack's short batch)
        if self._static_batches is not None:
            inputs_embeds, attention_mask = self._pad_batch(inputs_embeds, attention_mask)
        if shared_prefix is not None and torch.is_grad_enabled() and shared_prefix.shape[0] > asked_time:
            # the prefix row (see _rows) is as long as the rows: left-pad them, masked, to the prefix's length
            extra = shared_prefix.shape[0] - asked_time
            inputs_embeds, attention_mask = F.pad(inputs_embeds, (0, 0, extra, 0)), F.pad(attention_mask, (extra, 0))
        batch, time, hidden = inputs_embeds.shape
        device = inputs_embeds.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.norm.weight.dtype
        depth = min(max(wanted), self.num_layers)
        keep = tuple(sorted({index for index in wanted if 0 < index <= depth}))
        with torch.autocast(device, enabled=False):  # casts are explicit (in_dtype), once per weight and step
            x = inputs_embeds.to(dtype)
            x_rows, rows, positions, bias, given = self._rows(x, attention_mask, shared_prefix, depth)
            kept = self._stack(x_rows, self._rope(positions, dtype), bias, rows, given, depth, keep,
                               last_position and time > 1)
            states = {index: state.view(batch, -1, hidden) for index, state in zip(keep, kept[:-1])}
            states[0] = x
            states[depth] = kept[-1].view(batch, -1, hidden)  # (B, 1, H) when the top layer ran at the last position
            if self.num_layers + 1 in wanted:
                states[self.num_layers + 1] = self.norm(states[depth])
        if real < batch:
            states = {index: state[:real] for index, state in states.items()}
        if last_position:
            return [states[index][:, -1] for index in wanted]
        return [states[index][:, time - asked_time:] if time > asked_time else states[index] for index in wanted]

    def _check(self, inputs_embeds: Tensor, attention_mask: Tensor, layers: Sequence[int]) -> list[int]:
        wanted, top = list(layers), self.num_layers + 1
        if not wanted or any(not 0 <= index <= top for index in wanted):
            raise ValueError(f"layers: expected indices in 0..{top} (0 = embeddings, {top} = final norm), got {wanted}")
        batch, time, hidden = inputs_embeds.shape
        if hidden != self.hidden_size or tuple(attention_mask.shape) != (batch, time):
            raise ValueError(f"expected inputs_embeds (B, T, {self.hidden_size}) and attention_mask (B, T), "
                             f"got {tuple(inputs_embeds.shape)} and {tuple(attention_mask.shape)}")
        return wanted

    def _rows(self, x: Tensor, attention_mask: Tensor, shared_prefix: Tensor | None, depth: int):
        """(input rows, their layout, each row's position, the attention mask, the prefix's kept keys
        and values or None).

        With gradients the prefix runs as one more row, left-padded to the rows' length, along with
        the batch's (one projection and one attention call per layer for all), so gradients reach
        the weights through its keys and values; without, its keys and values are computed once and
        kept (`_kept_prefix`)."""
        batch, time, hidden = x.shape
        offset = 0 if shared_prefix is None else shared_prefix.shape[0]
        positions = (positions_from_mask(attention_mask) + offset).flatten()
        x_rows = x.view(batch * time, hidden)
        if shared_prefix is None or not torch.is_grad_enabled():
            given = None if shared_prefix is None else self._kept_prefix(shared_prefix, x.dtype, depth)
            bias = attention_bias(attention_mask, offset, x.dtype, self._layout(time, offset, x.device, x.dtype))
            return x_rows, Rows(batch, time, offset=offset), positions, bias, given
        padding = time - offset  # forward made the rows at least as long as the prefix
        prefix_mask = torch.cat([attention_mask.new_zeros(1, padding), attention_mask.new_ones(1, offset)], dim=1)
        bias = attention_bias(torch.cat([prefix_mask, attention_mask]), offset, x.dtype,
                              self._layout(time, offset, x.device, x.dtype))
        # the prefix row reads the prefix in its own row, not again in the prefix slots
        bias[0, :, :, :offset] = torch.finfo(x.dtype).min
        prefix_rows = torch.cat([x.new_zeros(padding, hidden), shared_prefix.to(x.dtype)])
        positions = torch.cat([positions_from_mask(prefix_mask).flatten(), positions])
        return torch.cat([prefix_rows, x_rows]), Rows(batch, time, True, offset), positions, bias, None

    def _pad_batch(self, inputs_embeds: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Pad a batch with empty rows up to the smallest batch size the compiled stack has seen, so a
        short last batch reuses its graph (and CUDA graph) instead of compiling another. The padded
        rows are sliced off the states, so no loss or gradient ever sees them."""
        batch = inputs_embeds.shape[0]
        sizes = [size for size in self._static_batches if size >= batch]
        if not sizes:
            self._static_batches.append(batch)
            return inputs_embeds, attention_mask
        extra = min(sizes) - batch
        if not extra:
            return inputs_embeds, attention_mask
        return (torch.cat([inputs_embeds, inputs_embeds.new_zeros(extra, *inputs_embeds.shape[1:])]),
                torch.cat([attention_mask, attention_mask.new_zeros(extra, attention_mask.shape[1])]))

    def _run_layers(self, x: Tensor, rope, mask: Tensor, rows: Rows, given: list[Tensor] | None, depth: int,
                    keep: tuple[int, ...], top_at_last: bool) -> tuple[Tensor, ...]:
        """Run the first `depth` layers on the rows x (R, H): the batch's states (B * T, H) at `keep`
        (1-based) below the top, then the top layer's (B * T, H), or (B, H) with `top_at_last`."""
        kept = []
        for index, layer in enumerate(self.layers[:depth], start=1):
            top = index == depth
            x, _ = self._call_layer(layer, x, rope, mask, rows, None if given is None else given[index - 1], top,
                                    top_at_last and top)
            if index in keep and not top:
                kept.append(x[rows.prefix:] if rows.prefix else x)
        return (*kept, x)

    def _kept_prefix(self, prefix: Tensor, dtype: torch.dtype, depth: int) -> list[Tensor]:
        """The first `depth` layers' keys and values (1, 2 nkv, P, D) of the shared prefix (P, H), run
        in `dtype` and kept (no gradients flow here: evaluation, a frozen teacher, the teacher cache)
        while the weights, the prefix and the dtype stay the same: the prefix pass is a whole extra
        run of every layer, which a GPU pays in kernel launches however short it is."""
        key = memo_key(self.layers, prefix, dtype)
        if self._prefix_memo is None or self._prefix_memo[0] != key or len(self._prefix_memo[1]) < depth:
            x, rows = prefix.to(dtype), Rows(1, prefix.shape[0])
            rope = self._rope(torch.arange(prefix.shape[0], device=prefix.device), dtype)
            mask = attention_bias(torch.ones(1, prefix.shape[0], device=prefix.device), 0, dtype)
            keys_values = []
            for layer in self.layers[:depth]:
                x, own = layer(x, rope, mask, rows)
                keys_values.append(own)
            self._prefix_memo = (key, keys_values)
        return self._prefix_memo[1][:depth]

    def _layout(self, time: int, prefix_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """`causal_layout`, kept while the batches' shape stays (the prefix's own pass makes its own)."""
        return self._layouts.get((time, prefix_len, device, dtype),
                                 lambda: causal_layout(time, prefix_len, device, dtype))

    def _rope(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(cos, sign-folded sin) of each row's position (R,), for its q, k and v heads: each (R, heads, D)
        in `dtype` (see `rotate`); v heads get cos 1 and sin 0, which leaves them as they are."""
        device = positions.device
        cos, sin, rotated = self._rope_tables.get((dtype, device), lambda: self._rotary_tables(device, dtype))
        return torch.where(rotated, cos[positions], 1.0), torch.where(rotated, sin[positions], 0.0)

    def _rotary_tables(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """(cos, sign-folded sin) of every position (max_positions, 1, D) in `dtype`, and which heads
        rotate (heads, 1): the q and k heads, not v."""
        # every position's angles in float32: bf16 positions would shift the angles of far ones
        freqs = torch.arange(self.shape.max_positions, device=device)[:, None] * self.inv_freq
        cos, sin = freqs.cos() * self.rope_scale, freqs.sin() * self.rope_scale
        s = self.shape
        heads = torch.arange(s.num_heads + 2 * s.num_kv_heads, device=device)
        return (torch.cat([cos, cos], -1).to(dtype)[:, None], torch.cat([-sin, sin], -1).to(dtype)[:, None],
                (heads < s.num_heads + s.num_kv_heads)[:, None])

    def cast_layers(self, dtype: torch.dtype) -> None:
        """Store the decoder layers and the final norm in `dtype`; LoRA weights stay float32 (they
        train), and so do the rotary frequencies (bf16 would shift the angles of far positions)."""
        for name, param in self.named_parameters():
            if "lora_" not in name and name.startswith(("layers.", "norm.")):
                param.data = param.data.to(dtype)

    def compile_stack(self, backend: str | Callable = "inductor", mode: str = "default") -> None:
        """torch.compile the whole layer stack as one graph (fullgraph, static shapes). `mode`
        "reduce-overhead" replays it as CUDA graphs; backend "aot_eager" traces without kernels (tests).
        The layers below the top are one nested region, traced and compiled once for all of them
        (torch 2.13 on)."""
        import torch._dynamo  # noqa: PLC0415

        # variants: training or no-grad, top layer at the last position or not, a short last batch
        name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
        setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 32))
        # dynamo traces one layer and inductor generates its kernels once, not 30 times: the 30-layer
        # stack compiles in 40% of the time on a CPU (bench/compile_time.py). Regions are young (their
        # CUDA-graph handling changed through 2026): an older torch than the one tested inlines every layer
        regions = torch.__version__ >= (2, 13)
        self._call_layer = torch.compiler.nested_compile_region(call_layer) if regions else call_layer
        self._stack = torch.compile(self._run_layers, fullgraph=True, dynamic=False, backend=backend, mode=mode)
        self._static_batches = []


def call_layer(layer: Block, *args) -> tuple[Tensor, Tensor]:
    """`layer(*args)`: a function of its own, so that a compiled stack can mark it a nested region."""
    return layer(*args)


class Kept:
    """One value kept while its key stays the same (tables a forward pass would otherwise rebuild)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value = None

    def get(self, key: tuple, make):
        """The kept value if `key` is the last one asked for, else `make()`, kept under `key`."""
        if self._value is None or self._key != key:
            self._key, self._value = key, make()
        return self._value


def memo_key(layers: nn.Module, prefix: Tensor, dtype: torch.dtype) -> tuple:
    """What the prefix's keys and values depend on: every layer weight (storage and in-place version,
    so an optimizer step or a loaded checkpoint changes it), the prefix, and the dtype it runs in."""
    weights = tuple((p.data_ptr(), p._version, p.dtype) for p in layers.parameters())
    return weights, prefix.data_ptr(), prefix._version, prefix.dtype, prefix.device, dtype
