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
from core.data.synthetic import files, generate, same_settings
from core.store.atomic import read_json
from core.store.paths import Paths

NAME = "synth-markov5"
SETTINGS = SynthConfig(users=4000, items=300, mean_len=20.0, rule="markov", order=5, groups=3, candidates=3,
                       strength=0.9, seed=0)
REPORT = "docs/results/depth-and-distillation.md"


def present(paths: Paths) -> bool:
    """Whether data/raw/<NAME>/ holds this dataset, generated with exactly these settings."""
    return same_settings(paths.raw / NAME, NAME, SETTINGS)


def make(paths: Paths) -> None:
    """Generate the dataset (unless present) and prepare it, as `slmrec data synth` does."""
    folder = paths.raw / NAME
    if folder.is_dir() and any(folder.iterdir()) and not present(paths):
        raise ValueError(f"{folder} holds another dataset; move it away to make the known-answer dataset")
    if not present(paths):
        generate(SETTINGS, folder, NAME)
    prepare(DataConfig(dataset=NAME), paths.data_root)


def oracle(paths: Paths) -> dict[str, float] | None:
    """The best possible test metrics (the generator's exact oracle, full ranking with the history
    masked, as the runs rank), or None if the dataset is absent."""
    sidecar = read_json(files(paths.raw / NAME, NAME)["rule"]) if present(paths) else None
    return sidecar["oracle"]["test"] if sidecar else None
