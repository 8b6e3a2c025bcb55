"""Per-layer readout: precomputed vectors behave as the model's own user_vectors function."""

import numpy as np
import pytest
import torch

from core.config import BackboneConfig, DataConfig
from core.data.examples import eval_examples
from core.data.prepare import prepare
from core.eval.evaluate import evaluate_split
from core.eval.probe import (adapter_readout_vectors, evaluate_readouts, last_states, lookup_user_vectors,
                             readout_vectors)
from core.models.backbone import load_backbone
from core.models.llmrec import LLMRec


@pytest.fixture
def setup(project):
    prepared = prepare(DataConfig(dataset="toy", kcore=0, max_len=8), project / "data")
    torch.manual_seed(0)
    table = torch.randn(prepared.n_items + 1, 16)
    backbone = load_backbone(BackboneConfig(base="tiny", depth=3, training="frozen"), None, "cpu")
    model = LLMRec(backbone, table, "Seen {items}.", adapter_layers=(1, 2)).eval()
    inputs = eval_examples(prepared, "test", 8)[0]
    return prepared, model, inputs


def test_lookup_returns_each_rows_own_vector():
    inputs = np.array([[0, 1, 2], [3, 4, 5], [0, 0, 7]])
    vectors = torch.arange(3.0)[:, None].expand(3, 2)
    fn = lookup_user_vectors(inputs, vectors)
    assert fn(torch.tensor([[0, 0, 7], [0, 1, 2]]))[:, 0].tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="not among the analysed users"):
        fn(torch.tensor([[9, 9, 9]]))


def test_last_layer_readout_is_the_models_user_vector(setup):
    prepared, model, inputs = setup
    users = np.array([0, 3, 5, 11, 20, 40])
    batch = torch.as_tensor(inputs[users])
    states = last_states(model, batch, range(model.num_layers + 1), batch_size=4)
    assert len(states) == 4 and states[0].shape == (6, model.backbone.hidden_size)
    vectors = readout_vectors(model, states, batch_size=4)
    with torch.no_grad():
        own = torch.cat([model.user_vectors(batch[:4]), model.user_vectors(batch[4:])])
        adapters = model.adapter_vectors(model.last_states(batch, [1, 2]))
    torch.testing.assert_close(vectors[3], own, rtol=0, atol=1e-6)
    assert not torch.allclose(vectors[1], own)
    by_adapter = adapter_readout_vectors(model, states, batch_size=4)
    assert sorted(by_adapter) == [1, 2]
    torch.testing.assert_close(by_adapter[1], adapters[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(by_adapter[2], adapters[1], rtol=0, atol=1e-6)


def test_readout_ranks_equal_evaluate_split_with_the_model(setup):
    prepared, model, inputs = setup
    users = np.array([1, 2, 8, 13, 30])
    states = last_states(model, torch.as_tensor(inputs[users]), range(model.num_layers + 1), batch_size=64)
    ranks = evaluate_readouts(readout_vectors(model, states, 64), inputs[users], model.item_table, prepared,
                              "test", 8, users, mask_history=True)
    assert sorted(ranks) == [0, 1, 2, 3]
    expected = evaluate_split(model.user_vectors, model.item_table, prepared, "test", 8, users=users)
    assert list(ranks[3].users) == list(users)
    for protocol in ("full", "sampled"):
        assert ranks[3].ranks[protocol].tolist() == expected.ranks[protocol].tolist()
