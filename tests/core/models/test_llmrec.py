"""The LLM recommender: padding invariance, what trains in LoRA mode, loss and layer states."""

import torch

from core.config import BackboneConfig
from core.models.backbone import load_backbone
from core.models.llmrec import LLMRec
from core.stages.common import load_trainable_weights, trainable_weights

PROMPT = "History: {items}. Next?"


def model(training="lora", depth=4, seed=0):
    torch.manual_seed(seed)
    backbone = load_backbone(BackboneConfig(base="tiny", depth=depth, training=training), None, "cpu")
    table = torch.randn(21, 8)
    table[0] = 0
    return LLMRec(backbone, table, PROMPT)


def test_left_padding_gives_the_same_user_vector():
    rec = model().eval()
    short = torch.tensor([[3, 7, 9]])
    padded = torch.tensor([[0, 0, 0, 3, 7, 9], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        a = rec.user_vectors(short)
        b = rec.user_vectors(padded)[:1]
    assert torch.allclose(a, b, atol=1e-5)


def _whole_prompt_states(rec, items, layers):
    """Reference without the shared prefix: each row's full prompt, unpadded, run on its own."""
    out = []
    for row in items:
        real = row[row != 0]
        embeds = torch.cat([rec.prefix, rec.input_map(rec.item_table[real]), rec.suffix])[None]
        states = rec.backbone(embeds, torch.ones(1, len(embeds[0]), dtype=torch.long), layers)
        out.append(torch.stack([h[0, -1] for h in states]))
    return torch.stack(out, dim=1)  # (layers, B, H)


def test_shared_prefix_matches_each_whole_prompt_in_values_and_gradients():
    rec = model(depth=3).eval()  # no LoRA dropout: both passes must see the same weights
    items = torch.tensor([[0, 0, 4, 7, 9], [1, 2, 3, 4, 5], [0, 0, 0, 0, 8]])
    layers = [0, 1, 3, 4]
    shared = torch.stack(rec.last_states(items, layers))
    reference = _whole_prompt_states(rec, items, layers)
    assert torch.allclose(shared, reference, atol=1e-5)
    lora = [p for n, p in rec.named_parameters() if "lora" in n and p.requires_grad]
    grad_shared = torch.autograd.grad(shared[-1].square().sum(), lora, allow_unused=True)
    grad_reference = torch.autograd.grad(reference[-1].square().sum(), lora, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grad_shared)
    for a, b in zip(grad_shared, grad_reference):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, atol=1e-5))


def test_layer_states_follow_the_index_convention():
    rec = model().eval()
    items = torch.tensor([[0, 3, 7], [1, 2, 3]])
    with torch.no_grad():
        states = rec.last_states(items, [0, 2, 4, 5])
        final = rec.backbone.norm(states[2 + 0 + 1])  # layer 4 through the final norm
    assert [s.shape for s in states] == [torch.Size([2, rec.backbone.hidden_size])] * 4
    assert torch.allclose(states[3], final, atol=1e-5)


def test_one_step_changes_only_lora_and_maps():
    rec = model()
    before = {n: p.detach().clone() for n, p in rec.named_parameters()}
    trainable = {n for n, p in rec.named_parameters() if p.requires_grad}
    assert trainable and all("lora" in n or n.startswith(("input_map", "score_head")) for n in trainable)
    opt = torch.optim.AdamW([p for p in rec.parameters() if p.requires_grad], lr=1e-2)
    loss = rec.loss(torch.tensor([[0, 3, 7], [1, 2, 3]]), torch.tensor([4, 5]))
    loss.backward()
    opt.step()
    for name, p in rec.named_parameters():
        changed = not torch.equal(p, before[name])
        if name.startswith(("input_map", "score_head")) or "lora_B" in name:
            assert changed, name
        if name not in trainable:
            assert not changed, name
    assert loss.item() > 0


def test_padding_is_never_predicted():
    rec = model().eval()
    with torch.no_grad():
        scores = rec.scores(rec.user_vectors(torch.tensor([[1, 2]])))
    assert scores.shape == (1, 21) and scores[0, 0] == float("-inf")


def _count_layer_calls(rec):
    calls = []
    # the batch size of each call (a layer's fourth argument is its row layout, core.models.layers.Rows)
    rec.backbone.layers[0].register_forward_hook(lambda module, args, out: calls.append(args[3].batch))
    return calls


def _fresh(rec, items):
    """User vectors with the prefix run afresh (with gradients nothing is reused)."""
    with torch.enable_grad():
        return rec.user_vectors(items).detach()


def test_without_gradients_the_prefix_runs_once_and_gives_the_same_vectors():
    rec = model().eval()
    calls = _count_layer_calls(rec)
    a, b = torch.tensor([[0, 3, 7], [1, 2, 3]]), torch.tensor([[4, 5, 6]])
    with torch.no_grad():
        first, second = rec.user_vectors(a), rec.user_vectors(b)
    assert calls == [1, 2, 1]  # the prefix at batch 1 once, then each batch
    assert torch.allclose(first, _fresh(rec, a), atol=1e-6)
    assert torch.allclose(second, _fresh(rec, b), atol=1e-6)


