"""The drop-layer rules on constructed similarity tables: each picks the layers it should."""

import pytest

from core.eval.drop_rules import RuleError, angular, influence, last, listed, pick


def row(measure, a, b, value, model="teacher", other=None):
    return {"run_id": "analysis-1", "measure": measure, "a_model": model, "a_layer": a, "b_model": other or model,
            "b_layer": b, "value": value, "n": 50}


def influence_rows(values, model="teacher"):
    """block influence of layer l (state l-1 -> l) = values[l - 1]."""
    return [row("block_influence", layer, layer, v, model) for layer, v in enumerate(values, start=1)]


def angular_rows(distance, depth, model="teacher"):
    """angular for every a < b of states 0..depth, from distance(a, b)."""
    return [row("angular", a, b, distance(a, b), model) for a in range(depth + 1) for b in range(a + 1, depth + 1)]


def test_last_drops_the_top_layers():
    assert last(8, 3) == [6, 7, 8]
    assert last(8, 0) == []
    assert last(2, 1) == [2]


@pytest.mark.parametrize("n", [8, 9, -1])
def test_every_rule_keeps_at_least_one_layer(n):
    rows = influence_rows([0.1] * 8) + angular_rows(lambda a, b: 0.1, 8)
    for rule in ("last", "influence", "angular"):
        with pytest.raises(RuleError, match=r"drop\.n: n=.*run 'teacher-1' with 8 layers.*0 <= n <= 7"):
            pick(rule, 8, n, (), rows, "teacher", "teacher-1")
    with pytest.raises(RuleError, match="drop.n"):
        listed(3, [1, 2, 3], "teacher-1")


def test_influence_drops_the_lowest_block_influence():
    rows = influence_rows([0.9, 0.05, 0.4, 0.02, 0.3, 0.07])
    assert influence(rows, 6, 1, "teacher") == [4]
    assert influence(rows, 6, 3, "teacher") == [2, 4, 6]
    assert influence(rows, 6, 0, "teacher") == []


def test_influence_reads_only_its_model_and_breaks_ties_by_the_lower_layer():
    rows = influence_rows([0.5, 0.2, 0.2, 0.9]) + influence_rows([0.0, 0.9, 0.9, 0.0], model="student")
    rows += [row("cosine", 1, 1, -5.0)]
    assert influence(rows, 4, 1, "teacher") == [2]
    assert influence(rows, 4, 2, "teacher") == [2, 3]
    assert influence(rows, 4, 2, "student") == [1, 4]


def test_angular_drops_the_closest_run_of_n_layers():
    # states 2 and 5 are nearly the same direction: layers 3, 4, 5 change little
    distances = {(2, 5): 0.01, (0, 3): 0.3, (1, 4): 0.2, (3, 6): 0.25}
    rows = angular_rows(lambda a, b: distances.get((a, b), 0.5 + 0.01 * a), 6)
    assert angular(rows, 6, 3, "teacher") == [3, 4, 5]
    # n = 1 compares neighbouring states: the smallest of 0.5 + 0.01 a is at a = 0 -> layer 1
    assert angular(rows, 6, 1, "teacher") == [1]
    assert angular(rows, 6, 0, "teacher") == []


def test_angular_can_drop_the_last_layers_and_ignores_other_models():
    rows = angular_rows(lambda a, b: 0.05 if (a, b) == (2, 4) else 0.5, 4)
    rows += angular_rows(lambda a, b: 0.0, 4, model="student")  # smaller everywhere, but another model
    rows += [row("angular", 0, 2, 0.0, "teacher", other="student")]  # across models, never read
    assert angular(rows, 4, 2, "teacher") == [3, 4]


def test_missing_or_undefined_rows_are_refused_naming_the_runs():
    rows = influence_rows([0.5, None, 0.2])
    with pytest.raises(RuleError, match=r"analysis run 'an-1' has no block_influence value for model 'teacher' "
                                        r"at \(a_layer, b_layer\) \[\(2, 2\)\] of run 'teacher-1'"):
        influence(rows, 3, 1, "teacher", "teacher-1", "an-1")
    with pytest.raises(RuleError, match="no angular value for model 'student'"):
        angular(angular_rows(lambda a, b: 0.1, 3), 3, 1, "student", "student-1", "an-1")
    with pytest.raises(RuleError, match="no block_influence"):
        influence([], 3, 1, "teacher", "teacher-1", "an-1")


def test_listed_checks_range_and_repeats():
    assert listed(8, [5, 2]) == [2, 5]
    with pytest.raises(RuleError, match=r"drop\.layers: layer\(s\) \[0, 9\] out of range for run 'r' with 8 layers"):
        listed(8, [0, 3, 9], "r")
    with pytest.raises(RuleError, match="listed twice"):
        listed(8, [3, 3])


def test_an_unknown_rule_is_refused():
    with pytest.raises(RuleError, match="drop.rule"):
        pick("random", 4, 1, ())
