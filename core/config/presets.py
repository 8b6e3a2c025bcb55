"""Presets: partial specs applied before explicit options, and the one way a spec is made from them."""

from __future__ import annotations

from typing import Any

from core.config.checks import ConfigError
from core.config.codec import from_dict
from core.config.spec import RunSpec

# Presets: partial specs applied before explicit options. Sizes are chosen for the hardware each
# names: `tiny` runs in seconds (tests, demos), `cpu-quick` in minutes on 2 cores.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "data": {"max_users": 64, "max_len": 10, "n_negatives": 99},
        "train": {"epochs": 1, "batch_size": 16, "max_steps": 4, "log_every": 1, "lr": 1e-3},
        "sasrec": {"hidden": 32, "layers": 1, "heads": 1, "epochs": 1},
        "backbone": {"base": "tiny", "depth": 4},
        "distill": {"blocks": 2},
        "analysis": {"users": 32},
    },
    "cpu-quick": {
        "data": {"max_len": 20},
        "train": {"epochs": 3, "batch_size": 32, "lr": 2e-3, "log_every": 5},
        "backbone": {"base": "smollm2", "depth": 8},
        "distill": {"blocks": 4},
        "analysis": {"users": 256},
    },
    "paper": {
        "data": {"max_len": 30, "train_targets": "prefixes"},
        "train": {"epochs": 3, "batch_size": 256, "lr": 1e-3, "warmup_ratio": 0.05},
        "backbone": {"depth": 8, "training": "lora"},
        "distill": {"blocks": 4, "lambda_cos": 1.0, "lambda_norm": 0.1, "lambda_sup": 1.0},
    },
    "deep": {
        "data": {"max_len": 30, "train_targets": "prefixes"},
        "train": {"epochs": 3, "batch_size": 256, "lr": 1e-3},
        "backbone": {"depth": 30},
        "distill": {"blocks": 2},
    },
}


def apply_preset(preset: str, overrides: dict[str, dict[str, Any]], kind: str) -> RunSpec:
    """A spec from a named preset (or none) with explicit section overrides on top."""
    if preset and preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset '{preset}'; expected one of {', '.join(PRESETS)}")
    merged: dict[str, Any] = {"kind": kind}
    for section, values in PRESETS.get(preset, {}).items():
        merged[section] = dict(values)
    for section, values in overrides.items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    return from_dict(merged)