def test_a_weight_update_or_a_loaded_checkpoint_makes_the_prefix_run_again():
    rec = model()
    items = torch.tensor([[0, 3, 7], [1, 2, 3]])
    with torch.no_grad():
        before = rec.eval().user_vectors(items)
    opt = torch.optim.SGD([p for p in rec.parameters() if p.requires_grad], lr=0.5)
    rec.train().loss(items, torch.tensor([4, 5])).backward()
    opt.step()  # in place, as AdamW updates LoRA
    rec.eval()
    calls = _count_layer_calls(rec)
    with torch.no_grad():
        after = rec.user_vectors(items)
    assert calls == [1, 2] and not torch.allclose(before, after)
    assert torch.allclose(after, _fresh(rec, items), atol=1e-6)
    saved = {name: w.clone() for name, w in trainable_weights(rec).items()}  # on the CPU they alias
    with torch.no_grad():
        for p in rec.backbone.parameters():
            if p.requires_grad:
                p.add_(0.1)
        rec.user_vectors(items)
        load_trainable_weights(rec, saved)
        assert torch.allclose(rec.user_vectors(items), after, atol=1e-6)


def test_the_kept_prefix_follows_the_autocast_setting():
    rec = model().eval()
    items = torch.tensor([[0, 3, 7], [1, 2, 3]])
    with torch.no_grad():
        full = rec.user_vectors(items)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = rec.user_vectors(items)
        again = rec.user_vectors(items)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            new_low = model().eval().user_vectors(items)  # the same weights, nothing kept yet
    assert torch.equal(low, new_low)
    assert torch.equal(again, full) and not torch.equal(low.float(), full)


def test_the_compiled_stack_traces_the_prefix_and_last_position_paths_as_one_graph_like_eager():
    """What a compiled run's layer stack sees (the prefix's keys and values, the top layer at the last
    position, the kept prefix without gradients), traced by dynamo and AOTAutograd as one graph
    (fullgraph: a break would raise); the kernels are CUDA's business (tests/core/runtime/test_cuda.py)."""
    import torch._dynamo

    torch._dynamo.reset()
    eager, compiled = model(), model()
    compiled.backbone.compile_stack(backend="aot_eager")
    items, targets = torch.tensor([[0, 3, 7], [1, 2, 3]]), torch.tensor([4, 5])
    results = []
    for rec in (eager.eval(), compiled.eval()):  # eval: no LoRA dropout to differ
        loss = rec.loss(items, targets)
        lora = [p for n, p in rec.named_parameters() if "lora_A" in n]
        with torch.no_grad():
            vectors = [rec.user_vectors(items), rec.user_vectors(items[:1])]
        results.append((loss.detach(), torch.autograd.grad(loss, lora), vectors))
    (loss_a, grads_a, vectors_a), (loss_b, grads_b, vectors_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads_a, grads_b))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(vectors_a, vectors_b))
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    assert counters["frames"]["total"] == counters["frames"]["ok"]  # every traced frame compiled


def test_a_compiled_stack_compiles_one_layer_for_all_layers_below_the_top():
    """The layers below the top are one nested region (torch 2.13 on, the version tested): the graph
    calls one subgraph once per layer (inductor then compiles one layer's kernels, not one set per
    layer), in training and without gradients alike."""
    import torch._dynamo

    torch._dynamo.reset()
    graphs = []

    def recording(graph, inputs):
        graphs.append(graph)
        return torch._dynamo.lookup_backend("aot_eager")(graph, inputs)

    rec = model(depth=4)
    rec.backbone.compile_stack(backend=recording)
    items, targets = torch.tensor([[0, 3, 7], [1, 2, 3]]), torch.tensor([4, 5])
    rec.loss(items, targets).backward()
    with torch.no_grad():
        rec.eval().user_vectors(items)
    assert len(graphs) == 2
    for graph in graphs:
        calls = [node for node in graph.graph.nodes if node.target is torch.ops.higher_order.invoke_subgraph]
        if torch.__version__ >= (2, 13):
            assert len(calls) == 3 and len({node.args[1] for node in calls}) == 1
        else:  # regions untested there: every layer inlined
            assert not calls


def test_a_compiled_stack_pads_a_short_batch_to_a_size_it_has_seen_and_drops_the_padding():
    """Static shapes: the last short batch reuses the compiled graph; its padded rows reach no output,
    loss or gradient."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, compiled = model(), model()
    compiled.backbone.compile_stack(backend="aot_eager")
    full, short = torch.tensor([[0, 3, 7], [1, 2, 3], [4, 5, 6]]), torch.tensor([[2, 9, 1]])
    results = []
    for rec in (eager.eval(), compiled.eval()):
        rec.loss(full, torch.tensor([4, 5, 6]))  # the compiled stack sees batch 3 first
        loss = rec.loss(short, torch.tensor([7]))
        lora = [p for n, p in rec.named_parameters() if "lora_A" in n]
        results.append((loss.detach(), torch.autograd.grad(loss, lora)))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads_a, grads_b))
    assert compiled.backbone._static_batches == [3]  # the batch of 1 ran padded to 3, no new size
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # one graph for both batches
