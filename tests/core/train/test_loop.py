"""The shared loop on a toy model: learning, exact resume, gradient accumulation, NaN, cancel."""

import math

import pytest
import torch
from torch import nn

from core.config import TrainConfig
from core.store.checkpoints import load_resume_state as load_checkpoint, save_resume_state as save_checkpoint
from core.train import loop, resume

torch.set_num_threads(1)


def toy(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(40, 5)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1
    model = nn.Sequential(nn.Linear(5, 16), nn.Dropout(0.1), nn.ReLU(), nn.Linear(16, 1))
    return model, x, y


def make_loss(model, x, y, nan_at=None):
    calls = {"n": 0}

    def loss_fn(idx):
        calls["n"] += 1
        out = model(x[idx]).squeeze(-1)
        mse = ((out - y[idx]) ** 2).mean()
        if nan_at is not None and calls["n"] >= nan_at:
            mse = mse * float("nan")
        return mse, {"mse": mse}
    return loss_fn


class Recorder:
    def __init__(self, stop_at=None, tmp=None):
        self.logs, self.evals, self.stop_at, self.tmp, self.step = [], [], stop_at, tmp, 0

    def hooks(self, model, x, y):
        def evaluate(step, epoch):
            with torch.no_grad():
                score = -((model(x).squeeze(-1) - y) ** 2).mean().item()
            self.evals.append((step, score))
            return score

        def save_resume(state):
            tensors, meta = resume.pack(state, {k: v.clone() for k, v in model.state_dict().items()})
            save_checkpoint(self.tmp, tensors, meta)

        def on_log(step, epoch, terms):
            self.step = step
            self.logs.append((step, terms["mse"]))

        return loop.Hooks(evaluate, lambda s: None, save_resume, on_log, lambda *a: None,
                          lambda: self.stop_at is not None and self.step >= self.stop_at)


CFG = TrainConfig(epochs=4, lr=5e-2, batch_size=8, log_every=1, checkpoint_every=3, warmup_ratio=0.1)


def test_loss_falls(tmp_path):
    model, x, y = toy()
    rec = Recorder(tmp=tmp_path)
    result = loop.train(model, make_loss(model, x, y), len(x), CFG, torch.device("cpu"), rec.hooks(model, x, y))
    assert result.step == 20 and len(rec.evals) == 4
    assert rec.logs[-1][1] < rec.logs[0][1] / 2
    assert result.best_score == max(s for _, s in rec.evals)


def test_cancel_then_resume_is_exact(tmp_path):
    model, x, y = toy()
    rec = Recorder(tmp=tmp_path / "a")
    loop.train(model, make_loss(model, x, y), len(x), CFG, torch.device("cpu"), rec.hooks(model, x, y))
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, x, y = toy()
    rec = Recorder(stop_at=7, tmp=tmp_path / "b")
    with pytest.raises(loop.Cancelled, match="step 7"):
        loop.train(model, make_loss(model, x, y), len(x), CFG, torch.device("cpu"), rec.hooks(model, x, y))
    torch.manual_seed(123)  # a new process would start from another RNG state
    model, x, y = toy()
    tensors, meta = load_checkpoint(tmp_path / "b")
    state, weights = resume.unpack(tensors, meta)
    model.load_state_dict(weights)
    rec = Recorder(tmp=tmp_path / "b")
    loop.train(model, make_loss(model, x, y), len(x), CFG, torch.device("cpu"), rec.hooks(model, x, y), state)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reference[name]), name


def test_gradient_accumulation_matches_a_larger_batch(tmp_path):
    results = []
    for batch, accum in ((8, 1), (4, 2)):
        model, x, y = toy()
        model[1].p = 0.0  # dropout off: the two schedules must then agree
        cfg = TrainConfig(epochs=1, lr=1e-2, batch_size=batch, grad_accum=accum, log_every=1, warmup_ratio=0.0)
        loop.train(model, make_loss(model, x, y), len(x), cfg, torch.device("cpu"),
                   Recorder(tmp=tmp_path / f"{batch}").hooks(model, x, y))
        results.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_non_finite_loss_names_step_and_terms(tmp_path):
    model, x, y = toy()
    with pytest.raises(loop.NonFiniteLoss, match=r"loss is not finite at step 3: mse=nan"):
        loop.train(model, make_loss(model, x, y, nan_at=3), len(x), CFG, torch.device("cpu"),
                   Recorder(tmp=tmp_path).hooks(model, x, y))


def test_schedule_warms_up_then_decays_to_zero():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = loop.cosine_with_warmup(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] == 1.0
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
