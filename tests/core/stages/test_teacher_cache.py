"""The teacher-state cache: bf16, placed on the device, in host memory or run live by its budgets;
every placement gives the live teacher's loss to bf16 rounding; the run's log and manifest say which."""

import math

import pytest
import torch

from core.jobs import execution, planning
from core.config import ConfigError, from_dict, settings_hash, to_dict
from core.data.prepare import prepare
from core.stages import student as student_stage
from core.stages.context import RunContext
from core.stages.llm import build_model, examples, load_finished_model, load_item_table
from core.store import checkpoints
from core.store.runs import read_log, read_spec
from core.train import teacher_cache
from core.config import block_pairs
from tests.conftest import toy_spec
from tests.core.stages.test_student_stage import teacher_run  # noqa: F401  (the finished tiny teacher, per module)

PAIRS = block_pairs(4, 2, 2)
T_LAYERS, S_LAYERS = [t for t, _ in PAIRS], [s for _, s in PAIRS]


@pytest.fixture(scope="module")
def setup(teacher_run):
    """The finished tiny teacher, a fresh student, the training examples and the student spec."""
    paths, teacher_id = teacher_run
    s = toy_spec("student", backbone={"depth": 2}, distill={"teacher_run": teacher_id, "blocks": 2})
    ctx = RunContext("probe", paths, torch.device("cpu"), events=None)
    _, teacher = load_finished_model(ctx, teacher_id, s.train)
    prepared = prepare(s.data, paths.data_root)
    table = load_item_table(ctx, read_spec(paths.runs, teacher_id)["spec"]["sasrec_run"], prepared.n_items)
    torch.manual_seed(0)
    model = build_model(s, ctx, table, S_LAYERS[:-1]).eval()
    return teacher, model, examples(s, prepared, ctx.device), s


def test_placement_follows_the_budgets():
    assert teacher_cache.choose_placement(100, 100, 0) == "device"
    assert teacher_cache.choose_placement(101, 100, 101) == "host"
    assert teacher_cache.choose_placement(102, 100, 101) == "live"
    assert teacher_cache.device_budget(torch.device("cpu"), 2.5) == 2_500_000_000  # set: taken as is


def test_auto_budgets_are_half_the_free_memory(monkeypatch):
    monkeypatch.setattr(teacher_cache, "available_ram", lambda: 8_000_000_000)
    assert teacher_cache.device_budget(torch.device("cpu"), 0) == 4_000_000_000
    assert teacher_cache.host_budget(torch.device("cpu")) == 0  # host memory is the device: no second tier
    assert teacher_cache.host_budget(torch.device("cuda"), local_processes=2) == 2_000_000_000  # per process
    assert 0 < teacher_cache.available_ram() < 1 << 50  # the real reading, from /proc/meminfo


def _cache(setup, monkeypatch, placement):
    """A cache of the tiny teacher's states whose budgets make it choose `placement` (on CPU, where
    the host tier exists only when a host budget is given, as on CUDA)."""
    teacher, _, data, _ = setup
    budget = 0.0 if placement == "device" else 1e-12  # auto (half the RAM) or less than one row
    monkeypatch.setattr(teacher_cache, "host_budget", lambda device, n=1: 1 << 40 if placement == "host" else 0)
    cache = teacher_cache.build_cache(teacher, data.inputs, T_LAYERS, 7, budget_gb=budget)
    assert cache.plan.placement == placement
    return cache


@pytest.mark.parametrize("placement", ["device", "host", "live"])
def test_every_placement_gives_the_live_teachers_loss(setup, monkeypatch, placement):
    teacher, model, data, s = setup
    cache = _cache(setup, monkeypatch, placement)
    assert cache.plan.nbytes == len(data) * len(T_LAYERS) * teacher.last_states(data.inputs[:1], [1])[0].shape[-1] * 2
    assert (cache.store is None) == (placement == "live")
    assert cache.store is None or cache.store.dtype == torch.bfloat16
    cached = student_stage.make_loss(model, teacher, data, cache, T_LAYERS, S_LAYERS, s)
    live = student_stage.make_loss(model, teacher, data, None, T_LAYERS, S_LAYERS, s)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    for batch in order.split(16)[:3]:  # views of one epoch order, as the training loop hands them out
        with torch.no_grad():
            (_, got), (_, want) = cached(batch), live(batch)
        assert got["ce"].item() == want["ce"].item()
        for name in ("cos", "norm", "total"):  # bf16 rounds each state by at most 2^-9 of its size
            assert got[name].item() == pytest.approx(want[name].item(), rel=1e-3), name  # measured: <= 2e-4


