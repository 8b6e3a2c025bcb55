"""Which decoder layers to drop: truncation, block influence, angular distance, or an explicit list.

Pure functions over plain similarity rows (dicts as the analysis stage stores them, see
core/stages/analysis.py), for one model of L layers, returning sorted 1-based layer numbers:

- last(L, n): layers L-n+1..L, truncation (the baseline a shallower teacher or student also gives).
- influence(rows, L, n): the n layers of lowest block influence, 1 - cos(state l-1, state l)
  (ShortGPT, Men et al. 2024), read from rows measure "block_influence", a_layer = b_layer = l.
- angular(rows, L, n): the run l+1..l+n of n consecutive layers whose input state l and output state
  l+n are closest, arccos(cos) / pi (Gromov et al. 2024), from rows measure "angular",
  a_layer = l, b_layer = l + n, l = 0..L-n.
- listed(L, layers): the layers given, checked.
Ties go to the lower layer. At least one layer always stays (n < L).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


class RuleError(ValueError):
    """A rule cannot pick layers; the message names the run and what to do."""


def check_n(depth: int, n: int, run: str = "") -> None:
    """Refuse an n that would drop every layer (or is negative)."""
    if not 0 <= n < depth:
        raise RuleError(f"drop.n: n={n} is not possible{_of(run, depth)}; expected 0 <= n <= {depth - 1} "
                        f"(at least one layer stays: dropping {depth} leaves none)")


def _of(run: str, depth: int) -> str:
    """Whose layers a message is about: the run's when the caller knows it, else the model's."""
    return f" for run '{run}' with {depth} layers" if run else f"; the model has {depth} layers"


def last(depth: int, n: int, run: str = "") -> list[int]:
    """The last n layers."""
    check_n(depth, n, run)
    return list(range(depth - n + 1, depth + 1))


def _values(rows: Iterable[dict], measure: str, model: str) -> dict[tuple[int, int], float | None]:
    return {(r["a_layer"], r["b_layer"]): r["value"] for r in rows
            if r["measure"] == measure and r["a_model"] == model and r["b_model"] == model}


def _missing(run: str, analysis_run: str, measure: str, model: str, pairs: Sequence[tuple[int, int]]) -> RuleError:
    return RuleError(f"drop.analysis_run: analysis run '{analysis_run}' has no {measure} value for model '{model}' "
                     f"at (a_layer, b_layer) {list(pairs)[:4]} of run '{run}'; run an analysis of '{run}' alone "
                     "on the valid split (leave drop.analysis_run empty and it is planned)")


def influence(rows: Iterable[dict], depth: int, n: int, model: str, run: str = "", analysis_run: str = "") -> list[int]:
    """The n layers of lowest block influence (state l-1 -> state l)."""
    check_n(depth, n, run)
    values = _values(rows, "block_influence", model)
    gaps = [(layer, layer) for layer in range(1, depth + 1) if not _finite(values.get((layer, layer)))]
    if gaps:
        raise _missing(run, analysis_run, "block_influence", model, gaps)
    ranked = sorted(range(1, depth + 1), key=lambda layer: (values[(layer, layer)], layer))
    return sorted(ranked[:n])


def angular(rows: Iterable[dict], depth: int, n: int, model: str, run: str = "", analysis_run: str = "") -> list[int]:
    """The run l+1..l+n of n consecutive layers whose states l and l+n have the smallest angular distance."""
    check_n(depth, n, run)
    if n == 0:
        return []
    values = _values(rows, "angular", model)
    starts = range(0, depth - n + 1)
    gaps = [(l, l + n) for l in starts if not _finite(values.get((l, l + n)))]
    if gaps:
        raise _missing(run, analysis_run, "angular", model, gaps)
    best = min(starts, key=lambda l: (values[(l, l + n)], l))
    return list(range(best + 1, best + n + 1))


def listed(depth: int, layers: Sequence[int], run: str = "") -> list[int]:
    """The layers given, each in 1..depth, without repeats, leaving at least one (core/models/drop.py
    checks the layers it removes with this too)."""
    wrong = [x for x in layers if not isinstance(x, int) or not 1 <= x <= depth]
    if wrong:
        raise RuleError(f"drop.layers: layer(s) {wrong} out of range{_of(run, depth)}, numbered 1..{depth}")
    if len(set(layers)) != len(layers):
        raise RuleError(f"drop.layers: a layer is listed twice in {list(layers)}")
    check_n(depth, len(layers), run)
    return sorted(layers)


def pick(rule: str, depth: int, n: int, layers: Sequence[int], rows: Iterable[dict] = (), model: str = "",
         run: str = "", analysis_run: str = "") -> list[int]:
    """The layers `rule` drops (core.config.DROP_RULES); `rows` are read by influence and angular only."""
    if rule == "last":
        return last(depth, n, run)
    if rule == "list":
        return listed(depth, layers, run)
    if rule == "influence":
        return influence(rows, depth, n, model, run, analysis_run)
    if rule == "angular":
        return angular(rows, depth, n, model, run, analysis_run)
    raise RuleError(f"drop.rule: expected last, influence, angular or list, got '{rule}'")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
