"""Interleaved repetitions: how the benchmarks hold on a busy machine.

A shared machine's speed drifts by tens of percent within minutes, so a teacher measured first and
a student measured a minute later can differ by the drift alone. Here every measurement is called
once to warm up (its result dropped), then all of them once per round, round after round (teacher,
student, teacher, student, ...), so a slow minute slows both alike. Each is reported as the median
of its rounds with their range, and a ratio also as the median of its per-round ratios.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from statistics import median
from typing import Callable


@dataclass(frozen=True)
class Rounds:
    """Each measurement's values, one per round, and the seconds its warm-up call took (for a
    compiled model, mostly its compilation)."""

    values: dict[str, list[float]]
    first_call_s: dict[str, float]


def interleaved(measures: dict[str, Callable[[], float]], repeats: int) -> Rounds:
    """One warm-up call of every measurement, then `repeats` rounds calling each once, in dict order."""
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, got {repeats}")
    first_call_s = {}
    for name, measure in measures.items():  # compilation, allocation, caches: the first call is not timed
        start = time.perf_counter()
        measure()
        first_call_s[name] = time.perf_counter() - start
        # stdout stays JSON; a run cut short by a timeout still shows how far its warm-up got
        print(f"warm-up {name}: {first_call_s[name]:.1f} s", file=sys.stderr, flush=True)
    values: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            values[name].append(measure())
    return Rounds(values, first_call_s)


def summary(values: list[float], key: str) -> dict:
    """`key`: the median of `values`; `key_range`: [min, max]; `repeats`: how many."""
    return {key: median(values), f"{key}_range": [min(values), max(values)], "repeats": len(values)}


def ratio(numerators: list[float], denominators: list[float], key: str) -> dict:
    """`key`: the ratio of the medians; `key_paired`: the median of the per-round ratios;
    `key_paired_range`: their [min, max]."""
    paired = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return {key: median(numerators) / median(denominators), f"{key}_paired": median(paired),
            f"{key}_paired_range": [min(paired), max(paired)]}