def test_placements_hold_the_same_states(setup, monkeypatch):
    """The live fallback rounds to bf16 as a cache would: placement changes speed, not the loss."""
    _, _, data, _ = setup
    batch = torch.randperm(len(data), generator=torch.Generator().manual_seed(2))[:16]
    states = {p: _cache(setup, monkeypatch, p).states(data.inputs[batch], batch) for p in ("device", "host", "live")}
    for placement in ("host", "live"):
        for a, b in zip(states[placement], states["device"]):
            assert a.dtype == torch.bfloat16 and torch.allclose(a.float(), b.float(), rtol=2 ** -7, atol=1e-6)


def test_host_indices_come_from_one_copy_of_the_epoch_order(setup, monkeypatch):
    cache = _cache(setup, monkeypatch, "host")
    for seed in (0, 1):  # a new epoch's order replaces the copy
        order = torch.randperm(40, generator=torch.Generator().manual_seed(seed))
        for batch in order.split(12):
            for part in batch.tensor_split(3) + (batch[:1], batch):  # each rank's slice, the empty-slice stand-in
                assert torch.equal(cache._host_indices(part), part)
            assert cache._order is order
    copied = order[[3, 1, 2]]  # no view: copied as it is
    assert torch.equal(cache._host_indices(copied), copied)


def run_student(paths, teacher_id, budget):
    s = toy_spec("student", backbone={"depth": 2}, name=f"budget {budget}",
                 distill={"teacher_run": teacher_id, "blocks": 2, "cache_budget_gb": budget})
    run_id = planning.plan(paths, s, reuse=False)[-1]
    state = execution.execute(paths, run_id)
    assert state["status"] == "done", state.get("error")
    return run_id


@pytest.mark.parametrize("budget, placement, says", [
    (1.0, "device", "GB bf16 cache on the device (device budget 1 GB)"),
    (1e-9, "live", "GB bf16 cache does not fit: the live teacher runs every step (device budget 1e-09 GB)")])
def test_the_run_logs_and_records_its_placement(teacher_run, budget, placement, says):
    paths, teacher_id = teacher_run
    run_id = run_student(paths, teacher_id, budget)
    assert "teacher states: " in read_log(paths.runs, run_id) and says in read_log(paths.runs, run_id)
    recorded = checkpoints.read_manifest(paths.checkpoints / run_id)["teacher_cache"]
    assert recorded["placement"] == placement and recorded["device_budget_bytes"] == int(budget * 1e9)
    assert recorded["bytes"] > 0


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, "2", True, None])
def test_bad_budgets_are_refused_by_name(value):
    values = to_dict(toy_spec("student"))
    values["distill"]["cache_budget_gb"] = value
    # a wrong type or a non-finite value is refused by the type check, a negative one by the range check
    with pytest.raises(ConfigError, match=r"distill\.cache_budget_gb: expected a (finite number|number of GB >= 0)"):
        from_dict(values)


def test_the_option_reaches_the_check(project, capsys):
    from core.cli import main
    assert main(["--root", str(project), "submit", "student", "--preset", "tiny", "--cache-budget-gb", "-1"]) == 2
    assert "distill.cache_budget_gb: expected a number of GB >= 0 (0: auto" in capsys.readouterr().err


def test_the_budget_is_outside_the_settings_hash():
    values = to_dict(toy_spec("student"))
    values["distill"]["cache_budget_gb"] = 3
    assert settings_hash(from_dict(values)) == settings_hash(toy_spec("student"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_placement_streams_without_a_sync_per_step():
    """Pinned host rows, gathered and copied without blocking: steps 2 and 3 run under CUDA's sync
    debug mode (step 1 copies the epoch's order to the host once)."""
    from core.config import TrainConfig
    from core.train import loop

    cuda = torch.device("cuda")
    student = torch.nn.Linear(8, 8).to(cuda)
    teacher = torch.nn.Embedding(50, 8).to(cuda)  # any module with last_states: the cache reads nothing else
    teacher.last_states = lambda items, layers: [teacher(items).mean(1) * k for k in layers]
    items = torch.randint(0, 50, (64, 5), device=cuda)
    cache = teacher_cache.build_cache(teacher, items, [1, 2], 16, budget_gb=1e-12)
    assert cache.plan.placement == "host" and cache.store.is_pinned()
    calls = []

    def loss_fn(indices):
        calls.append(indices)
        torch.cuda.set_sync_debug_mode("error" if len(calls) in (2, 3) else "default")
        states = cache.states(items[indices], indices)
        return sum((student(s.float()) - s.float()).pow(2).mean() for s in states), {}

    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=4, log_every=4, checkpoint_every=0, warmup_ratio=0.0,
                      device="cuda", compile="off")
    hooks = loop.Hooks(lambda step, epoch: 0.0, lambda step: None, lambda state: None, lambda *row: None,
                       lambda *progress: None, lambda: False)
    try:
        loop.train(student, loss_fn, len(items), cfg, cuda, hooks)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with torch.no_grad():
        want = torch.stack(teacher.last_states(items[calls[-1]], [1, 2]), 1).to(torch.bfloat16)
        assert torch.equal(torch.stack(cache.states(items[calls[-1]], calls[-1]), 1), want)
