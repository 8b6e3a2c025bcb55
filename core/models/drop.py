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

from core.models.decoder import Decoder


def check_drop(num_layers: int, numbers: Iterable[int], field: str = "drop.layers") -> list[int]:
    """The sorted layer numbers to drop, or a ValueError naming `field`: each in 1..num_layers, no
    repeats, and at least one layer left."""
    numbers = list(numbers)
    wrong = [n for n in numbers if not isinstance(n, int) or not 1 <= n <= num_layers]
    if wrong:
        raise ValueError(f"{field}: layer(s) {wrong} out of range; the model has {num_layers} layers, "
                         f"numbered 1..{num_layers}")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{field}: a layer is listed twice in {numbers}")
    if len(numbers) >= num_layers:
        raise ValueError(f"{field}: dropping {len(numbers)} of {num_layers} layers leaves none; "
                         f"drop at most {num_layers - 1}")
    return sorted(numbers)


def drop_layers(decoder: Decoder, numbers: Iterable[int]) -> list[int]:
    """Remove the kept layers numbered `numbers` (1-based) in place; return their original indices.

    Memos that hold per-layer results are cleared: the shared prefix's keys and values are per
    layer (its memo key lists every layer weight, so it could not match, but it would pin the removed
    layers' tensors), and a compiled stack's batch sizes start over. Each remaining projection's
    merged LoRA weight is keyed on its own parameters, which do not change, so it stays valid.
    """
    numbers = check_drop(decoder.num_layers, numbers)
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
