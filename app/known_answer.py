"""The Tour's known-answer demo: a synthetic dataset with a planted rule that needs depth, whose
best possible score is known exactly (the generator's oracle), made on this machine in a second.

Two-hop induction over 100 items (core/data/rules.py): the next item is the one that followed the
previous occurrence of the item that followed the current one's previous occurrence. Its targets
are mostly items of the user's history, so full ranking keeps the history (rec.mask_history off).
What depth and distillation do on it is measured in docs/results/depth-and-distillation.md.
"""

from __future__ import annotations

from core.config import DataConfig
from core.data.prepare import prepare
from core.data.synth_config import SynthConfig
from core.data.synthetic import files, generate, same_settings
from core.store.atomic import read_json
from core.store.paths import Paths

NAME = "synth-induction2"
SETTINGS = SynthConfig(users=4000, items=100, mean_len=30.0, rule="induction", order=2, strength=0.9, zipf=1.0,
                       seed=0)
MASK_HISTORY = False  # the rule names items of the history: masking them would hide most targets
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
    """The best possible test metrics (the generator's exact oracle, history kept), or None if absent."""
    sidecar = read_json(files(paths.raw / NAME, NAME)["rule"]) if present(paths) else None
    return sidecar["oracle"]["unmasked"]["test"] if sidecar else None
