"""Removing decoder layers from a loaded model, without retraining (ShortGPT, Men et al. 2024;
Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers").

Layers are named by their 1-based number among the kept layers (the decoder's hidden-state
convention: state l is the residual stream after kept layer l). The remaining layers keep their
weights and their original (0-based) indices in `layer_indices`, so the result is the decoder that
`build_decoder(..., indices=remaining)` would build from the same weights.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from core.eval.drop_rules import listed
from core.models.decoder import Decoder


def drop_layers(decoder: Decoder, numbers: Iterable[int]) -> list[int]:
    """Remove the kept layers numbered `numbers` (1-based) in place; return their original indices.

    Memos that hold per-layer results are cleared: the shared prefix's keys and values are per
    layer (its memo key lists every layer weight, so it could not match, but it would pin the removed
    layers' tensors), and a compiled stack's batch sizes start over. Each remaining projection's
    merged LoRA weight is keyed on its own parameters, which do not change, so it stays valid.
    """
    numbers = listed(decoder.num_layers, list(numbers))  # a RuleError (ValueError) names what is wrong
    gone = set(numbers)
    removed = [decoder.layer_indices[n - 1] for n in numbers]
    kept = [(layer, index) for number, (layer, index) in enumerate(zip(decoder.layers, decoder.layer_indices), 1)
            if number not in gone]
    decoder.layers = nn.ModuleList(layer for layer, _ in kept)
    decoder.layer_indices = tuple(index for _, index in kept)
    decoder._prefix_memo = None
    if decoder._static_batches is not None:
        decoder._static_batches = []
    return removed
