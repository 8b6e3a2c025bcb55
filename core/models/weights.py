"""Weight names: from a Hugging Face LLaMA-family checkpoint (or a run saved before the lean decoder)
to core.models.decoder's fused projections.

The decoder keeps q/k/v as one `self_attn.qkv_proj` and gate/up as one `mlp.gate_up_proj`, so a
checkpoint's separate matrices are concatenated along their output rows, in that order. LoRA
weights saved through peft (`mlp.gate_proj.lora_A.default.weight`) become the fused projection's
per-part adapters (`mlp.gate_up_proj.lora_A.gate_proj`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import Tensor, cat

# decoder projection -> (its parts in output order, the Hugging Face module holding them)
FUSED = {"self_attn.qkv_proj": (("q_proj", "k_proj", "v_proj"), "self_attn"),
         "self_attn.o_proj": (("o_proj",), "self_attn"),
         "mlp.gate_up_proj": (("gate_proj", "up_proj"), "mlp"),
         "mlp.down_proj": (("down_proj",), "mlp")}
NORMS = ("input_layernorm.weight", "post_attention_layernorm.weight")
PART_OF = {part: projection for projection, (parts, _) in FUSED.items() for part in parts}
_PEFT_LORA = re.compile(r"^(?P<layer>.*layers\.\d+\.)(self_attn|mlp)\.(?P<part>\w+_proj)"
                        r"\.lora_(?P<ab>[AB])\.default\.weight$")
_HF_LINEAR = re.compile(r"^(?P<layer>.*layers\.\d+\.)(self_attn|mlp)\.(?P<part>\w+_proj)\.(weight|bias)$")


def layer_weights(read: Callable[[str], Tensor], source: str, target: str, names: set[str]) -> dict[str, Tensor]:
    """One decoder layer's weights under `target` (e.g. "layers.0."), read from a Hugging Face layer
    under `source` (e.g. "model.layers.3."); `names` is every name the checkpoint holds."""
    out = {target + norm: read(source + norm) for norm in NORMS}
    for projection, (parts, module) in FUSED.items():
        out[f"{target}{projection}.weight"] = cat([read(f"{source}{module}.{p}.weight") for p in parts])
        biases = [f"{source}{module}.{p}.bias" for p in parts]
        if all(b in names for b in biases):
            out[f"{target}{projection}.bias"] = cat([read(b) for b in biases])
    return out


def upgrade_trainable(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Trainable weights saved with Hugging Face layer names (runs before the lean decoder) under the
    decoder's names; weights already in the decoder's names pass through unchanged."""
    out, linear = {}, {}
    for name, tensor in weights.items():
        lora, plain = _PEFT_LORA.match(name), _HF_LINEAR.match(name)
        if lora:
            projection = PART_OF[lora["part"]]
            out[f"{lora['layer']}{projection}.lora_{lora['ab']}.{lora['part']}"] = tensor
        elif plain and plain["part"] in PART_OF:  # `training: full`: every matrix trained
            linear[name] = tensor
        else:
            out[name] = tensor
    saved = {**out, **linear}  # the norms stay under their names; the fused matrices replace the separate ones
    for layer in sorted({_HF_LINEAR.match(name)["layer"] for name in linear}):
        out.update(layer_weights(saved.__getitem__, layer, layer, set(linear)))
    return out
