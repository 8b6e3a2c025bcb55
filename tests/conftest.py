"""Shared fixtures: a project folder with a small generated dataset that has sequential structure."""

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def write_toy_dataset(root: Path, name: str = "toy", users: int = 60, items: int = 30, seed: int = 0) -> Path:
    """Users walk through items mostly in order (item i -> i+1), so a sequence model can learn it."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp,rating"]
    for u in range(users):
        length = int(rng.integers(6, 14))
        item = int(rng.integers(1, items + 1))
        for t in range(length):
            rows.append(f"u{u},i{item},{1000 + 10 * t},{int(rng.integers(1, 6))}")
            item = item % items + 1 if rng.random() < 0.8 else int(rng.integers(1, items + 1))
    folder = root / "data" / "raw" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def toy_spec(kind: str, **sections):
    """A `tiny`-preset spec on the toy dataset; dict sections update the preset, other values replace."""
    from core.config import apply_preset

    base = {"data": {"dataset": "toy", "kcore": 0}, "train": {"max_steps": 0, "epochs": 2}}
    for key, value in sections.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return apply_preset("tiny", base, kind)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root holding data/raw/toy/toy.csv."""
    write_toy_dataset(tmp_path)
    return tmp_path
