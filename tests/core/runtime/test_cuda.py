"""The GPU fast path (bf16 autocast, torch.compile, shared prompt prefix, pinned copies) on CUDA.

These need a CUDA device; on a CPU-only machine they are reported as skipped, never as passed.
Run them on a GPU machine with `python -m pytest -q tests/core/runtime/test_cuda.py`.
"""

import pytest
import torch

from core.jobs import execution, planning
from core.config import BackboneConfig
from core.eval.ranking import full_ranks
from core.models.backbone import load_backbone
from core.models.llmrec import LLMRec
from core.store import checkpoints
from core.store.paths import Paths
from core.store.query import query
from tests.conftest import toy_spec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def tiny_rec(device, depth=3):
    torch.manual_seed(0)
    backbone = load_backbone(BackboneConfig(base="tiny", depth=depth), None, device)
    table = torch.randn(41, 8)
    table[0] = 0
    return LLMRec(backbone, table, "History: {items}. Next?").to(device).eval()


ITEMS = torch.tensor([[0, 0, 4, 7, 9], [1, 2, 3, 4, 5], [0, 0, 0, 0, 8]])


def test_cuda_states_match_cpu_in_fp32_and_bf16_stays_close():
    cpu, gpu = tiny_rec("cpu"), tiny_rec(CUDA)
    with torch.no_grad():
        expected = cpu.user_vectors(ITEMS)
        got = gpu.user_vectors(ITEMS.to(CUDA)).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = gpu.user_vectors(ITEMS.to(CUDA)).float().cpu()
    assert torch.allclose(got, expected, atol=1e-4)
    assert (low - expected).abs().max() < 0.05 * expected.abs().max()


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compiled_backbone_gives_the_eager_loss_and_gradients(mode):
    """The whole stack as one inductor graph, and replayed as CUDA graphs ("reduce-overhead")."""
    eager, compiled = tiny_rec(CUDA), tiny_rec(CUDA)  # eval mode: no LoRA dropout to differ
    compiled.backbone.compile_stack(mode=mode)
    targets = torch.tensor([3, 6, 9], device=CUDA)
    results = []
    for rec in (eager, compiled):
        loss = rec.loss(ITEMS.to(CUDA), targets)
        grad = torch.autograd.grad(loss, rec.input_map.weight)[0]
        results.append((loss.detach(), grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-4)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-4)


def test_full_ranks_on_cuda_equal_cpu():
    generator = torch.Generator().manual_seed(0)
    users, table = torch.randn(64, 16, generator=generator), torch.randn(5001, 16, generator=generator)
    targets = torch.randint(1, 5001, (64,), generator=generator)
    expected = full_ranks(users, table, targets, item_chunk=1000)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # a caller's autocast must not reach the scores
        got = full_ranks(users.to(CUDA), table.to(CUDA), targets.to(CUDA), item_chunk=1000).cpu()
    assert torch.equal(got, expected)


def test_teacher_stage_runs_on_cuda_with_compile_auto(project):
    paths = Paths(project)
    spec = toy_spec("teacher", train={"device": "cuda", "checkpoint_every": 2})
    assert spec.train.compile == "auto"
    ids = planning.plan(paths, spec)
    for run_id in ids:
        state = execution.execute(paths, run_id)
        assert state["status"] == "done", state.get("error")
    _, manifest = checkpoints.load_checkpoint(paths.checkpoints / ids[-1])
    assert manifest["environment"]["device"].startswith("cuda") and manifest["environment"]["gpu"]
    rows = query(paths.data_root, "SELECT count(*) AS n FROM metrics WHERE run_id = ? AND split = 'test'", [ids[-1]])
    assert rows[0]["n"] > 0


def test_training_steps_make_no_host_device_sync():
    """No value is read back inside a step, and the examples' indices live on the device (a host
    index would be copied with a blocking copy every step). Steps 2 and 3 of 4 run under CUDA's sync
    debug mode, which raises on any synchronizing call; the 4th logs, which reads values back."""
    from core.config import TrainConfig
    from core.train import loop

    rec = tiny_rec(CUDA).train()
    generator = torch.Generator().manual_seed(0)
    items, targets = torch.randint(1, 41, (16, 5), generator=generator), torch.randint(1, 41, (16,), generator=generator)
    items, targets = items.to(CUDA), targets.to(CUDA)
    seen = []

    def loss_fn(indices):
        seen.append(indices.device.type)
        torch.cuda.set_sync_debug_mode("error" if len(seen) in (2, 3) else "default")
        return rec.loss(items[indices], targets[indices]), {}

    cfg = TrainConfig(epochs=1, batch_size=4, max_steps=4, log_every=4, checkpoint_every=0, warmup_ratio=0.0,
                      device="cuda", compile="off")
    hooks = loop.Hooks(lambda step, epoch: 0.0, lambda step: None, lambda state: None, lambda *row: None,
                       lambda *progress: None, lambda: False)
    try:
        loop.train(rec, loss_fn, 16, cfg, CUDA, hooks)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert seen == ["cuda"] * 4


def test_ranking_a_batch_makes_no_host_device_sync():
    """Evaluation reads nothing back per batch (targets are checked on the host, ranks stay on the
    device until the split is done), so the host can queue the next batch while this one runs."""
    from core.eval.ranking import sampled_ranks
    from core.stages.llm import user_vectors_in

    rec = tiny_rec(CUDA)
    vectors_of = user_vectors_in(rec, "auto")
    items, targets = ITEMS.to(CUDA), torch.tensor([3, 6, 9], device=CUDA)
    history, negatives = torch.tensor([[1, 2], [0, 0], [9, 4]], device=CUDA), torch.tensor([[5, 7]] * 3, device=CUDA)
    with torch.no_grad():
        vectors_of(items)  # the first call keeps the prefix and initialises the kernels
        torch.cuda.set_sync_debug_mode("error")
        try:
            vectors = vectors_of(items).float()
            full = full_ranks(vectors, rec.item_table, targets, history, item_chunk=16, validate=False)
            sampled = sampled_ranks(vectors, rec.item_table, targets, negatives)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(full.cpu(), full_ranks(vectors.cpu(), rec.item_table.cpu(), targets.cpu(), history.cpu()))
    assert sampled.shape == (3,)
