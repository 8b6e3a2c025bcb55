"""The Tour's known-answer demo: a synthetic dataset with a planted rule that needs depth, whose
best possible score is known exactly (the generator's oracle), made on this machine in a second.

An order-5 Markov rule over 300 items (core/data/rules.py): the groups of the last five items (3
groups, so 243 contexts) pick the next item among 3 candidates, 90% of the time. One layer of
SmolLM2 cannot combine five positions into the context within the cpu-quick budget, two can:
docs/results/depth-and-distillation.md measures this, and what distillation does, with 3 seeds.
"""

from __future__ import annotations

from core.config import DataConfig
from core.data.prepare import prepare
from core.data.synth_config import SynthConfig
from core.data.synthetic import ensure, generated_sidecar
from core.store.paths import Paths

NAME = "synth-markov5"
SETTINGS = SynthConfig(users=4000, items=300, mean_len=20.0, rule="markov", order=5, groups=3, candidates=3,
                       strength=0.9, seed=0)
REPORT = "docs/results/depth-and-distillation.md"


def present(paths: Paths) -> bool:
    """Whether data/raw/<NAME>/ holds this dataset, generated with exactly these settings."""
    return generated_sidecar(paths.raw / NAME, NAME, SETTINGS) is not None


def make(paths: Paths) -> None:
    """Generate the dataset (unless present) and prepare it, as `slmrec data synth` does; DataError when
    data/raw/<NAME>/ holds something else."""
    ensure(SETTINGS, paths.raw / NAME, NAME)
    prepare(DataConfig(dataset=NAME), paths.data_root)


def oracle(paths: Paths) -> dict[str, float] | None:
    """The best possible test metrics (the generator's exact oracle, full ranking with the history
    masked, as the runs rank), or None if the dataset is absent."""
    sidecar = generated_sidecar(paths.raw / NAME, NAME, SETTINGS)
    return sidecar["oracle"]["test"] if sidecar else None
