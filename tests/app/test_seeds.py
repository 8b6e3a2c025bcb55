"""Results page over planted seed groups (bench/fixture_store.py build_seed_store, 40 users, HR@10):
mean, std and n of a seed group against a hand computation, the paired verdict for a planted
difference and for identical runs, and the refusal for runs on different datasets."""

import base64

import numpy as np
import pytest

from core.results.seeds import seedless_key
from core.store import runs as run_store
from core.store.paths import Paths


def _no_errors(app) -> None:
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]


def _results(open_page, ids, names, grouped=True):
    """The Results page with seed 0 of each named group picked (grouping brings the other seeds)."""
    app = open_page("results")
    app.multiselect(key="results_runs").set_value([ids[name][0] for name in names])
    app.selectbox(key="results_metric").set_value("HR@10")
    app.toggle(key="results_group_seeds").set_value(grouped)
    app.run()
    _no_errors(app)
    return app


def _key(root, run_id) -> str:
    return seedless_key(run_store.read_spec(Paths(root).runs, run_id)["spec"])


def _table(app, column: str):
    return next(df.value for df in app.dataframe if column in df.value.columns)


def _numbers(values) -> list[float]:
    """A plotly JSON array: a list, or {'bdata': base64, 'dtype': ...} for numpy data."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def _pair(app, root, ids, a: str, b: str):
    app.selectbox(key="results_pair_a").set_value(_key(root, ids[a][0]))
    app.selectbox(key="results_pair_b").set_value(_key(root, ids[b][0]))
    app.run()
    _no_errors(app)
    return app


def test_seed_group_shows_mean_std_and_n(seeded, open_page, figures):
    root, ids = seeded
    app = _results(open_page, ids, ["base", "better"])
    full = _table(app, "HR@10").set_index("run")
    base = next(label for label in full.index if label.endswith(_key(root, ids["base"][0])[:6]))
    # HR@10 per seed 0.25, 0.50, 0.75: mean 0.5; sample std sqrt((0.25² + 0 + 0.25²) / 2) = 0.25; n 3
    assert full.loc[base, "seeds"] == 3 and full.loc[base, "HR@10"] == "0.5000 ± 0.2500"
    bars = next(f for f in figures(app) if "95% bootstrap" in f["layout"]["title"]["text"])
    full_bar = next(t for t in bars["data"] if t["name"] == base and t["xaxis"] == "x")
    assert _numbers(full_bar["y"]) == [pytest.approx(0.5)] and "error_y" in full_bar
    reproduction = _table(app, "HR@10 (full) %").set_index("run")
    assert reproduction.loc[base, "HR@10 (full) %"] == "50.00 ± 25.00" and reproduction.loc[base, "seeds"] == 3

    single = _table(_results(open_page, ids, ["base", "better"], grouped=False), "HR@10")
    assert list(single["seeds"]) == [1, 1] and list(single["HR@10"]) == ["0.2500", "1.0000"]  # seed 0 alone


def test_paired_verdicts_planted_difference_and_identical_runs(seeded, open_page):
    root, ids = seeded
    app = _pair(_results(open_page, ids, ["better", "base", "same"]), root, ids, "better", "base")
    paired = _table(app, "verdict")
    assert list(paired["seeds"]) == ["seed 0", "seed 1", "seed 2", "all 3 seeds"] * 2  # full, sampled
    assert list(paired["resamples"]) == ["users"] * 3 + ["seeds and users"] + ["users"] * 3 + ["seeds and users"]
    assert (paired["verdict"] == "significant").all() and (paired["95% CI low"] > 0).all()
    assert list(paired["difference"][:4]) == pytest.approx([0.75, 0.5, 0.25, 0.5])  # 1 - 0.25, 1 - 0.5, ...
    assert (paired["users"] == 40).all()

    paired = _table(_pair(app, root, ids, "same", "base"), "verdict")
    assert (paired["verdict"] == "inside the noise").all()
    assert (paired["difference"] == 0).all() and (paired["p-value"] == 1).all()


def test_runs_on_different_data_are_refused_with_a_message(seeded, open_page):
    root, ids = seeded
    app = _pair(_results(open_page, ids, ["other", "base"]), root, ids, "other", "base")
    assert any("different data (dataset: 'other' vs 'toy')" in w.value for w in app.warning)
    assert not any("verdict" in df.value.columns for df in app.dataframe)
