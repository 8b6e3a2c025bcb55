"""Seed groups: runs whose settings differ only in `train.seed`, and their mean, std and count.

A run's seedless key is the settings hash of its spec with `train.seed` set to 0. Runs refer to
other runs (`sasrec_run`, `distill.teacher_run`, `analysis.run`, `analysis.against`), and a
pipeline run with another seed refers to that seed's parents, so each reference is replaced by
the referenced run's own seedless key (when its spec is known): two students distilled from
teachers that differ only in seed fall into one group, students of a depth-8 and a depth-4
teacher do not. Spread over a group is the mean, the sample standard deviation (n - 1) and n.
Standard library and numpy only: the app and the CLI both use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from core.config import from_dict, settings_hash

# (section or None, field): the spec fields that name another run
REFERENCES = ((None, "sasrec_run"), ("distill", "teacher_run"), ("analysis", "run"), ("analysis", "against"))


def seedless_key(spec: dict, specs: Mapping[str, dict] | None = None) -> str:
    """The settings hash of `spec` (a spec as JSON data) with train.seed 0 and run references resolved.

    `specs` maps run ids to their specs; a reference to a run not in it is kept as the id.
    """
    specs = specs or {}
    parsed = from_dict(spec)
    changes = {"train": replace(parsed.train, seed=0)}
    for section, name in REFERENCES:
        holder = parsed if section is None else changes.get(section, getattr(parsed, section))
        run_id = getattr(holder, name)
        if run_id in specs:
            resolved = "seedless:" + seedless_key(specs[run_id], specs)
            if section is None:
                changes[name] = resolved
            else:
                changes[section] = replace(holder, **{name: resolved})
    return settings_hash(replace(parsed, **changes))


def seed_of(spec: dict) -> int:
    """The run's train.seed (0 when the spec does not set it, as the config's default)."""
    return int(spec.get("train", {}).get("seed", 0))


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # sample standard deviation (n - 1); NaN for a single run
    n: int


def spread(values) -> Spread:
    """Mean, sample std and count of one number per seed."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("spread: need at least one value")
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return Spread(float(values.mean()), std, int(values.size))
