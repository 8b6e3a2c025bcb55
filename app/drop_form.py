"""The Layers page's "Drop layers" form: its values -> drop run specs (refused with a message naming the field
before anything is queued), their submission through core.jobs.planning, and what the banner says.

One setting is one drop run (core.config.DropConfig) of a finished teacher or student: a rule and a number
n of layers to drop, or the layers picked by hand (rule list), healed or not. "every rule" and a range of n
make a sweep: one run per (rule, n), as `slmrec submit drop --rule all --n 1-7` plans it. The specs are
the CLI's, so a run queued from either is reused by the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.jobs import planning
from core.config import ConfigError, DropConfig, RunSpec, from_dict
from core.jobs.drop_plan import source_spec
from core.store.paths import Paths

RULES = {"last": "truncation: drop the last n", "influence": "block influence: drop the n lowest",
         "angular": "angular distance: drop the n-layer run closest in angle", "list": "the layers I pick",
         "all": "every rule (truncation, block influence, angular), as a sweep"}
EVERY_RULE = ("last", "influence", "angular")


@dataclass(frozen=True)
class DropSettings:
    """Everything the form sets; several n (or every rule) make a sweep."""

    run: str
    rule: str = "last"  # a key of RULES
    n: str = "1"  # '2', a range '1-7' or a list '1,3,5' (as the CLI's --n)
    layers: tuple[int, ...] = ()  # rule list: 1-based layer numbers
    heal_steps: int = 0


def parse_n(text: str) -> list[int]:
    """'2' -> [2]; '1-3' -> [1, 2, 3]; '1, 3' -> [1, 3]; ConfigError naming drop.n otherwise."""
    found: list[int] = []
    try:
        for part in (p.strip() for p in str(text).split(",")):
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
            if first > last:
                raise ValueError(part)
            found += range(first, last + 1)
    except ValueError:
        raise ConfigError(f"drop.n: '{text}' is not a number of layers, a range like 1-7 or a list like 1,3,5") \
            from None
    return sorted(set(found))


def settings(s: DropSettings, depth: int) -> list[DropConfig]:
    """The drop runs the form asks for, one per (rule, n); ConfigError naming the field for bad input."""
    if s.rule not in RULES:
        raise ConfigError(f"drop.rule: expected one of {', '.join(RULES)}, got '{s.rule}'")
    if s.heal_steps < 0:
        raise ConfigError(f"drop.heal_steps: expected a number of steps >= 0 (0: not healed), got {s.heal_steps}")
    if s.rule == "list":
        # n is left at its default: rule list ignores it, and the CLI leaves it so too (same settings hash)
        return [DropConfig(run=s.run, rule="list", layers=_layers(s.layers, depth), heal_steps=s.heal_steps)]
    ns = parse_n(s.n)
    if ns[-1] >= depth:
        raise ConfigError(f"drop.n: n = {ns[-1]} drops every layer of this {depth}-layer model; expected n from 0 "
                          f"to {depth - 1}")
    rules = EVERY_RULE if s.rule == "all" else (s.rule,)
    return [DropConfig(run=s.run, rule=rule, n=n, heal_steps=s.heal_steps) for rule in rules for n in ns]


def _layers(layers: tuple[int, ...], depth: int) -> tuple[int, ...]:
    if not layers:
        raise ConfigError("drop.layers: no layers picked; pick the layers to drop (rule 'the layers I pick')")
    outside = [x for x in layers if not 1 <= x <= depth]
    if outside:
        raise ConfigError(f"drop.layers: {outside} are not layers of this {depth}-layer model; expected 1..{depth}")
    if len(set(layers)) >= depth:
        raise ConfigError(f"drop.layers: dropping all {depth} layers leaves none; keep at least one")
    return tuple(sorted(set(layers)))


def drop_spec(drop: DropConfig) -> RunSpec:
    """The drop run's spec as `slmrec submit drop` builds it (so both find each other's runs): the drop section
    on core's defaults; planning gives it the source's data and prompt (core/jobs/drop_plan.py)."""
    return from_dict({"kind": "drop", "drop": asdict(drop)})


def build_specs(paths: Paths, s: DropSettings, depth: int) -> list[RunSpec]:
    """Every drop run's spec for the form's values, each checked against its source run by core (as the CLI
    checks them); ConfigError naming the field before anything is queued."""
    specs = [drop_spec(drop) for drop in settings(s, depth)]
    for spec in specs:
        source_spec(paths, spec)
    return specs


def submit(paths: Paths, specs: list[RunSpec]) -> list[str]:
    """Queue each drop run (core.planning.plan: an influence or angular rule also plans the analysis it reads);
    the run ids in order, parents first, each once."""
    ids: list[str] = []
    for spec in specs:
        ids += [r for r in planning.plan(paths, spec) if r not in ids]
    return ids
